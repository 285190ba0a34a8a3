// ExperimentStore's events: the story of a sweep, appended by the coordinator beside the state
// changes they explain, read back by export, and later by `trellis status` and the dashboard.

#include <sqlite3.h>

#include "coordinator/experiment_store.h"
#include "coordinator/metrics_json.h"
#include "coordinator/sqlite_statement.h"
#include "coordinator/store_rows.h"

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
                                    std::vector<EventRecord>* out, std::size_t limit) {
  out->clear();
  Statement st;
  Status s = st.prepare(db_, statements_.get(),
                        std::string("SELECT ") + kEventColumns +
                            " FROM events WHERE experiment_id = ?1 AND seq > ?2 "
                            "ORDER BY seq LIMIT ?3");
  if (!s.ok()) return s.With("list_events");
  st.bind(1, experiment_id);
  st.bind(2, after_seq);
  st.bind(3, limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(limit));
  while (st.next_row(&s)) out->push_back(read_event(st, experiment_id));
  return s.With("list_events");
}

Status ExperimentStore::list_reports(std::int64_t experiment_id, std::int64_t after_id,
                                     std::size_t limit, std::vector<ReportRecord>* out) {
  out->clear();
  Statement st;
  // reports.id is the arrival order; the join keeps one experiment's.
  Status s = st.prepare(db_, statements_.get(),
                        "SELECT r.id, r.trial_id, r.attempt, r.epoch, r.metrics FROM reports r "
                        "JOIN trials t ON t.id = r.trial_id "
                        "WHERE t.experiment_id = ?1 AND r.id > ?2 ORDER BY r.id LIMIT ?3");
  if (!s.ok()) return s.With("list_reports");
  st.bind(1, experiment_id);
  st.bind(2, after_id);
  st.bind(3, limit == 0 ? std::int64_t{-1} : static_cast<std::int64_t>(limit));
  while (st.next_row(&s)) {
    ReportRecord r;
    r.id = st.i64(0);
    r.trial_id = st.i64(1);
    r.attempt = static_cast<std::int32_t>(st.i64(2));
    r.epoch = static_cast<std::int32_t>(st.i64(3));
    if (Status d = decode_metrics(st.view(4), &r.metrics); !d.ok())
      return d.With("list_reports: report " + std::to_string(r.id));
    out->push_back(std::move(r));
  }
  return s.With("list_reports");
}

}  // namespace trellis::coordinator
