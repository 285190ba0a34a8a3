// ExperimentStore: opening the file (schema checks and upgrades, journal mode, durability)
// and the batches that group commits. The contract is in experiment_store.h; the rest of the
// store is in store_experiments.cc, store_trials.cc, store_queries.cc, store_lineage.cc and
// store_events.cc.

#include "coordinator/experiment_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "coordinator/metrics_json.h"
#include "coordinator/params_codec.h"
#include "coordinator/sqlite_statement.h"
#include "coordinator/store_filesystem.h"
#include "coordinator/store_rows.h"
#include "coordinator/store_schema.h"
#include "coordinator/wal_checkpointer.h"

namespace trellis::coordinator {

namespace {

// Long enough for a read-only `trellis trials` to wait out a coordinator's write transaction.
constexpr int kBusyTimeoutMs = 5000;

}  // namespace

Status ExperimentStore::Open(const std::string& path, bool read_only,
                             std::unique_ptr<ExperimentStore>* out) {
  StoreOptions options;
  options.read_only = read_only;
  return Open(path, options, out);
}

Status ExperimentStore::Open(const std::string& path, const StoreOptions& options,
                             std::unique_ptr<ExperimentStore>* out) {
  const bool read_only = options.read_only;
  const std::string where = "experiment store " + path;
  StoreFilesystem filesystem;
  if (!options.filesystem.empty()) {
    filesystem = StoreFilesystemNamed(options.filesystem);
  } else if (Status s = DetectStoreFilesystem(path, &filesystem); !s.ok()) {
    return s.With(where);
  }
  if (read_only) {
    // SQLite's own message ("unable to open database file") does not say which file.
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
      return Status::Error(where + ": no such file (run an experiment first, or pass --store)");
    }
  }
  sqlite3* db = nullptr;
  const int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    std::string message = db ? db_error(db) : "out of memory";
    sqlite3_close(db);
    return Status::Error(where + ": cannot open: " + message);
  }
  std::unique_ptr<ExperimentStore> store(new ExperimentStore(db));
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  sqlite3_extended_result_codes(db, 1);

  // The first statement that reads the header is where a non-SQLite file shows up.
  const std::string journal_mode = JournalModeFor(filesystem);
  const std::string first =
      read_only ? "PRAGMA schema_version" : "PRAGMA journal_mode = " + journal_mode;
  Status s = exec(db, first.c_str());
  if (!s.ok()) {
    if ((sqlite3_extended_errcode(db) & 0xff) == SQLITE_NOTADB) {
      return Status::Error(where + ": not a Trellis store (not an SQLite database)");
    }
    return s.With(where);
  }
  store->filesystem_ = filesystem;
  // FULL: a commit returns only once it is on disk (in WAL mode, the WAL is fsynced at every
  // commit), so what the coordinator acknowledges after a commit survives power loss. Group
  // commit makes that one fsync per batch of messages, not one per report.
  s = exec(db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON");
  if (!s.ok()) return s.With(where);
  if (!read_only) {
    Durability durability;
    if (s = store->durability(&durability); !s.ok()) return s.With(where);
    if (durability.journal_mode != journal_mode) {
      return Status::Error(where + ": SQLite runs journal_mode " + durability.journal_mode +
                           " where " + journal_mode + " was asked for (" + filesystem.name +
                           " filesystem)");
    }
  }
  int version = 0;
  s = open_schema(db, read_only, &version);
  if (!s.ok()) return s.With(where);
  if (version == 1) {
    if (s = store->upgrade_from_schema_1(); !s.ok()) return s.With(where + ": upgrading schema 1");
    version = 2;
  }
  if (version == 2) {
    if (s = upgrade_from_schema_2(db); !s.ok()) return s.With(where + ": upgrading schema 2");
  }
  if (!read_only) {
    if (s = store->read_last_report_id(); !s.ok()) return s.With(where);
  }
  if (!read_only && journal_mode == "wal") {
    if (s = WalCheckpointer::Start(path, db, &store->checkpointer_); !s.ok()) return s.With(where);
  }
  *out = std::move(store);
  return Status::Ok();
}

