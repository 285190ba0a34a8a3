#include "coordinator/store_schema.h"

#include <string>

#include "coordinator/sqlite_statement.h"

namespace trellis::coordinator {

Status put_meta(sqlite3* db, const std::string& key, const std::string& value) {
  Statement put;
  Status s = put.prepare(db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)");
  if (!s.ok()) return s;
  put.bind(1, key);
  put.bind(2, value);
  return put.run();
}

Status upgrade_from_schema_2(sqlite3* db) {
  Transaction txn(db);
  Status s = txn.begin();
  if (!s.ok()) return s;
  if (s = exec(db, kEventsSchema); !s.ok()) return s;
  if (s = put_meta(db, "schema_version", "3"); !s.ok()) return s;
  return txn.commit();
}

Status open_schema(sqlite3* db, bool read_only, int* version) {
  Transaction txn(db);
  // A read-only connection cannot take the write lock; its reads are consistent anyway.
  if (!read_only) {
    Status s = txn.begin();
    if (!s.ok()) return s;
  }
  Statement tables;
  Status s = tables.prepare(
      db, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'");
  if (!s.ok()) return s;
  bool has_meta = false;
  int table_count = 0;
  while (tables.next_row(&s)) {
    ++table_count;
    if (tables.text(0) == "meta") has_meta = true;
  }
  if (!s.ok()) return s;

  if (table_count == 0) {
    if (read_only) return Status::Error("empty database, not a Trellis store");
    if (s = exec(db, kSchema); !s.ok()) return s.With("creating schema");
    if (s = exec(db, kReportsSchema); !s.ok()) return s.With("creating schema");
    if (s = exec(db, kEventsSchema); !s.ok()) return s.With("creating schema");
    if (s = put_meta(db, "application", kApplication); !s.ok()) return s;
    if (s = put_meta(db, "schema_version", std::to_string(kSchemaVersion)); !s.ok()) return s;
    *version = kSchemaVersion;
    return txn.commit();
  }
  if (!has_meta) return Status::Error("SQLite database without a meta table, not a Trellis store");

  Statement get;
  s = get.prepare(db, "SELECT key, value FROM meta WHERE key IN ('application', 'schema_version')");
  if (!s.ok()) return s;
  std::string application, version_text;
  while (get.next_row(&s)) {
    (get.text(0) == "application" ? application : version_text) = get.text(1);
  }
  if (!s.ok()) return s;
  if (application != kApplication) {
    return Status::Error("meta table does not name a Trellis store (application '" +
                         application + "')");
  }
  try {
    *version = std::stoi(version_text);
  } catch (const std::exception&) {
    return Status::Error("unreadable schema version '" + version_text + "'");
  }
  if (*version > kSchemaVersion) {
    return Status::Error("schema version " + std::to_string(*version) +
                         " is newer than this build supports (" + std::to_string(kSchemaVersion) +
                         "); use a newer trellis");
  }
  if (*version < 1) return Status::Error("invalid schema version " + std::to_string(*version));
  if (*version < kSchemaVersion && read_only) {
    // Reading it would need the old layout's queries; upgrading needs the write lock.
    return Status::Error("written by an older trellis (schema version " +
                         std::to_string(*version) + "); `trellis upgrade --store FILE` upgrades "
                         "it in place (so does `trellis serve` or `trellis run` on it), then it "
                         "can be read");
  }
  return read_only ? Status::Ok() : txn.commit();
}

}  // namespace trellis::coordinator
