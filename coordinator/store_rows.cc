#include "coordinator/store_rows.h"

#include <sqlite3.h>

#include <string>
#include <string_view>

#include "coordinator/params_codec.h"

namespace trellis::coordinator {

EventRecord read_event(const Statement& st, std::int64_t experiment_id) {
  EventRecord e;
  e.seq = st.i64(0);
  e.experiment_id = experiment_id;
  e.kind = st.text(1);
  e.trial_id = st.i64(2);
  e.group = st.text(3);
  e.body = st.text(4);
  e.after_report = st.i64(5);
  e.created_at = st.text(6);
  return e;
}

ExperimentRecord read_experiment(const Statement& st) {
  ExperimentRecord r;
  r.id = st.i64(0);
  r.name = st.text(1);
  r.spec_yaml = st.text(2);
  r.spec_hash = st.text(3);
  r.metric = st.text(4);
  r.mode = st.text(5);
  r.seed = from_db(st.i64(6));
  r.state = st.text(7);
  r.created_at = st.text(8);
  return r;
}

Status read_trial(const Statement& st, TrialRecord* r) {
  r->id = st.i64(0);
  r->experiment_id = st.i64(1);
  r->number = static_cast<std::int32_t>(st.i64(2));
  const std::string state = st.text(3);
  if (!parse_trial_state(state, &r->state)) {
    return Status::Error("trial " + std::to_string(r->id) + " has unknown state '" + state + "'");
  }
  Status s = params_from_json(st.text(4), &r->params);
  if (!s.ok()) return s.With("trial " + std::to_string(r->id));
  r->seed = from_db(st.i64(5));
  r->attempt = static_cast<std::int32_t>(st.i64(6));
  r->group = st.text(7);
  r->error = st.text(8);
  r->started_at = st.text(9);
  r->finished_at = st.text(10);
  r->checkpoint_epoch = static_cast<std::int32_t>(st.i64(11));
  r->failures = static_cast<std::int32_t>(st.i64(12));
  r->target_epoch = static_cast<std::int32_t>(st.i64(13));
  r->warm_start = st.text(14);
  r->provenance = st.text(15);
  r->final_metrics.clear();
  return Status::Ok();
}

Status trial_state(sqlite3* db, StatementCache* cache, std::int64_t trial_id, TrialState* state,
                   std::int32_t* attempt) {
  Statement st;
  Status s = st.prepare(db, cache, "SELECT state, attempt FROM trials WHERE id = ?1");
  if (!s.ok()) return s;
  st.bind(1, trial_id);
  if (!st.next_row(&s)) {
    return s.ok() ? Status::Error("no trial with id " + std::to_string(trial_id)) : s;
  }
  const std::string_view text = st.view(0);
  if (!parse_trial_state(std::string(text), state)) {
    return Status::Error("trial " + std::to_string(trial_id) + " has unknown state '" +
                         std::string(text) + "'");
  }
  *attempt = static_cast<std::int32_t>(st.i64(1));
  return Status::Ok();
}

}  // namespace trellis::coordinator