ExperimentStore::ExperimentStore(sqlite3* db)
    : db_(db), statements_(std::make_unique<StatementCache>(db)) {}

ExperimentStore::~ExperimentStore() {
  rollback_batch();
  checkpointer_.reset();  // its thread stops before the connection it hooks closes
  statements_.reset();  // finalized before the connection closes
  sqlite3_close_v2(db_);
}

Status ExperimentStore::durability(Durability* out) {
  const auto pragma = [this](const char* sql, std::string* value) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK)
      return Status::Error(std::string(sql) + ": " + db_error(db_));
    Status s = Status::Ok();
    if (sqlite3_step(st) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(st, 0);
      *value = text ? reinterpret_cast<const char*>(text) : "";
    } else {
      s = Status::Error(std::string(sql) + ": " + db_error(db_));
    }
    sqlite3_finalize(st);
    return s;
  };
  std::string synchronous;
  if (Status s = pragma("PRAGMA journal_mode", &out->journal_mode); !s.ok()) return s;
  if (Status s = pragma("PRAGMA synchronous", &synchronous); !s.ok()) return s;
  out->synchronous = std::atoi(synchronous.c_str());
  out->filesystem = filesystem_;
  return Status::Ok();
}

std::string ExperimentStore::path() const {
  const char* name = sqlite3_db_filename(db_, "main");
  return name ? name : "";
}

// The trials table is rebuilt (SQLite's 12-step recipe: its CHECK constraint gains 'paused'),
// which needs foreign keys off, a pragma SQLite ignores inside a transaction; the rebuild keeps
// every id, and foreign_key_check confirms it before the commit.
Status ExperimentStore::upgrade_from_schema_1() {
  if (Status s = exec(db_, "PRAGMA foreign_keys = OFF"); !s.ok()) return s;
  struct ForeignKeysBackOn {
    sqlite3* db;
    ~ForeignKeysBackOn() { (void)exec(db, "PRAGMA foreign_keys = ON"); }
  } back_on{db_};
  Transaction txn(db_);
  Status s = txn.begin();
  if (!s.ok()) return s;
  const std::string schema = kSchema;
  const auto table = [&](const std::string& name) {
    const auto begin = schema.find("CREATE TABLE " + name + " (");
    // The statement ends at the first ';' after its closing parenthesis (comments hold some).
    return schema.substr(begin, schema.find(';', schema.find("\n)", begin)) - begin);
  };
  std::string trials = table("trials");
  trials.replace(0, std::string("CREATE TABLE trials").size(), "CREATE TABLE trials_v2");
  s = exec(db_, (trials + ";" +
                 "INSERT INTO trials_v2 (id, experiment_id, number, state, params, seed, attempt, "
                 "grp, error, started_at, finished_at, checkpoint_epoch, resumable, failures) "
                 "SELECT id, experiment_id, number, state, params, seed, attempt, grp, error, "
                 "started_at, finished_at, checkpoint_epoch, resumable, failures FROM trials;"
                 "DROP TABLE trials; ALTER TABLE trials_v2 RENAME TO trials;" +
                 table("lineage") + ";" + "ALTER TABLE metrics RENAME TO metrics_v1")
                    .c_str());
  if (!s.ok()) return s;
  if (s = exec(db_, kReportsSchema); !s.ok()) return s;

  // One report per (trial, attempt, epoch); the primary key's order groups them.
  Statement rows, insert;
  if (s = rows.prepare(db_, "SELECT trial_id, attempt, epoch, name, value FROM metrics_v1 "
                            "ORDER BY trial_id, attempt, epoch");
      !s.ok())
    return s;
  if (s = insert.prepare(db_, "INSERT INTO reports (trial_id, attempt, epoch, metrics) "
                              "VALUES (?1, ?2, ?3, ?4)");
      !s.ok())
    return s;
  std::int64_t trial = -1, attempt = -1, epoch = -1;
  MetricMap metrics;
  const auto flush = [&]() -> Status {
    if (trial < 0) return Status::Ok();
    insert.reset();
    insert.bind(1, trial);
    insert.bind(2, attempt);
    insert.bind(3, epoch);
    insert.bind(4, encode_metrics(metrics));
    metrics.clear();
    return insert.run();
  };
  while (rows.next_row(&s)) {
    if (rows.i64(0) != trial || rows.i64(1) != attempt || rows.i64(2) != epoch) {
      if (Status f = flush(); !f.ok()) return f;
      trial = rows.i64(0);
      attempt = rows.i64(1);
      epoch = rows.i64(2);
    }
    metrics[rows.text(3)] = rows.real(4);
  }
  if (!s.ok()) return s;
  if (s = flush(); !s.ok()) return s;
  if (s = exec(db_, "DROP TABLE metrics_v1"); !s.ok()) return s;

  // Collected first: the trials are not updated while the scan over them is still open.
  std::map<std::int64_t, Lineage> ended;
  if (s = read_lineage((std::string("t.state IN ") + kTerminalStates + " AND ?1 = ?1").c_str(), 0,
                       false,
                       [&](std::int64_t id, Lineage&& lineage) {
                         ended.emplace(id, std::move(lineage));
                         return Status::Ok();
                       });
      !s.ok())
    return s;
  Statement update;
  if (s = update.prepare(db_, "UPDATE trials SET last_metrics = ?1, epochs_run = ?2 WHERE id = ?3");
      !s.ok())
    return s;
  for (const auto& [id, lineage] : ended) {
    update.reset();
    update.bind(1, encode_metrics(lineage.fold.last()));
    update.bind(2, static_cast<std::int64_t>(lineage.fold.epochs_run()));
    update.bind(3, id);
    if (s = update.run(); !s.ok()) return s;
  }
  if (s = put_meta(db_, "schema_version", "2"); !s.ok()) return s;
  Statement check;
  if (s = check.prepare(db_, "PRAGMA foreign_key_check"); !s.ok()) return s;
  if (check.next_row(&s)) return Status::Error("foreign key check failed on " + check.text(0));
  if (!s.ok()) return s;
  return txn.commit();
}



