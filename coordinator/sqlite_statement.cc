#include "coordinator/sqlite_statement.h"

namespace trellis::coordinator {

std::string db_error(sqlite3* db) {
  return std::string(sqlite3_errmsg(db)) + " (sqlite code " +
         std::to_string(sqlite3_extended_errcode(db)) + ")";
}

Status exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string message = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return Status::Error(message + " (sqlite code " +
                         std::to_string(sqlite3_extended_errcode(db)) + ")");
  }
  return Status::Ok();
}

}  // namespace trellis::coordinator
