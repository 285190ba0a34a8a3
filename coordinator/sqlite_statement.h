#pragma once
// The store's SQLite plumbing: prepared statements (cached per connection, or owned),
// statements without values, and the transaction a store call runs in.

#include <sqlite3.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace trellis::coordinator {

// SQLite integers are signed; a uint64 seed goes through int64 bit-for-bit.
inline std::int64_t to_db(std::uint64_t v) { return static_cast<std::int64_t>(v); }
inline std::uint64_t from_db(std::int64_t v) { return static_cast<std::uint64_t>(v); }

// Now, as the store writes times: ISO 8601 UTC with milliseconds.
std::string now_iso8601();

// SQLite's message with its extended error code, for Status messages.
std::string db_error(sqlite3* db);

// Prepared statements by SQL text, prepared once per connection: preparing costs more than
// running most of these statements, and the coordinator runs them 100,000 times a second.
class StatementCache {
 public:
  explicit StatementCache(sqlite3* db) : db_(db) {}
  ~StatementCache() {
    for (auto& [sql, entry] : entries_) sqlite3_finalize(entry.stmt);
  }
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  // The statement for `sql`, marked in use; nullptr when it is already in use (the caller
  // then prepares its own) or cannot be prepared (*status says why).
  sqlite3_stmt* acquire(const std::string& sql, Status* status) {
    auto it = entries_.find(sql);
    if (it == entries_.end()) {
      sqlite3_stmt* stmt = nullptr;
      if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
          SQLITE_OK) {
        *status = Status::Error("preparing \"" + sql + "\": " + db_error(db_));
        return nullptr;
      }
      it = entries_.emplace(sql, Entry{stmt, false}).first;
    }
    if (it->second.in_use) return nullptr;
    it->second.in_use = true;
    return it->second.stmt;
  }
  void release(const std::string& sql) { entries_[sql].in_use = false; }

 private:
  struct Entry {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  sqlite3* db_;
  std::unordered_map<std::string, Entry> entries_;
};

// One prepared statement: owned and finalized, or borrowed from a StatementCache and reset
// for its next use, on every path out.
class Statement {
 public:
  Statement() = default;
  ~Statement() {
    if (cache_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
      cache_->release(sql_);
    } else {
      sqlite3_finalize(stmt_);
    }
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Status prepare(sqlite3* db, const char* sql) {
    db_ = db;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      return Status::Error(std::string("preparing \"") + sql + "\": " + db_error(db));
    }
    return Status::Ok();
  }
  Status prepare(sqlite3* db, StatementCache* cache, std::string sql) {
    Status s;
    if (sqlite3_stmt* stmt = cache->acquire(sql, &s)) {
      db_ = db;
      stmt_ = stmt;
      cache_ = cache;
      sql_ = std::move(sql);
      return Status::Ok();
    }
    return s.ok() ? prepare(db, sql.c_str()) : s;  // in use further up the stack: a copy
  }

  void bind(int i, std::int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void bind(int i, int v) { sqlite3_bind_int(stmt_, i, v); }
  void bind(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  void bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }

  // True while a row is available; errors land in *status (left untouched on success).
  bool next_row(Status* status) {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) *status = Status::Error(db_error(db_));
    return false;
  }
  // For statements that return no rows.
  Status run() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return Status::Ok();
    return Status::Error(db_error(db_));
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  std::int64_t i64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  std::string_view view(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string_view(reinterpret_cast<const char*>(p),
                                static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string_view();
  }
  double real(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) {
      return std::numeric_limits<double>::quiet_NaN();
    }
    return sqlite3_column_double(stmt_, col);
  }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  StatementCache* cache_ = nullptr;
  std::string sql_;
};

// Statements without values (pragmas, DDL, BEGIN/COMMIT) only; values always go through bind.
Status exec(sqlite3* db, const char* sql);

// Makes one store call all-or-nothing. Alone, it is its own transaction: BEGIN IMMEDIATE
// takes the write lock up front, so a check-then-update cannot interleave with another
// writer. Inside a batch, which already holds the write lock, it issues no SQL: a savepoint
// per call would make SQLite journal every page the call changes, which costs more than the
// call. Every call checks before it writes, and SQLite undoes a failed statement by itself, so
// only a call that fails after a successful write (wrote()) can leave part of itself behind:
// it marks the batch failed, and commit_batch() then rolls the whole batch back.
class Transaction {
 public:
  // `batch_failed`: the open batch's flag, or nullptr when the call stands alone.
  explicit Transaction(sqlite3* db, bool* batch_failed = nullptr)
      : db_(db), batch_failed_(batch_failed) {}
  ~Transaction() {
    if (!open_) return;
    if (batch_failed_ != nullptr) {
      if (wrote_) *batch_failed_ = true;
    } else {
      (void)exec(db_, "ROLLBACK");
    }
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Status begin() {
    Status s = batch_failed_ ? Status::Ok() : exec(db_, "BEGIN IMMEDIATE");
    open_ = s.ok();
    return s;
  }
  // After each statement that changed the store.
  void wrote() { wrote_ = true; }
  Status commit() {
    Status s = batch_failed_ ? Status::Ok() : exec(db_, "COMMIT");
    if (s.ok()) open_ = false;
    return s;
  }

 private:
  sqlite3* db_;
  bool* batch_failed_;
  bool open_ = false;
  bool wrote_ = false;
};


}  // namespace trellis::coordinator
