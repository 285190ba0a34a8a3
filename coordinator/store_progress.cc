// ExperimentStore's queries for a reader following a sweep (`trellis status`,
// sweep_status.h). The contract is in experiment_store.h.

#include <sqlite3.h>

#include "coordinator/experiment_store.h"
#include "coordinator/sqlite_statement.h"
#include "coordinator/store_rows.h"

namespace trellis::coordinator {
namespace {

// The one integer `sql` (parameters ?1, ?2) selects.
Status scalar(sqlite3* db, StatementCache* cache, const char* sql, std::int64_t first,
              std::int64_t second, std::int64_t* out) {
  *out = 0;
  Statement st;
  Status s = st.prepare(db, cache, sql);
  if (!s.ok()) return s;
  st.bind(1, first);
  st.bind(2, second);
  if (st.next_row(&s)) *out = st.i64(0);
  return s;
}

}  // namespace

Status ExperimentStore::last_event(std::int64_t experiment_id, const std::string& kind,
                                   std::optional<EventRecord>* out) {
  out->reset();
  Statement st;
  Status s = st.prepare(db_, statements_.get(),
                        std::string("SELECT ") + kEventColumns +
                            " FROM events WHERE experiment_id = ?1 AND kind = ?2 "
                            "ORDER BY seq DESC LIMIT 1");
  if (!s.ok()) return s.With("last_event");
  st.bind(1, experiment_id);
  st.bind(2, kind);
  if (st.next_row(&s)) *out = read_event(st, experiment_id);
  return s.With("last_event " + kind);
}

Status ExperimentStore::count_reports(std::int64_t experiment_id, std::int64_t after_id,
                                      std::int64_t* out) {
  return scalar(db_, statements_.get(),
                "SELECT COUNT(*) FROM reports r JOIN trials t ON t.id = r.trial_id "
                "WHERE t.experiment_id = ?1 AND r.id > ?2",
                experiment_id, after_id, out)
      .With("count_reports");
}

Status ExperimentStore::last_epoch(std::int64_t trial_id, std::int32_t attempt,
                                   std::int32_t* out) {
  std::int64_t epoch = 0;
  const Status s = scalar(db_, statements_.get(),
                          "SELECT COALESCE(MAX(epoch), 0) FROM reports "
                          "WHERE trial_id = ?1 AND attempt = ?2",
                          trial_id, attempt, &epoch);
  *out = static_cast<std::int32_t>(epoch);
  return s.With("last_epoch");
}

}  // namespace trellis::coordinator
