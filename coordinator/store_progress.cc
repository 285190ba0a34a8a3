// ExperimentStore's queries for a reader following a sweep (`trellis status`,
// sweep_status.h). The contract is in experiment_store.h.

#include <sqlite3.h>

#include "coordinator/experiment_store.h"
#include "coordinator/sqlite_statement.h"

namespace trellis::coordinator {

Status ExperimentStore::last_event(std::int64_t experiment_id, const std::string& kind,
                                   std::optional<EventRecord>* out) {
  out->reset();
  Statement st;
  Status s = st.prepare(db_, statements_.get(),
                        "SELECT seq, COALESCE(trial_id, -1), grp, body, after_report, created_at "
                        "FROM events WHERE experiment_id = ?1 AND kind = ?2 "
                        "ORDER BY seq DESC LIMIT 1");
  if (!s.ok()) return s.With("last_event");
  st.bind(1, experiment_id);
  st.bind(2, kind);
  if (st.next_row(&s)) {
    EventRecord e;
    e.seq = st.i64(0);
    e.experiment_id = experiment_id;
    e.kind = kind;
    e.trial_id = st.i64(1);
    e.group = st.text(2);
    e.body = st.text(3);
    e.after_report = st.i64(4);
    e.created_at = st.text(5);
    *out = std::move(e);
  }
  return s.With("last_event " + kind);
}

Status ExperimentStore::count_reports(std::int64_t experiment_id, std::int64_t after_id,
                                      std::int64_t* out) {
  *out = 0;
  Statement st;
  Status s = st.prepare(db_, statements_.get(),
                        "SELECT COUNT(*) FROM reports r JOIN trials t ON t.id = r.trial_id "
                        "WHERE t.experiment_id = ?1 AND r.id > ?2");
  if (!s.ok()) return s.With("count_reports");
  st.bind(1, experiment_id);
  st.bind(2, after_id);
  if (st.next_row(&s)) *out = st.i64(0);
  return s.With("count_reports");
}

Status ExperimentStore::last_epoch(std::int64_t trial_id, std::int32_t attempt,
                                   std::int32_t* out) {
  *out = 0;
  Statement st;
  Status s = st.prepare(db_, statements_.get(),
                        "SELECT COALESCE(MAX(epoch), 0) FROM reports "
                        "WHERE trial_id = ?1 AND attempt = ?2");
  if (!s.ok()) return s.With("last_epoch");
  st.bind(1, trial_id);
  st.bind(2, attempt);
  if (st.next_row(&s)) *out = static_cast<std::int32_t>(st.i64(0));
  return s.With("last_epoch");
}

}  // namespace trellis::coordinator
