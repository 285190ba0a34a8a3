// ExperimentStore: trial writes, each a checked state transition: add, start an attempt,
// reports, end, requeue, continue, exploit. The contract is in experiment_store.h.

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

Status ExperimentStore::add_trial(TrialRecord* record) {
  const auto where = [&] {
    return "add_trial " + std::to_string(record->number) + " of experiment " +
           std::to_string(record->experiment_id);
  };
  std::string params;
  Status s = params_to_json(record->params, &params);
  if (!s.ok()) return s.With(where());
  Statement st;
  s = st.prepare(db_, statements_.get(),
                 "INSERT INTO trials (experiment_id, number, state, params, seed, target_epoch) "
                 "VALUES (?1, ?2, 'pending', ?3, ?4, ?5)");
  if (!s.ok()) return s.With(where());
  st.bind(1, record->experiment_id);
  st.bind(2, static_cast<std::int64_t>(record->number));
  st.bind(3, params);
  st.bind(4, to_db(record->seed));
  st.bind(5, static_cast<std::int64_t>(record->target_epoch));
  s = st.run();
  if (!s.ok()) {
    const int code = sqlite3_extended_errcode(db_);
    if (code == SQLITE_CONSTRAINT_UNIQUE) {
      return Status::Error(where() + ": trial number already exists");
    }
    if (code == SQLITE_CONSTRAINT_FOREIGNKEY) {
      return Status::Error(where() + ": no such experiment");
    }
    return s.With(where());
  }
  record->id = sqlite3_last_insert_rowid(db_);
  record->state = TrialState::kPending;
  record->attempt = 0;
  record->group.clear();
  record->error.clear();
  record->started_at.clear();
  record->finished_at.clear();
  record->final_metrics.clear();
  return Status::Ok();
}

Status ExperimentStore::start_trial(std::int64_t trial_id, const std::string& group,
                                    std::int32_t* attempt) {
  StartedAttempt started;
  Status s = start_trial(trial_id, group, "", &started);
  if (s.ok()) *attempt = started.attempt;
  return s;
}

Status ExperimentStore::start_trial(std::int64_t trial_id, const std::string& group,
                                    const std::string& provenance, StartedAttempt* started) {
  const auto where = [&] { return "start_trial " + std::to_string(trial_id); };
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where());
  TrialState state;
  std::int32_t current = 0, resume_epoch = 0;
  bool resume = false;
  {
    Statement st;
    s = st.prepare(db_, statements_.get(),
                   "SELECT state, attempt, checkpoint_epoch, resumable, warm_start FROM trials "
                   "WHERE id = ?1");
    if (!s.ok()) return s.With(where());
    st.bind(1, trial_id);
    if (!st.next_row(&s)) return (s.ok() ? Status::Error("no such trial") : s).With(where());
    const std::string text = st.text(0);
    if (!parse_trial_state(text, &state)) {
      return Status::Error(where() + ": unknown state '" + text + "'");
    }
    current = static_cast<std::int32_t>(st.i64(1));
    resume_epoch = static_cast<std::int32_t>(st.i64(2));
    resume = st.i64(3) != 0;
    started->warm_start = st.text(4);
  }
  if (state != TrialState::kPending) {
    return Status::Error(where() + ": trial is " + to_string(state) + ", not pending");
  }
  const std::string now = now_iso8601();
  {
    // No RETURNING: it would make SQLite open a statement journal for this one-row update.
    Statement st;
    s = st.prepare(db_, statements_.get(),
                   "UPDATE trials SET state = 'running', attempt = ?1, grp = ?2, started_at = ?3, "
                   "finished_at = '' WHERE id = ?4");
    if (!s.ok()) return s.With(where());
    st.bind(1, static_cast<std::int64_t>(current + 1));
    st.bind(2, group);
    st.bind(3, now);
    st.bind(4, trial_id);
    if (s = st.run(); !s.ok()) return s.With(where());
    txn.wrote();
  }

  Statement insert;
  s = insert.prepare(db_, statements_.get(),
                     "INSERT INTO attempts (trial_id, attempt, resume_epoch, grp, provenance, "
                     "started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!s.ok()) return s.With(where());
  insert.bind(1, trial_id);
  insert.bind(2, static_cast<std::int64_t>(current + 1));
  insert.bind(3, static_cast<std::int64_t>(resume_epoch));
  insert.bind(4, group);
  insert.bind(5, provenance);
  insert.bind(6, now);
  if (s = insert.run(); !s.ok()) return s.With(where());
  txn.wrote();
  if (s = txn.commit(); !s.ok()) return s.With(where());
  if (resume_epoch == 0) {
    live_folds_[trial_id] = LiveFold{current + 1, {}};
  } else {
    live_folds_.erase(trial_id);  // its lineage reaches into older attempts: fold from the store
  }
  started->attempt = current + 1;
  started->resume_epoch = resume_epoch;
  started->resume = resume;
  return Status::Ok();
}

