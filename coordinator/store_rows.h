#pragma once
// What the store's .cc files share, and nothing outside the store includes: the column lists and
// row readers of the trials and experiments tables, the lineage query, and the transition
// checks. The store's contract is in experiment_store.h.

#include <cstdint>

#include "coordinator/experiment_store.h"
#include "coordinator/sqlite_statement.h"

namespace trellis::coordinator {

constexpr const char* kExperimentColumns =
    "id, name, spec_yaml, spec_hash, metric, mode, seed, state, created_at";
ExperimentRecord read_experiment(const Statement& st);

constexpr const char* kEventColumns =
    "seq, kind, COALESCE(trial_id, -1), grp, body, after_report, created_at";
EventRecord read_event(const Statement& st, std::int64_t experiment_id);

constexpr const char* kTrialColumns =
    "id, experiment_id, number, state, params, seed, attempt, grp, error, started_at, "
    "finished_at, checkpoint_epoch, failures, target_epoch, warm_start, "
    "(SELECT provenance FROM attempts a WHERE a.trial_id = trials.id AND a.attempt = "
    "trials.attempt)";
Status read_trial(const Statement& st, TrialRecord* r);

// A trial's series is its lineage: the latest attempt's epochs, and before the epoch that
// attempt resumed from, the epochs of the attempts whose checkpoints it continues (for each
// epoch and metric, the newest attempt that reported it). A fresh restart (resume_epoch 0)
// hides every older attempt. Callers append a condition on t; rows come grouped by trial.
constexpr const char* kLineageRows =
    "SELECT r.trial_id, r.epoch, r.attempt, r.metrics FROM trials t "
    "JOIN attempts a ON a.trial_id = t.id AND a.attempt = t.attempt "
    "JOIN reports r ON r.trial_id = t.id "
    "AND (r.attempt = t.attempt OR (r.attempt < t.attempt AND r.epoch <= a.resume_epoch)) "
    "WHERE ";
constexpr const char* kLineageOrder = " ORDER BY t.experiment_id, t.number";

constexpr const char* kTerminalStates = "('completed', 'pruned', 'failed')";

inline bool is_terminal(TrialState state) {
  return state == TrialState::kCompleted || state == TrialState::kPruned ||
         state == TrialState::kFailed;
}

// An attempt ends completed, pruned or failed, or paused where the scheduler decides later.
inline bool ends_attempt(TrialState state) {
  return state == TrialState::kPaused || is_terminal(state);
}

// Current state and attempt of one trial, for the transition checks.
Status trial_state(sqlite3* db, StatementCache* cache, std::int64_t trial_id, TrialState* state,
                   std::int32_t* attempt);

struct ExperimentStore::Lineage {
  MetricSeries series;  // filled only when asked for
  MetricFold fold;
};

}  // namespace trellis::coordinator
