// ExperimentStore::delete_experiment: `trellis rm`'s half in the store. The contract is in
// experiment_store.h.

#include <sqlite3.h>

#include <map>

#include "coordinator/experiment_store.h"
#include "coordinator/sqlite_statement.h"

namespace trellis::coordinator {
namespace {

// The tables that hold rows of one experiment, beside `experiments` and `trials`: each one
// with a column that names the experiment or one of its trials, read from the schema rather
// than listed here, so that a table a later schema adds is not left behind.
Status child_tables(sqlite3* db, std::vector<std::pair<std::string, std::string>>* out) {
  out->clear();
  Statement st;
  Status s = st.prepare(db,
                        "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c "
                        "WHERE m.type = 'table' AND m.name NOT IN ('experiments', 'trials') "
                        "AND c.name IN ('experiment_id', 'trial_id', 'donor_id') "
                        "ORDER BY m.name, c.name");
  if (!s.ok()) return s;
  while (st.next_row(&s)) out->emplace_back(st.text(0), st.text(1));
  return s;
}

Status delete_where(sqlite3* db, const std::string& sql, std::int64_t experiment_id,
                    std::int64_t* rows) {
  Statement st;
  Status s = st.prepare(db, sql.c_str());
  if (!s.ok()) return s;
  st.bind(1, experiment_id);
  if (s = st.run(); !s.ok()) return s;
  *rows = sqlite3_changes(db);
  return Status::Ok();
}

}  // namespace

Status ExperimentStore::delete_experiment(std::int64_t experiment_id, DeletedRows* out) {
  const std::string where = "delete_experiment " + std::to_string(experiment_id);
  out->tables.clear();
  if (batch_open_) return Status::Error(where + ": not inside a batch");
  Transaction txn(db_);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where);
  std::vector<std::pair<std::string, std::string>> children;
  if (s = child_tables(db_, &children); !s.ok()) return s.With(where);
  // Children first: the foreign keys are on. A table may name a trial twice (lineage: the
  // trial and its donor); its rows are counted once.
  std::map<std::string, std::int64_t> rows;
  for (const auto& [table, column] : children) {
    const std::string quoted = "\"" + table + "\"";
    const std::string sql =
        column == "experiment_id"
            ? "DELETE FROM " + quoted + " WHERE experiment_id = ?1"
            : "DELETE FROM " + quoted + " WHERE " + column +
                  " IN (SELECT id FROM trials WHERE experiment_id = ?1)";
    std::int64_t n = 0;
    if (s = delete_where(db_, sql, experiment_id, &n); !s.ok()) return s.With(where + ": " + table);
    rows[table] += n;
  }
  for (const auto& [table, n] : rows) out->tables.emplace_back(table, n);
  for (const char* table : {"trials", "experiments"}) {
    std::int64_t n = 0;
    const std::string sql = std::string("DELETE FROM ") + table +
                            (table == std::string("trials") ? " WHERE experiment_id = ?1"
                                                            : " WHERE id = ?1");
    if (s = delete_where(db_, sql, experiment_id, &n); !s.ok()) return s.With(where + ": " + table);
    out->tables.emplace_back(table, n);
  }
  if (out->tables.back().second == 0) return Status::Error(where + ": no such experiment");
  txn.wrote();
  if (s = txn.commit(); !s.ok()) return s.With(where);
  return Status::Ok();
}

}  // namespace trellis::coordinator
