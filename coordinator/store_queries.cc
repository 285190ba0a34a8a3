// ExperimentStore: reading trials back for the coordinator, tables, exports and the
// dashboard (rows, summaries, folds, an attempt's owner). The contract is in experiment_store.h.

#include "coordinator/experiment_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "coordinator/metrics_json.h"
#include "coordinator/params_codec.h"
#include "coordinator/sqlite_statement.h"
#include "coordinator/store_rows.h"

namespace trellis::coordinator {
namespace {

// Fills each row's final_metrics from the finals table; `index_of`: a trial id's row in `out`.
template <typename Row>
Status read_finals(sqlite3* db, std::int64_t experiment_id,
                   const std::unordered_map<std::int64_t, std::size_t>& index_of,
                   std::vector<Row>* out) {
  Statement finals;
  Status s = finals.prepare(db,
                            "SELECT f.trial_id, f.name, f.value FROM finals f "
                            "JOIN trials t ON t.id = f.trial_id WHERE t.experiment_id = ?1");
  if (!s.ok()) return s;
  finals.bind(1, experiment_id);
  while (finals.next_row(&s)) {
    const auto it = index_of.find(finals.i64(0));
    if (it != index_of.end()) (*out)[it->second].final_metrics[finals.text(1)] = finals.real(2);
  }
  return s;
}

}  // namespace

Status ExperimentStore::list_trials(std::int64_t experiment_id, std::vector<TrialRecord>* out) {
  const std::string where = "list_trials of experiment " + std::to_string(experiment_id);
  out->clear();
  Statement st;
  Status s = st.prepare(db_, (std::string("SELECT ") + kTrialColumns +
                              " FROM trials WHERE experiment_id = ?1 ORDER BY number")
                                 .c_str());
  if (!s.ok()) return s.With(where);
  st.bind(1, experiment_id);
  std::unordered_map<std::int64_t, std::size_t> index_of;
  while (st.next_row(&s)) {
    TrialRecord r;
    Status rs = read_trial(st, &r);
    if (!rs.ok()) return rs.With(where);
    index_of[r.id] = out->size();
    out->push_back(std::move(r));
  }
  if (!s.ok()) return s.With(where);

  return read_finals(db_, experiment_id, index_of, out).With(where);
}

Status ExperimentStore::trial_summaries(std::int64_t experiment_id,
                                        std::vector<TrialSummary>* out) {
  const std::string where = "trial_summaries of experiment " + std::to_string(experiment_id);
  out->clear();
  std::vector<TrialListing> listing;
  if (Status s = trial_listing(experiment_id, &listing); !s.ok()) return s;
  out->reserve(listing.size());
  for (TrialListing& t : listing) {
    TrialSummary r;
    r.id = t.id;
    r.number = t.number;
    r.state = t.state;
    r.epochs_run = t.epochs_run;
    r.error = std::move(t.error);
    Status s = params_from_json(t.params, &r.params);
    if (s.ok()) s = decode_metrics(t.final_metrics, &r.final_metrics);
    if (s.ok()) s = decode_metrics(t.last_metrics, &r.last_metrics);
    if (!s.ok()) return s.With(where + ": trial " + std::to_string(t.id));
    out->push_back(std::move(r));
  }
  return Status::Ok();
}

Status ExperimentStore::trial_listing(std::int64_t experiment_id, std::vector<TrialListing>* out) {
  const std::string where = "trial_listing of experiment " + std::to_string(experiment_id);
  out->clear();
  Statement st;
  Status s = st.prepare(db_,
                        "SELECT id, number, state, params, last_metrics, epochs_run, attempt, "
                        "error FROM trials WHERE experiment_id = ?1 ORDER BY number");
  if (!s.ok()) return s.With(where);
  st.bind(1, experiment_id);
  std::unordered_map<std::int64_t, std::size_t> index_of;
  bool any_live = false;
  while (st.next_row(&s)) {
    TrialListing r;
    r.id = st.i64(0);
    r.number = static_cast<std::int32_t>(st.i64(1));
    const std::string state = st.text(2);
    if (!parse_trial_state(state, &r.state)) {
      return Status::Error(where + ": trial " + std::to_string(r.id) + " has unknown state '" +
                           state + "'");
    }
    if (std::string params = st.text(3); !params.empty()) r.params = std::move(params);
    if (is_terminal(r.state)) {
      if (std::string last = st.text(4); !last.empty()) r.last_metrics = std::move(last);
      r.epochs_run = static_cast<std::int32_t>(st.i64(5));
    } else if (st.i64(6) > 0) {
      any_live = true;  // not ended, and started at least once: its reports say the rest
    }
    r.error = st.text(7);
    index_of[r.id] = out->size();
    out->push_back(std::move(r));
  }
  if (!s.ok()) return s.With(where);

  struct Finals {
    MetricMap final_metrics;
  };
  std::vector<Finals> finals(out->size());
  if (s = read_finals(db_, experiment_id, index_of, &finals); !s.ok()) return s.With(where);
  for (std::size_t i = 0; i < finals.size(); ++i)
    if (!finals[i].final_metrics.empty())
      (*out)[i].final_metrics = encode_metrics(finals[i].final_metrics);

  if (!any_live) return Status::Ok();
  s = read_lineage((std::string("t.experiment_id = ?1 AND t.state NOT IN ") + kTerminalStates)
                       .c_str(),
                   experiment_id, false, [&](std::int64_t id, Lineage&& lineage) {
                     if (auto it = index_of.find(id); it != index_of.end()) {
                       (*out)[it->second].last_metrics = encode_metrics(lineage.fold.last());
                       (*out)[it->second].epochs_run = lineage.fold.epochs_run();
                     }
                     return Status::Ok();
                   });
  return s.With(where);
}

Status ExperimentStore::get_trial(std::int64_t trial_id, TrialRecord* out) {
  const std::string where = "get_trial " + std::to_string(trial_id);
  Statement st;
  Status s = st.prepare(
      db_, (std::string("SELECT ") + kTrialColumns + " FROM trials WHERE id = ?1").c_str());
  if (!s.ok()) return s.With(where);
  st.bind(1, trial_id);
  if (!st.next_row(&s)) return s.ok() ? Status::Error(where + ": no such trial") : s.With(where);
  if (s = read_trial(st, out); !s.ok()) return s.With(where);

  Statement finals;
  s = finals.prepare(db_, "SELECT name, value FROM finals WHERE trial_id = ?1");
  if (!s.ok()) return s.With(where);
  finals.bind(1, trial_id);
  while (finals.next_row(&s)) out->final_metrics[finals.text(0)] = finals.real(1);
  return s.With(where);
}

Status ExperimentStore::find_trial(std::int64_t experiment_id, std::int32_t number,
                                   std::optional<TrialRecord>* out) {
  const std::string where = "find_trial " + std::to_string(number) + " of experiment " +
                            std::to_string(experiment_id);
  out->reset();
  Statement st;
  Status s = st.prepare(db_, "SELECT id FROM trials WHERE experiment_id = ?1 AND number = ?2");
  if (!s.ok()) return s.With(where);
  st.bind(1, experiment_id);
  st.bind(2, static_cast<std::int64_t>(number));
  if (!st.next_row(&s)) return s.With(where);
  TrialRecord record;
  if (s = get_trial(st.i64(0), &record); !s.ok()) return s;
  *out = std::move(record);
  return Status::Ok();
}

Status ExperimentStore::trial_number_range(std::int64_t experiment_id,
                                           std::pair<std::int32_t, std::int32_t>* range,
                                           std::int64_t* count) {
  const std::string where = "trial_number_range of experiment " + std::to_string(experiment_id);
  Statement st;
  Status s = st.prepare(db_, "SELECT COUNT(*), IFNULL(MIN(number), 0), IFNULL(MAX(number), 0) "
                             "FROM trials WHERE experiment_id = ?1");
  if (!s.ok()) return s.With(where);
  st.bind(1, experiment_id);
  if (!st.next_row(&s)) return s.ok() ? Status::Error(where + ": no row") : s.With(where);
  *count = st.i64(0);
  *range = {static_cast<std::int32_t>(st.i64(1)), static_cast<std::int32_t>(st.i64(2))};
  return Status::Ok();
}

Status ExperimentStore::attempt_owner(std::int64_t trial_id, std::int32_t attempt,
                                      std::string* group, std::string* key) {
  const std::string where =
      "attempt_owner " + std::to_string(trial_id) + "/" + std::to_string(attempt);
  Statement st;
  Status s = st.prepare(db_, "SELECT grp, provenance FROM attempts WHERE trial_id = ?1 AND "
                             "attempt = ?2");
  if (!s.ok()) return s.With(where);
  st.bind(1, trial_id);
  st.bind(2, static_cast<std::int64_t>(attempt));
  if (!st.next_row(&s)) return s.ok() ? Status::Error(where + ": no such attempt") : s.With(where);
  *group = st.text(0);
  const nlohmann::json provenance = nlohmann::json::parse(st.text(1), nullptr, false);
  key->clear();
  if (provenance.is_object() && provenance.contains("key") && provenance["key"].is_string())
    *key = provenance["key"].get<std::string>();
  return Status::Ok();
}

Status ExperimentStore::fold_of(std::int64_t trial_id, std::int32_t attempt, MetricFold* out) {
  if (auto live = live_folds_.find(trial_id);
      live != live_folds_.end() && live->second.attempt == attempt) {
    *out = live->second.fold;
    return Status::Ok();
  }
  *out = MetricFold();
  return read_lineage("t.id = ?1", trial_id, false, [&](std::int64_t, Lineage&& lineage) {
    *out = std::move(lineage.fold);
    return Status::Ok();
  });
}

Status ExperimentStore::experiment_metrics(std::int64_t experiment_id,
                                           std::map<std::int64_t, MetricSeries>* out) {
  out->clear();
  return for_each_series(experiment_id, [&](std::int64_t id, MetricSeries&& series) {
    out->emplace_hint(out->end(), id, std::move(series));
    return Status::Ok();
  });
}

Status ExperimentStore::data_version(std::int64_t* out) {
  Statement st;
  Status s = st.prepare(db_, "PRAGMA data_version");
  if (!s.ok()) return s.With("data_version");
  if (!st.next_row(&s)) return s.ok() ? Status::Error("data_version: no row") : s.With("data_version");
  *out = st.i64(0);
  return Status::Ok();
}

}  // namespace trellis::coordinator