Status ExperimentStore::begin_batch() {
  if (batch_open_) return Status::Error("begin_batch: a batch is already open");
  if (Status s = exec(db_, "BEGIN IMMEDIATE"); !s.ok()) return s.With("begin_batch");
  batch_open_ = true;
  batch_failed_ = false;
  return Status::Ok();
}

Status ExperimentStore::commit_batch() {
  if (!batch_open_) return Status::Error("commit_batch: no batch is open");
  batch_open_ = false;
  // An I/O error or a full disk inside the batch makes SQLite roll the transaction back by
  // itself; what the calls after that wrote was not part of the batch.
  if (sqlite3_get_autocommit(db_)) {
    live_folds_.clear();
    return Status::Error("commit_batch: SQLite rolled the batch back after an error");
  }
  if (batch_failed_) {
    (void)exec(db_, "ROLLBACK");
    live_folds_.clear();
    return Status::Error("commit_batch: a call failed after writing part of its changes, so "
                         "the batch was rolled back");
  }
  if (Status s = exec(db_, "COMMIT"); !s.ok()) {
    (void)exec(db_, "ROLLBACK");
    live_folds_.clear();
    return s.With("commit_batch");
  }
  if (checkpointer_) checkpointer_->after_commit();
  return Status::Ok();
}

void ExperimentStore::rollback_batch() {
  if (!batch_open_) return;
  batch_open_ = false;
  live_folds_.clear();  // they may hold rolled-back reports; the store has the truth
  if (!sqlite3_get_autocommit(db_)) (void)exec(db_, "ROLLBACK");
  (void)read_last_report_id();
}

Status ExperimentStore::read_last_report_id() {
  Statement st;
  Status s = st.prepare(db_, statements_.get(), "SELECT COALESCE(MAX(id), 0) FROM reports");
  if (!s.ok()) return s;
  if (!st.next_row(&s)) return s.ok() ? Status::Error("no row from MAX(id)") : s;
  last_report_id_ = st.i64(0);
  return Status::Ok();
}

}  // namespace trellis::coordinator
