// ExperimentStore: the experiments table (find, list, create, state) and resolving a name
// given on the command line. The contract is in experiment_store.h.

#include "coordinator/experiment_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "coordinator/metrics_json.h"
#include "coordinator/params_codec.h"
#include "coordinator/sqlite_statement.h"
#include "coordinator/store_rows.h"

namespace trellis::coordinator {

Status ExperimentStore::find_experiment(const std::string& name,
                                        std::optional<ExperimentRecord>* out) {
  out->reset();
  Statement st;
  Status s = st.prepare(
      db_, (std::string("SELECT ") + kExperimentColumns + " FROM experiments WHERE name = ?1")
               .c_str());
  if (!s.ok()) return s.With("find_experiment");
  st.bind(1, name);
  if (st.next_row(&s)) *out = read_experiment(st);
  return s.With("find_experiment '" + name + "'");
}

Status ExperimentStore::latest_experiment(std::optional<ExperimentRecord>* out) {
  out->reset();
  Statement st;
  // ids only grow, so the highest id is the latest even when two share a timestamp.
  Status s = st.prepare(
      db_, (std::string("SELECT ") + kExperimentColumns +
            " FROM experiments ORDER BY id DESC LIMIT 1")
               .c_str());
  if (!s.ok()) return s.With("latest_experiment");
  if (st.next_row(&s)) *out = read_experiment(st);
  return s.With("latest_experiment");
}

Status ExperimentStore::list_experiments(std::vector<ExperimentRecord>* out) {
  out->clear();
  Statement st;
  Status s = st.prepare(
      db_, (std::string("SELECT ") + kExperimentColumns + " FROM experiments ORDER BY id").c_str());
  if (!s.ok()) return s.With("list_experiments");
  while (st.next_row(&s)) out->push_back(read_experiment(st));
  return s.With("list_experiments");
}

Status ExperimentStore::create_experiment(ExperimentRecord* record) {
  const std::string where = "create_experiment '" + record->name + "'";
  if (record->name.empty()) return Status::Error("create_experiment: empty name");
  if (record->mode != "max" && record->mode != "min") {
    return Status::Error(where + ": mode must be max or min, not '" + record->mode + "'");
  }
  Statement st;
  Status s = st.prepare(db_,
                        "INSERT INTO experiments (name, spec_yaml, spec_hash, metric, mode, seed, "
                        "state, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!s.ok()) return s.With(where);
  const std::string created_at = now_iso8601();
  st.bind(1, record->name);
  st.bind(2, record->spec_yaml);
  st.bind(3, record->spec_hash);
  st.bind(4, record->metric);
  st.bind(5, record->mode);
  st.bind(6, to_db(record->seed));
  st.bind(7, record->state);
  st.bind(8, created_at);
  s = st.run();
  if (!s.ok()) {
    if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_UNIQUE) {
      return Status::Error(where + ": an experiment with this name already exists in " + path());
    }
    return s.With(where);
  }
  record->id = sqlite3_last_insert_rowid(db_);
  record->created_at = created_at;
  return Status::Ok();
}

Status ExperimentStore::set_experiment_state(std::int64_t experiment_id,
                                             const std::string& state) {
  const std::string where = "set_experiment_state " + std::to_string(experiment_id);
  Statement st;
  Status s = st.prepare(db_, "UPDATE experiments SET state = ?1 WHERE id = ?2");
  if (!s.ok()) return s.With(where);
  st.bind(1, state);
  st.bind(2, experiment_id);
  if (s = st.run(); !s.ok()) return s.With(where);
  if (sqlite3_changes(db_) == 0) return Status::Error(where + ": no such experiment");
  return Status::Ok();
}

Status resolve_experiment(ExperimentStore& store, const std::string& name,
                          ExperimentRecord* out) {
  std::optional<ExperimentRecord> found;
  Status s = name.empty() ? store.latest_experiment(&found) : store.find_experiment(name, &found);
  if (!s.ok()) return s;
  if (found) {
    *out = std::move(*found);
    return Status::Ok();
  }
  std::vector<ExperimentRecord> all;
  if (s = store.list_experiments(&all); !s.ok()) return s;
  if (all.empty()) {
    return Status::Error("no experiments in " + store.path() +
                         "; start one with trellis run SPEC");
  }
  std::string names;
  for (const auto& e : all) names += (names.empty() ? "" : ", ") + e.name;
  return Status::Error("no experiment '" + name + "' in " + store.path() +
                       "; experiments: " + names);
}

}  // namespace trellis::coordinator