Status ExperimentStore::append_report(std::int64_t trial_id, std::int32_t attempt,
                                      std::int32_t epoch, const MetricMap& metrics,
                                      bool checkpointed) {
  // Built only on failure: this runs for every report.
  const auto where = [&] {
    return "append_report trial " + std::to_string(trial_id) + " attempt " +
           std::to_string(attempt) + " epoch " + std::to_string(epoch);
  };
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where());
  TrialState state;
  std::int32_t current = 0;
  if (s = trial_state(db_, statements_.get(), trial_id, &state, &current); !s.ok()) {
    return s.With(where());
  }
  // A late report of an older attempt is kept (metric_series hides it); one of an attempt that
  // was never started is a protocol error.
  if (attempt < 1 || attempt > current) {
    return Status::Error(where() + ": attempt was never started (current attempt " +
                         std::to_string(current) + ")");
  }
  Statement st;
  s = st.prepare(db_, statements_.get(),
                 "INSERT OR IGNORE INTO reports (trial_id, attempt, epoch, metrics) "
                 "VALUES (?1, ?2, ?3, ?4)");
  if (!s.ok()) return s.With(where());
  st.bind(1, trial_id);
  st.bind(2, static_cast<std::int64_t>(attempt));
  st.bind(3, static_cast<std::int64_t>(epoch));
  st.bind(4, encode_metrics(metrics));
  if (s = st.run(); !s.ok()) return s.With(where());
  txn.wrote();
  const bool inserted = sqlite3_changes(db_) > 0;
  if (inserted) last_report_id_ = sqlite3_last_insert_rowid(db_);
  // Only the current attempt's checkpoint is the one its successor resumes from, and only a
  // new, later epoch moves it: a duplicate or an older report resent after a lost Ack names a
  // checkpoint file the worker has already deleted.
  if (inserted && checkpointed && attempt == current) {
    Statement mark;
    s = mark.prepare(db_, statements_.get(),
                     // From here on the trial's own checkpoint is newer than any warm start.
                     "UPDATE trials SET checkpoint_epoch = ?1, resumable = 1, warm_start = '' "
                     "WHERE id = ?2 AND checkpoint_epoch < ?1");
    if (!s.ok()) return s.With(where());
    mark.bind(1, static_cast<std::int64_t>(epoch));
    mark.bind(2, trial_id);
    if (s = mark.run(); !s.ok()) return s.With(where());
  }
  // Resent after the trial ended (its Done overtook it through a reconnect).
  if (inserted && is_terminal(state)) {
    if (s = refresh_summary(trial_id, current); !s.ok()) return s.With(where());
  }
  if (s = txn.commit(); !s.ok()) return s.With(where());
  if (inserted) {
    if (auto live = live_folds_.find(trial_id);
        live != live_folds_.end() && live->second.attempt == attempt) {
      live->second.fold.add(epoch, attempt, metrics);
    }
  }
  return Status::Ok();
}

Status ExperimentStore::merge_provenance(std::int64_t trial_id, std::int32_t attempt,
                                         const std::string& worker_object) {
  const std::string where =
      "merge_provenance " + std::to_string(trial_id) + " attempt " + std::to_string(attempt);
  // RFC 7396 merge with the stored object as the patch, so that its keys win.
  Statement st;
  Status s = st.prepare(db_,
                        "UPDATE attempts SET provenance = json_patch(?3, provenance) "
                        "WHERE trial_id = ?1 AND attempt = ?2 AND json_type(?3) = 'object'");
  if (!s.ok()) return s.With(where);
  st.bind(1, trial_id);
  st.bind(2, static_cast<std::int64_t>(attempt));
  st.bind(3, worker_object);
  if (s = st.run(); !s.ok()) return s.With(where);
  if (sqlite3_changes(db_) == 0)
    return Status::Error(where + ": no such attempt, or the worker's provenance is not a JSON object");
  return Status::Ok();
}

