#pragma once
// DashboardApi: the store as the dashboard page reads it, one JSON document per GET route. The
// HTTP server (dashboard_server.h) and the static report (report.h) both answer from here, so
// the live page and the mailed file show the same numbers.
//
// Routes (every one a GET; `experiment` is a name, trial numbers are numbers within it):
//   /api/experiments                      [{name, id, metric, mode, state, created_at, seed}]
//   /api/changes                          {"version": V}: V changes whenever any other
//                                         connection commits to the store (SQLite's
//                                         data_version), so a page polls this and refetches
//                                         only when something was written.
//   /api/trials?experiment=E              the trials table, by column (below)
//   /api/curves?experiment=E&metric=M&trials=N,N,...
//                                         {"metric", "series": {"N": [[epoch...], [value...]]}}
//   /api/trial?experiment=E&trial=N       the export's document of trial N (exporter.h), plus
//                                         "model": where its final model is kept, or null;
//                                         the page compares trials from these documents
//   /api/story?experiment=E               the scheduler's story: rungs (epochs at which ASHA or
//                                         Hyperband paused, promoted or stopped trials, and who)
//                                         and PBT exploits (who took whose weights, when)
//   /api/importance?experiment=E          parameter importance (param_importance.h)
//
// The trials table is columnar, so 100,000 trials are a few arrays rather than 100,000
// objects: {"experiment": {...}, "count": N, "states": [names], "params": [names],
//           "metrics": [names], "columns": {"number": [...], "state": [index into states],
//           "epochs": [...], "params.NAME": [...], "final.NAME": [...]}}.
// A metric column holds each trial's final value, else its last reported one (a running
// trial); a missing value is null. Params keep their kind; NaN is null, the infinities 1e999.
//
// Answers are cached per route and query until the store's data_version changes, so the page's
// repeated reads of a finished sweep cost nothing. The store is only ever read.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "coordinator/experiment_store.h"

namespace trellis::dashboard {

struct ApiResponse {
  int http_status = 200;  // 200, 400 (a bad query), 404 (no such route or experiment), 500
  std::string body;       // JSON; on an error {"error": MESSAGE}
};

using Query = std::map<std::string, std::string>;

class DashboardApi {
 public:
  // `model_dir`: where the store keeps its best trials' models (cli::model_dir).
  DashboardApi(coordinator::ExperimentStore* store, std::string model_dir);

  // Thread-safe: one request reads the store at a time.
  ApiResponse get(const std::string& path, const Query& query);

 private:
  ApiResponse answer(const std::string& path, const Query& query);

  coordinator::ExperimentStore* store_;
  std::string model_dir_;
  std::mutex mutex_;
  std::int64_t cached_version_ = -1;
  std::map<std::string, ApiResponse> cache_;  // key: path + "?" + query
};

}  // namespace trellis::dashboard
