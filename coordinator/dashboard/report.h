#pragma once
// `trellis report`: the dashboard's views of one experiment as one self-contained HTML file, to
// mail or copy off a cluster. It is the dashboard's own page with the answers of its routes
// built in (#trellis-static) instead of fetched, so the file opens anywhere, offline, and shows
// what the live page showed when it was written.
//
// Built in: the experiment, its trials table, scheduler story and parameter importance, and the
// documents (every metric, params, provenance) of up to kMaxReportTrials trials, the best by
// the objective first; curves, trial pages and comparisons read those documents. The file says
// how many trials it holds documents of when it is not all of them.

#include <cstddef>
#include <string>

#include "common/status.h"
#include "coordinator/dashboard/dashboard_api.h"

namespace trellis::dashboard {

inline constexpr std::size_t kMaxReportTrials = 2000;

struct ReportSummary {
  std::size_t trials = 0;           // in the experiment
  std::size_t trial_documents = 0;  // built into the file
  std::size_t bytes = 0;
};

// Writes the report of `experiment` to `path` (atomically: a reader never sees half a file).
[[nodiscard]] Status write_report(DashboardApi& api, coordinator::ExperimentStore& store,
                                  const std::string& experiment, const std::string& path,
                                  ReportSummary* summary);

}  // namespace trellis::dashboard