Status ExperimentStore::finish_trial(std::int64_t trial_id, std::int32_t attempt,
                                     TrialState state, const std::string& error,
                                     const MetricMap& final_metrics) {
  const auto where = [&] {
    return "finish_trial " + std::to_string(trial_id) + " attempt " + std::to_string(attempt) +
           " as " + to_string(state);
  };
  if (!ends_attempt(state)) {
    return Status::Error(where() + ": an attempt can only end paused, completed, pruned or failed");
  }
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where());
  TrialState current_state;
  std::int32_t current = 0;
  if (s = trial_state(db_, statements_.get(), trial_id, &current_state, &current); !s.ok()) {
    return s.With(where());
  }
  if (current_state != TrialState::kRunning) {
    return Status::Error(where() + ": trial is " + to_string(current_state) + ", not running");
  }
  if (current != attempt) {
    return Status::Error(where() + ": stale attempt, the trial is on attempt " +
                         std::to_string(current));
  }
  MetricFold fold;
  if (s = fold_of(trial_id, attempt, &fold); !s.ok()) return s.With(where());
  Statement update;
  s = update.prepare(db_, statements_.get(),
                     "UPDATE trials SET state = ?1, error = ?2, finished_at = ?3, "
                     "last_metrics = ?4, epochs_run = ?5 WHERE id = ?6");
  if (!s.ok()) return s.With(where());
  update.bind(1, std::string(to_string(state)));
  update.bind(2, error);
  update.bind(3, now_iso8601());
  update.bind(4, encode_metrics(fold.last()));
  update.bind(5, static_cast<std::int64_t>(fold.epochs_run()));
  update.bind(6, trial_id);
  if (s = update.run(); !s.ok()) return s.With(where());
  txn.wrote();

  Statement insert;
  s = insert.prepare(db_, statements_.get(),
                     "INSERT OR REPLACE INTO finals (trial_id, name, value) VALUES (?1, ?2, ?3)");
  if (!s.ok()) return s.With(where());
  for (const auto& [name, value] : final_metrics) {
    insert.reset();
    insert.bind(1, trial_id);
    insert.bind(2, name);
    insert.bind(3, value);
    if (s = insert.run(); !s.ok()) return s.With(where() + " final " + name);
  }
  if (s = txn.commit(); !s.ok()) return s.With(where());
  live_folds_.erase(trial_id);
  return Status::Ok();
}

Status ExperimentStore::requeue_trial(std::int64_t trial_id, const std::string& reason,
                                      Requeue why, std::int32_t max_failures, bool* failed) {
  const std::string where = "requeue_trial " + std::to_string(trial_id);
  if (failed != nullptr) *failed = false;
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where);
  TrialState state;
  std::int32_t current = 0;
  if (s = trial_state(db_, statements_.get(), trial_id, &state, &current); !s.ok()) {
    return s.With(where);
  }
  if (state != TrialState::kRunning) {
    return Status::Error(where + ": trial is " + to_string(state) + ", not running");
  }
  bool gave_up = false;
  {
    Statement st;
    switch (why) {
      case Requeue::kLost:
        // The failure counter decides between another attempt and giving up.
        s = st.prepare(db_,
                       "UPDATE trials SET failures = failures + 1, error = ?1, "
                       "state = CASE WHEN failures + 1 >= ?3 THEN 'failed' ELSE 'pending' END, "
                       "finished_at = CASE WHEN failures + 1 >= ?3 THEN ?4 ELSE '' END "
                       "WHERE id = ?2 RETURNING state");
        break;
      case Requeue::kPreemptedWithCheckpoint:
        s = st.prepare(db_, "UPDATE trials SET state = 'pending', error = ?1, resumable = 1 "
                            "WHERE id = ?2 RETURNING state");
        break;
      case Requeue::kNotTheTrialsFault:
        s = st.prepare(db_, "UPDATE trials SET state = 'pending', error = ?1 WHERE id = ?2 "
                            "RETURNING state");
        break;
    }
    if (!s.ok()) return s.With(where);
    st.bind(1, reason);
    st.bind(2, trial_id);
    if (why == Requeue::kLost) {
      st.bind(3, static_cast<std::int64_t>(std::max(1, max_failures)));
      st.bind(4, now_iso8601());
    }
    if (!st.next_row(&s)) return (s.ok() ? Status::Error("trial vanished") : s).With(where);
    txn.wrote();
    gave_up = st.text(0) == "failed";
  }
  if (gave_up) {
    if (s = refresh_summary(trial_id, current); !s.ok()) return s.With(where);
  }
  if (s = txn.commit(); !s.ok()) return s.With(where);
  live_folds_.erase(trial_id);
  if (failed != nullptr) *failed = gave_up;
  return Status::Ok();
}

