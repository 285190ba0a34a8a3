// ExperimentStore's events: the story of a sweep, appended by the coordinator beside the state
// changes they explain, read back by export, and later by `trellis status` and the dashboard.

#include <sqlite3.h>

#include "coordinator/experiment_store.h"
#include "coordinator/sqlite_statement.h"

namespace trellis::coordinator {

Status ExperimentStore::append_event(EventRecord* event) {
  const auto where = [&] { return "append_event " + event->kind; };
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where());
  event->after_report = last_report_id_;
  event->created_at = now_iso8601();
  Statement st;
  s = st.prepare(db_, statements_.get(),
                 "INSERT INTO events (experiment_id, kind, trial_id, grp, body, after_report, "
                 "created_at) VALUES (?1, ?2, NULLIF(?3, -1), ?4, ?5, ?6, ?7)");
  if (!s.ok()) return s.With(where());
  st.bind(1, event->experiment_id);
  st.bind(2, event->kind);
  st.bind(3, event->trial_id);
  st.bind(4, event->group);
  st.bind(5, event->body);
  st.bind(6, event->after_report);
  st.bind(7, event->created_at);
  if (s = st.run(); !s.ok()) return s.With(where());
  txn.wrote();
  event->seq = sqlite3_last_insert_rowid(db_);
  if (s = txn.commit(); !s.ok()) return s.With(where());
  return Status::Ok();
}

Status ExperimentStore::list_events(std::int64_t experiment_id, std::int64_t after_seq,
                                    std::vector<EventRecord>* out) {
  out->clear();
  Statement st;
  Status s = st.prepare(db_, statements_.get(),
                        "SELECT seq, kind, COALESCE(trial_id, -1), grp, body, after_report, "
                        "created_at FROM events WHERE experiment_id = ?1 AND seq > ?2 "
                        "ORDER BY seq");
  if (!s.ok()) return s.With("list_events");
  st.bind(1, experiment_id);
  st.bind(2, after_seq);
  while (st.next_row(&s)) {
    EventRecord e;
    e.seq = st.i64(0);
    e.experiment_id = experiment_id;
    e.kind = st.text(1);
    e.trial_id = st.i64(2);
    e.group = st.text(3);
    e.body = st.text(4);
    e.after_report = st.i64(5);
    e.created_at = st.text(6);
    out->push_back(std::move(e));
  }
  return s.With("list_events");
}

}  // namespace trellis::coordinator