Status ExperimentStore::continue_trial(std::int64_t trial_id, std::int32_t target_epoch) {
  const std::string where = "continue_trial " + std::to_string(trial_id);
  Statement st;
  Status s = st.prepare(db_, statements_.get(),
                        "UPDATE trials SET state = 'pending', target_epoch = ?1, error = '' "
                        "WHERE id = ?2 AND state = 'paused'");
  if (!s.ok()) return s.With(where);
  st.bind(1, static_cast<std::int64_t>(target_epoch));
  st.bind(2, trial_id);
  if (s = st.run(); !s.ok()) return s.With(where);
  if (sqlite3_changes(db_) == 0) return Status::Error(where + ": trial is not paused");
  return Status::Ok();
}

Status ExperimentStore::exploit_trial(const LineageRecord& exploit, std::int32_t target_epoch,
                                      const std::string& warm_start) {
  const std::string where = "exploit_trial " + std::to_string(exploit.trial_id);
  std::string before, after;
  Status s = params_to_json(exploit.params_before, &before);
  if (s.ok()) s = params_to_json(exploit.params_after, &after);
  if (!s.ok()) return s.With(where);
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  if (s = txn.begin(); !s.ok()) return s.With(where);
  Statement update;
  s = update.prepare(db_, statements_.get(),
                     "UPDATE trials SET state = 'pending', target_epoch = ?1, error = '', "
                     "params = ?2, checkpoint_epoch = ?3, resumable = 1, warm_start = ?4 "
                     "WHERE id = ?5 AND state = 'paused'");
  if (!s.ok()) return s.With(where);
  update.bind(1, static_cast<std::int64_t>(target_epoch));
  update.bind(2, after);
  update.bind(3, static_cast<std::int64_t>(exploit.donor_epoch));
  update.bind(4, warm_start);
  update.bind(5, exploit.trial_id);
  if (s = update.run(); !s.ok()) return s.With(where);
  if (sqlite3_changes(db_) == 0) return Status::Error(where + ": trial is not paused");
  txn.wrote();
  Statement insert;
  s = insert.prepare(db_, statements_.get(),
                     "INSERT OR REPLACE INTO lineage (trial_id, epoch, donor_id, donor_epoch, "
                     "params_before, params_after, reason, created_at) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!s.ok()) return s.With(where);
  insert.bind(1, exploit.trial_id);
  insert.bind(2, static_cast<std::int64_t>(exploit.epoch));
  insert.bind(3, exploit.donor_id);
  insert.bind(4, static_cast<std::int64_t>(exploit.donor_epoch));
  insert.bind(5, before);
  insert.bind(6, after);
  insert.bind(7, exploit.reason);
  insert.bind(8, now_iso8601());
  if (s = insert.run(); !s.ok()) return s.With(where);
  return txn.commit().With(where);
}

Status ExperimentStore::end_paused_trial(std::int64_t trial_id, TrialState state,
                                         const std::string& reason) {
  const std::string where = "end_paused_trial " + std::to_string(trial_id);
  if (!is_terminal(state))
    return Status::Error(where + ": a paused trial ends completed, pruned or failed");
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where);
  TrialState current_state;
  std::int32_t attempt = 0;
  if (s = trial_state(db_, statements_.get(), trial_id, &current_state, &attempt); !s.ok())
    return s.With(where);
  if (current_state != TrialState::kPaused) return Status::Error(where + ": trial is not paused");
  Statement st;
  s = st.prepare(db_, statements_.get(),
                 "UPDATE trials SET state = ?1, error = ?2, finished_at = ?3 WHERE id = ?4");
  if (!s.ok()) return s.With(where);
  st.bind(1, std::string(to_string(state)));
  st.bind(2, reason);
  st.bind(3, now_iso8601());
  st.bind(4, trial_id);
  if (s = st.run(); !s.ok()) return s.With(where);
  txn.wrote();
  // Ended: listings read its summary instead of its reports.
  if (s = refresh_summary(trial_id, attempt); !s.ok()) return s.With(where);
  if (s = txn.commit(); !s.ok()) return s.With(where);
  live_folds_.erase(trial_id);
  return Status::Ok();
}

Status ExperimentStore::refresh_summary(std::int64_t trial_id, std::int32_t attempt) {
  MetricFold fold;
  Status s = fold_of(trial_id, attempt, &fold);
  if (!s.ok()) return s;
  Statement update;
  s = update.prepare(db_, statements_.get(),
                     "UPDATE trials SET last_metrics = ?1, epochs_run = ?2 WHERE id = ?3");
  if (!s.ok()) return s;
  update.bind(1, encode_metrics(fold.last()));
  update.bind(2, static_cast<std::int64_t>(fold.epochs_run()));
  update.bind(3, trial_id);
  return update.run();
}

}  // namespace trellis::coordinator
