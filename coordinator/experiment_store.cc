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
#include "coordinator/store_schema.h"
#include "coordinator/store_filesystem.h"
#include "coordinator/wal_checkpointer.h"

namespace trellis::coordinator {

namespace {

// Long enough for a read-only `trellis trials` to wait out a coordinator's write transaction.
constexpr int kBusyTimeoutMs = 5000;



constexpr const char* kExperimentColumns =
    "id, name, spec_yaml, spec_hash, metric, mode, seed, state, created_at";

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

constexpr const char* kTrialColumns =
    "id, experiment_id, number, state, params, seed, attempt, grp, error, started_at, "
    "finished_at, checkpoint_epoch, failures, target_epoch, warm_start, "
    "(SELECT provenance FROM attempts a WHERE a.trial_id = trials.id AND a.attempt = "
    "trials.attempt)";

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

// A trial's series is its lineage: the latest attempt's epochs, and before the epoch that
// attempt resumed from, the epochs of the attempts whose checkpoints it continues (for each
// epoch and metric, the newest attempt that reported it). A fresh restart (resume_epoch 0)
// hides every older attempt. Callers append a condition on t; rows come grouped by trial.
constexpr const char* kLineageRows =
    "SELECT r.trial_id, r.epoch, r.attempt, r.metrics FROM trials t "
    "JOIN attempts a ON a.trial_id = t.id AND a.attempt = t.attempt "
    "JOIN reports r ON r.trial_id = t.id "
    "AND (r.attempt = t.attempt OR (r.attempt < t.attempt AND r.epoch <= a.resume_epoch)) "
    "WHERE ";
constexpr const char* kLineageOrder = " ORDER BY t.experiment_id, t.number";

constexpr const char* kTerminalStates = "('completed', 'pruned', 'failed')";

bool is_terminal(TrialState state) {
  return state == TrialState::kCompleted || state == TrialState::kPruned ||
         state == TrialState::kFailed;
}

// An attempt ends completed, pruned or failed, or paused where the scheduler decides later.
bool ends_attempt(TrialState state) { return state == TrialState::kPaused || is_terminal(state); }

// Current state and attempt of one trial, for the transition checks.
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

}  // namespace


const char* to_string(TrialState state) {
  switch (state) {
    case TrialState::kPending: return "pending";
    case TrialState::kRunning: return "running";
    case TrialState::kPaused: return "paused";
    case TrialState::kCompleted: return "completed";
    case TrialState::kPruned: return "pruned";
    case TrialState::kFailed: return "failed";
  }
  return "unknown";
}

bool parse_trial_state(const std::string& text, TrialState* out) {
  static constexpr TrialState kAll[] = {TrialState::kPending, TrialState::kRunning,
                                        TrialState::kPaused,
                                        TrialState::kCompleted, TrialState::kPruned,
                                        TrialState::kFailed};
  for (TrialState state : kAll) {
    if (text == to_string(state)) {
      *out = state;
      return true;
    }
  }
  return false;
}

struct ExperimentStore::Lineage {
  MetricSeries series;  // filled only when asked for
  MetricFold fold;
};

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

Status ExperimentStore::find_experiment(const std::string& name,
                                        std::optional<ExperimentRecord>* out) {
  out->reset();
  Statement st;
  Status s = st.prepare(
      db_, (std::string("SELECT ") + kExperimentColumns + " FROM experiments WHERE name = ?1")
               .c_str());
  if (!s.ok()) return s.With("find_experiment");
  st.bind(1, name);
  if (st.next_row(&s)) *out = read_experiment(st);
  return s.With("find_experiment '" + name + "'");
}

Status ExperimentStore::latest_experiment(std::optional<ExperimentRecord>* out) {
  out->reset();
  Statement st;
  // ids only grow, so the highest id is the latest even when two share a timestamp.
  Status s = st.prepare(
      db_, (std::string("SELECT ") + kExperimentColumns +
            " FROM experiments ORDER BY id DESC LIMIT 1")
               .c_str());
  if (!s.ok()) return s.With("latest_experiment");
  if (st.next_row(&s)) *out = read_experiment(st);
  return s.With("latest_experiment");
}

Status ExperimentStore::list_experiments(std::vector<ExperimentRecord>* out) {
  out->clear();
  Statement st;
  Status s = st.prepare(
      db_, (std::string("SELECT ") + kExperimentColumns + " FROM experiments ORDER BY id").c_str());
  if (!s.ok()) return s.With("list_experiments");
  while (st.next_row(&s)) out->push_back(read_experiment(st));
  return s.With("list_experiments");
}

Status ExperimentStore::create_experiment(ExperimentRecord* record) {
  const std::string where = "create_experiment '" + record->name + "'";
  if (record->name.empty()) return Status::Error("create_experiment: empty name");
  if (record->mode != "max" && record->mode != "min") {
    return Status::Error(where + ": mode must be max or min, not '" + record->mode + "'");
  }
  Statement st;
  Status s = st.prepare(db_,
                        "INSERT INTO experiments (name, spec_yaml, spec_hash, metric, mode, seed, "
                        "state, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!s.ok()) return s.With(where);
  const std::string created_at = now_iso8601();
  st.bind(1, record->name);
  st.bind(2, record->spec_yaml);
  st.bind(3, record->spec_hash);
  st.bind(4, record->metric);
  st.bind(5, record->mode);
  st.bind(6, to_db(record->seed));
  st.bind(7, record->state);
  st.bind(8, created_at);
  s = st.run();
  if (!s.ok()) {
    if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_UNIQUE) {
      return Status::Error(where + ": an experiment with this name already exists in " + path());
    }
    return s.With(where);
  }
  record->id = sqlite3_last_insert_rowid(db_);
  record->created_at = created_at;
  return Status::Ok();
}

Status ExperimentStore::set_experiment_state(std::int64_t experiment_id,
                                             const std::string& state) {
  const std::string where = "set_experiment_state " + std::to_string(experiment_id);
  Statement st;
  Status s = st.prepare(db_, "UPDATE experiments SET state = ?1 WHERE id = ?2");
  if (!s.ok()) return s.With(where);
  st.bind(1, state);
  st.bind(2, experiment_id);
  if (s = st.run(); !s.ok()) return s.With(where);
  if (sqlite3_changes(db_) == 0) return Status::Error(where + ": no such experiment");
  return Status::Ok();
}

Status ExperimentStore::add_trial(TrialRecord* record) {
  const auto where = [&] {
    return "add_trial " + std::to_string(record->number) + " of experiment " +
           std::to_string(record->experiment_id);
  };
  std::string params;
  Status s = params_to_json(record->params, &params);
  if (!s.ok()) return s.With(where());
  Statement st;
  s = st.prepare(db_, statements_.get(),
                 "INSERT INTO trials (experiment_id, number, state, params, seed, target_epoch) "
                 "VALUES (?1, ?2, 'pending', ?3, ?4, ?5)");
  if (!s.ok()) return s.With(where());
  st.bind(1, record->experiment_id);
  st.bind(2, static_cast<std::int64_t>(record->number));
  st.bind(3, params);
  st.bind(4, to_db(record->seed));
  st.bind(5, static_cast<std::int64_t>(record->target_epoch));
  s = st.run();
  if (!s.ok()) {
    const int code = sqlite3_extended_errcode(db_);
    if (code == SQLITE_CONSTRAINT_UNIQUE) {
      return Status::Error(where() + ": trial number already exists");
    }
    if (code == SQLITE_CONSTRAINT_FOREIGNKEY) {
      return Status::Error(where() + ": no such experiment");
    }
    return s.With(where());
  }
  record->id = sqlite3_last_insert_rowid(db_);
  record->state = TrialState::kPending;
  record->attempt = 0;
  record->group.clear();
  record->error.clear();
  record->started_at.clear();
  record->finished_at.clear();
  record->final_metrics.clear();
  return Status::Ok();
}

Status ExperimentStore::list_trials(std::int64_t experiment_id, std::vector<TrialRecord>* out) {
  const std::string where = "list_trials of experiment " + std::to_string(experiment_id);
  out->clear();
  Statement st;
  Status s = st.prepare(db_, (std::string("SELECT ") + kTrialColumns +
                              " FROM trials WHERE experiment_id = ?1 ORDER BY number")
                                 .c_str());
  if (!s.ok()) return s.With(where);
  st.bind(1, experiment_id);
  std::unordered_map<std::int64_t, std::size_t> index_of;
  while (st.next_row(&s)) {
    TrialRecord r;
    Status rs = read_trial(st, &r);
    if (!rs.ok()) return rs.With(where);
    index_of[r.id] = out->size();
    out->push_back(std::move(r));
  }
  if (!s.ok()) return s.With(where);

  Statement finals;
  s = finals.prepare(db_,
                     "SELECT f.trial_id, f.name, f.value FROM finals f "
                     "JOIN trials t ON t.id = f.trial_id WHERE t.experiment_id = ?1");
  if (!s.ok()) return s.With(where);
  finals.bind(1, experiment_id);
  while (finals.next_row(&s)) {
    auto it = index_of.find(finals.i64(0));
    if (it != index_of.end()) (*out)[it->second].final_metrics[finals.text(1)] = finals.real(2);
  }
  return s.With(where);
}

Status ExperimentStore::trial_summaries(std::int64_t experiment_id,
                                        std::vector<TrialSummary>* out) {
  const std::string where = "trial_summaries of experiment " + std::to_string(experiment_id);
  out->clear();
  Statement st;
  Status s = st.prepare(db_,
                        "SELECT id, number, state, params, last_metrics, epochs_run, attempt, "
                        "error FROM trials WHERE experiment_id = ?1 ORDER BY number");
  if (!s.ok()) return s.With(where);
  st.bind(1, experiment_id);
  std::unordered_map<std::int64_t, std::size_t> index_of;
  bool any_live = false;  // not ended, and started at least once: its reports say the rest
  while (st.next_row(&s)) {
    TrialSummary r;
    r.id = st.i64(0);
    r.number = static_cast<std::int32_t>(st.i64(1));
    const std::string state = st.text(2);
    if (!parse_trial_state(state, &r.state)) {
      return Status::Error(where + ": trial " + std::to_string(r.id) + " has unknown state '" +
                           state + "'");
    }
    Status rs = params_from_json(st.text(3), &r.params);
    if (!rs.ok()) return rs.With(where + ": trial " + std::to_string(r.id));
    if (is_terminal(r.state)) {
      if (rs = decode_metrics(st.view(4), &r.last_metrics); !rs.ok()) {
        return rs.With(where + ": trial " + std::to_string(r.id));
      }
      r.epochs_run = static_cast<std::int32_t>(st.i64(5));
    } else if (st.i64(6) > 0) {
      any_live = true;
    }
    r.error = st.text(7);
    index_of[r.id] = out->size();
    out->push_back(std::move(r));
  }
  if (!s.ok()) return s.With(where);

  Statement finals;
  s = finals.prepare(db_,
                     "SELECT f.trial_id, f.name, f.value FROM finals f "
                     "JOIN trials t ON t.id = f.trial_id WHERE t.experiment_id = ?1");
  if (!s.ok()) return s.With(where);
  finals.bind(1, experiment_id);
  while (finals.next_row(&s)) {
    auto it = index_of.find(finals.i64(0));
    if (it != index_of.end()) (*out)[it->second].final_metrics[finals.text(1)] = finals.real(2);
  }
  if (!s.ok()) return s.With(where);

  if (!any_live) return Status::Ok();
  s = read_lineage((std::string("t.experiment_id = ?1 AND t.state NOT IN ") + kTerminalStates)
                       .c_str(),
                   experiment_id, false, [&](std::int64_t id, Lineage&& lineage) {
                     if (auto it = index_of.find(id); it != index_of.end()) {
                       (*out)[it->second].last_metrics = lineage.fold.last();
                       (*out)[it->second].epochs_run = lineage.fold.epochs_run();
                     }
                     return Status::Ok();
                   });
  return s.With(where);
}

Status ExperimentStore::get_trial(std::int64_t trial_id, TrialRecord* out) {
  const std::string where = "get_trial " + std::to_string(trial_id);
  Statement st;
  Status s = st.prepare(
      db_, (std::string("SELECT ") + kTrialColumns + " FROM trials WHERE id = ?1").c_str());
  if (!s.ok()) return s.With(where);
  st.bind(1, trial_id);
  if (!st.next_row(&s)) return s.ok() ? Status::Error(where + ": no such trial") : s.With(where);
  if (s = read_trial(st, out); !s.ok()) return s.With(where);

  Statement finals;
  s = finals.prepare(db_, "SELECT name, value FROM finals WHERE trial_id = ?1");
  if (!s.ok()) return s.With(where);
  finals.bind(1, trial_id);
  while (finals.next_row(&s)) out->final_metrics[finals.text(0)] = finals.real(1);
  return s.With(where);
}

Status ExperimentStore::attempt_owner(std::int64_t trial_id, std::int32_t attempt,
                                      std::string* group, std::string* key) {
  const std::string where =
      "attempt_owner " + std::to_string(trial_id) + "/" + std::to_string(attempt);
  Statement st;
  Status s = st.prepare(db_, "SELECT grp, provenance FROM attempts WHERE trial_id = ?1 AND "
                             "attempt = ?2");
  if (!s.ok()) return s.With(where);
  st.bind(1, trial_id);
  st.bind(2, static_cast<std::int64_t>(attempt));
  if (!st.next_row(&s)) return s.ok() ? Status::Error(where + ": no such attempt") : s.With(where);
  *group = st.text(0);
  const nlohmann::json provenance = nlohmann::json::parse(st.text(1), nullptr, false);
  key->clear();
  if (provenance.is_object() && provenance.contains("key") && provenance["key"].is_string())
    *key = provenance["key"].get<std::string>();
  return Status::Ok();
}

Status ExperimentStore::start_trial(std::int64_t trial_id, const std::string& group,
                                    std::int32_t* attempt) {
  StartedAttempt started;
  Status s = start_trial(trial_id, group, "", &started);
  if (s.ok()) *attempt = started.attempt;
  return s;
}

Status ExperimentStore::start_trial(std::int64_t trial_id, const std::string& group,
                                    const std::string& provenance, StartedAttempt* started) {
  const auto where = [&] { return "start_trial " + std::to_string(trial_id); };
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where());
  TrialState state;
  std::int32_t current = 0, resume_epoch = 0;
  bool resume = false;
  {
    Statement st;
    s = st.prepare(db_, statements_.get(),
                   "SELECT state, attempt, checkpoint_epoch, resumable, warm_start FROM trials "
                   "WHERE id = ?1");
    if (!s.ok()) return s.With(where());
    st.bind(1, trial_id);
    if (!st.next_row(&s)) return (s.ok() ? Status::Error("no such trial") : s).With(where());
    const std::string text = st.text(0);
    if (!parse_trial_state(text, &state)) {
      return Status::Error(where() + ": unknown state '" + text + "'");
    }
    current = static_cast<std::int32_t>(st.i64(1));
    resume_epoch = static_cast<std::int32_t>(st.i64(2));
    resume = st.i64(3) != 0;
    started->warm_start = st.text(4);
  }
  if (state != TrialState::kPending) {
    return Status::Error(where() + ": trial is " + to_string(state) + ", not pending");
  }
  const std::string now = now_iso8601();
  {
    // No RETURNING: it would make SQLite open a statement journal for this one-row update.
    Statement st;
    s = st.prepare(db_, statements_.get(),
                   "UPDATE trials SET state = 'running', attempt = ?1, grp = ?2, started_at = ?3, "
                   "finished_at = '' WHERE id = ?4");
    if (!s.ok()) return s.With(where());
    st.bind(1, static_cast<std::int64_t>(current + 1));
    st.bind(2, group);
    st.bind(3, now);
    st.bind(4, trial_id);
    if (s = st.run(); !s.ok()) return s.With(where());
    txn.wrote();
  }

  Statement insert;
  s = insert.prepare(db_, statements_.get(),
                     "INSERT INTO attempts (trial_id, attempt, resume_epoch, grp, provenance, "
                     "started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  if (!s.ok()) return s.With(where());
  insert.bind(1, trial_id);
  insert.bind(2, static_cast<std::int64_t>(current + 1));
  insert.bind(3, static_cast<std::int64_t>(resume_epoch));
  insert.bind(4, group);
  insert.bind(5, provenance);
  insert.bind(6, now);
  if (s = insert.run(); !s.ok()) return s.With(where());
  txn.wrote();
  if (s = txn.commit(); !s.ok()) return s.With(where());
  if (resume_epoch == 0) {
    live_folds_[trial_id] = LiveFold{current + 1, {}};
  } else {
    live_folds_.erase(trial_id);  // its lineage reaches into older attempts: fold from the store
  }
  started->attempt = current + 1;
  started->resume_epoch = resume_epoch;
  started->resume = resume;
  return Status::Ok();
}

Status ExperimentStore::append_report(std::int64_t trial_id, std::int32_t attempt,
                                      std::int32_t epoch, const MetricMap& metrics,
                                      bool checkpointed) {
  // Built only on failure: this runs for every report.
  const auto where = [&] {
    return "append_report trial " + std::to_string(trial_id) + " attempt " +
           std::to_string(attempt) + " epoch " + std::to_string(epoch);
  };
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where());
  TrialState state;
  std::int32_t current = 0;
  if (s = trial_state(db_, statements_.get(), trial_id, &state, &current); !s.ok()) {
    return s.With(where());
  }
  // A late report of an older attempt is kept (metric_series hides it); one of an attempt that
  // was never started is a protocol error.
  if (attempt < 1 || attempt > current) {
    return Status::Error(where() + ": attempt was never started (current attempt " +
                         std::to_string(current) + ")");
  }
  Statement st;
  s = st.prepare(db_, statements_.get(),
                 "INSERT OR IGNORE INTO reports (trial_id, attempt, epoch, metrics) "
                 "VALUES (?1, ?2, ?3, ?4)");
  if (!s.ok()) return s.With(where());
  st.bind(1, trial_id);
  st.bind(2, static_cast<std::int64_t>(attempt));
  st.bind(3, static_cast<std::int64_t>(epoch));
  st.bind(4, encode_metrics(metrics));
  if (s = st.run(); !s.ok()) return s.With(where());
  txn.wrote();
  const bool inserted = sqlite3_changes(db_) > 0;
  if (inserted) last_report_id_ = sqlite3_last_insert_rowid(db_);
  // Only the current attempt's checkpoint is the one its successor resumes from, and only a
  // new, later epoch moves it: a duplicate or an older report resent after a lost Ack names a
  // checkpoint file the worker has already deleted.
  if (inserted && checkpointed && attempt == current) {
    Statement mark;
    s = mark.prepare(db_, statements_.get(),
                     // From here on the trial's own checkpoint is newer than any warm start.
                     "UPDATE trials SET checkpoint_epoch = ?1, resumable = 1, warm_start = '' "
                     "WHERE id = ?2 AND checkpoint_epoch < ?1");
    if (!s.ok()) return s.With(where());
    mark.bind(1, static_cast<std::int64_t>(epoch));
    mark.bind(2, trial_id);
    if (s = mark.run(); !s.ok()) return s.With(where());
  }
  // Resent after the trial ended (its Done overtook it through a reconnect).
  if (inserted && is_terminal(state)) {
    if (s = refresh_summary(trial_id, current); !s.ok()) return s.With(where());
  }
  if (s = txn.commit(); !s.ok()) return s.With(where());
  if (inserted) {
    if (auto live = live_folds_.find(trial_id);
        live != live_folds_.end() && live->second.attempt == attempt) {
      live->second.fold.add(epoch, attempt, metrics);
    }
  }
  return Status::Ok();
}

Status ExperimentStore::finish_trial(std::int64_t trial_id, std::int32_t attempt,
                                     TrialState state, const std::string& error,
                                     const MetricMap& final_metrics) {
  const auto where = [&] {
    return "finish_trial " + std::to_string(trial_id) + " attempt " + std::to_string(attempt) +
           " as " + to_string(state);
  };
  if (!ends_attempt(state)) {
    return Status::Error(where() + ": an attempt can only end paused, completed, pruned or failed");
  }
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where());
  TrialState current_state;
  std::int32_t current = 0;
  if (s = trial_state(db_, statements_.get(), trial_id, &current_state, &current); !s.ok()) {
    return s.With(where());
  }
  if (current_state != TrialState::kRunning) {
    return Status::Error(where() + ": trial is " + to_string(current_state) + ", not running");
  }
  if (current != attempt) {
    return Status::Error(where() + ": stale attempt, the trial is on attempt " +
                         std::to_string(current));
  }
  MetricFold fold;
  if (s = fold_of(trial_id, attempt, &fold); !s.ok()) return s.With(where());
  Statement update;
  s = update.prepare(db_, statements_.get(),
                     "UPDATE trials SET state = ?1, error = ?2, finished_at = ?3, "
                     "last_metrics = ?4, epochs_run = ?5 WHERE id = ?6");
  if (!s.ok()) return s.With(where());
  update.bind(1, std::string(to_string(state)));
  update.bind(2, error);
  update.bind(3, now_iso8601());
  update.bind(4, encode_metrics(fold.last()));
  update.bind(5, static_cast<std::int64_t>(fold.epochs_run()));
  update.bind(6, trial_id);
  if (s = update.run(); !s.ok()) return s.With(where());
  txn.wrote();

  Statement insert;
  s = insert.prepare(db_, statements_.get(),
                     "INSERT OR REPLACE INTO finals (trial_id, name, value) VALUES (?1, ?2, ?3)");
  if (!s.ok()) return s.With(where());
  for (const auto& [name, value] : final_metrics) {
    insert.reset();
    insert.bind(1, trial_id);
    insert.bind(2, name);
    insert.bind(3, value);
    if (s = insert.run(); !s.ok()) return s.With(where() + " final " + name);
  }
  if (s = txn.commit(); !s.ok()) return s.With(where());
  live_folds_.erase(trial_id);
  return Status::Ok();
}

Status ExperimentStore::requeue_trial(std::int64_t trial_id, const std::string& reason,
                                      Requeue why, std::int32_t max_failures, bool* failed) {
  const std::string where = "requeue_trial " + std::to_string(trial_id);
  if (failed != nullptr) *failed = false;
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where);
  TrialState state;
  std::int32_t current = 0;
  if (s = trial_state(db_, statements_.get(), trial_id, &state, &current); !s.ok()) {
    return s.With(where);
  }
  if (state != TrialState::kRunning) {
    return Status::Error(where + ": trial is " + to_string(state) + ", not running");
  }
  bool gave_up = false;
  {
    Statement st;
    switch (why) {
      case Requeue::kLost:
        // The failure counter decides between another attempt and giving up.
        s = st.prepare(db_,
                       "UPDATE trials SET failures = failures + 1, error = ?1, "
                       "state = CASE WHEN failures + 1 >= ?3 THEN 'failed' ELSE 'pending' END, "
                       "finished_at = CASE WHEN failures + 1 >= ?3 THEN ?4 ELSE '' END "
                       "WHERE id = ?2 RETURNING state");
        break;
      case Requeue::kPreemptedWithCheckpoint:
        s = st.prepare(db_, "UPDATE trials SET state = 'pending', error = ?1, resumable = 1 "
                            "WHERE id = ?2 RETURNING state");
        break;
      case Requeue::kNotTheTrialsFault:
        s = st.prepare(db_, "UPDATE trials SET state = 'pending', error = ?1 WHERE id = ?2 "
                            "RETURNING state");
        break;
    }
    if (!s.ok()) return s.With(where);
    st.bind(1, reason);
    st.bind(2, trial_id);
    if (why == Requeue::kLost) {
      st.bind(3, static_cast<std::int64_t>(std::max(1, max_failures)));
      st.bind(4, now_iso8601());
    }
    if (!st.next_row(&s)) return (s.ok() ? Status::Error("trial vanished") : s).With(where);
    txn.wrote();
    gave_up = st.text(0) == "failed";
  }
  if (gave_up) {
    if (s = refresh_summary(trial_id, current); !s.ok()) return s.With(where);
  }
  if (s = txn.commit(); !s.ok()) return s.With(where);
  live_folds_.erase(trial_id);
  if (failed != nullptr) *failed = gave_up;
  return Status::Ok();
}

Status ExperimentStore::continue_trial(std::int64_t trial_id, std::int32_t target_epoch) {
  const std::string where = "continue_trial " + std::to_string(trial_id);
  Statement st;
  Status s = st.prepare(db_, statements_.get(),
                        "UPDATE trials SET state = 'pending', target_epoch = ?1, error = '' "
                        "WHERE id = ?2 AND state = 'paused'");
  if (!s.ok()) return s.With(where);
  st.bind(1, static_cast<std::int64_t>(target_epoch));
  st.bind(2, trial_id);
  if (s = st.run(); !s.ok()) return s.With(where);
  if (sqlite3_changes(db_) == 0) return Status::Error(where + ": trial is not paused");
  return Status::Ok();
}

Status ExperimentStore::exploit_trial(const LineageRecord& exploit, std::int32_t target_epoch,
                                      const std::string& warm_start) {
  const std::string where = "exploit_trial " + std::to_string(exploit.trial_id);
  std::string before, after;
  Status s = params_to_json(exploit.params_before, &before);
  if (s.ok()) s = params_to_json(exploit.params_after, &after);
  if (!s.ok()) return s.With(where);
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  if (s = txn.begin(); !s.ok()) return s.With(where);
  Statement update;
  s = update.prepare(db_, statements_.get(),
                     "UPDATE trials SET state = 'pending', target_epoch = ?1, error = '', "
                     "params = ?2, checkpoint_epoch = ?3, resumable = 1, warm_start = ?4 "
                     "WHERE id = ?5 AND state = 'paused'");
  if (!s.ok()) return s.With(where);
  update.bind(1, static_cast<std::int64_t>(target_epoch));
  update.bind(2, after);
  update.bind(3, static_cast<std::int64_t>(exploit.donor_epoch));
  update.bind(4, warm_start);
  update.bind(5, exploit.trial_id);
  if (s = update.run(); !s.ok()) return s.With(where);
  if (sqlite3_changes(db_) == 0) return Status::Error(where + ": trial is not paused");
  txn.wrote();
  Statement insert;
  s = insert.prepare(db_, statements_.get(),
                     "INSERT OR REPLACE INTO lineage (trial_id, epoch, donor_id, donor_epoch, "
                     "params_before, params_after, reason, created_at) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!s.ok()) return s.With(where);
  insert.bind(1, exploit.trial_id);
  insert.bind(2, static_cast<std::int64_t>(exploit.epoch));
  insert.bind(3, exploit.donor_id);
  insert.bind(4, static_cast<std::int64_t>(exploit.donor_epoch));
  insert.bind(5, before);
  insert.bind(6, after);
  insert.bind(7, exploit.reason);
  insert.bind(8, now_iso8601());
  if (s = insert.run(); !s.ok()) return s.With(where);
  return txn.commit().With(where);
}

Status ExperimentStore::end_paused_trial(std::int64_t trial_id, TrialState state,
                                         const std::string& reason) {
  const std::string where = "end_paused_trial " + std::to_string(trial_id);
  if (!is_terminal(state))
    return Status::Error(where + ": a paused trial ends completed, pruned or failed");
  Transaction txn(db_, batch_open_ ? &batch_failed_ : nullptr);
  Status s = txn.begin();
  if (!s.ok()) return s.With(where);
  TrialState current_state;
  std::int32_t attempt = 0;
  if (s = trial_state(db_, statements_.get(), trial_id, &current_state, &attempt); !s.ok())
    return s.With(where);
  if (current_state != TrialState::kPaused) return Status::Error(where + ": trial is not paused");
  Statement st;
  s = st.prepare(db_, statements_.get(),
                 "UPDATE trials SET state = ?1, error = ?2, finished_at = ?3 WHERE id = ?4");
  if (!s.ok()) return s.With(where);
  st.bind(1, std::string(to_string(state)));
  st.bind(2, reason);
  st.bind(3, now_iso8601());
  st.bind(4, trial_id);
  if (s = st.run(); !s.ok()) return s.With(where);
  txn.wrote();
  // Ended: listings read its summary instead of its reports.
  if (s = refresh_summary(trial_id, attempt); !s.ok()) return s.With(where);
  if (s = txn.commit(); !s.ok()) return s.With(where);
  live_folds_.erase(trial_id);
  return Status::Ok();
}

Status ExperimentStore::list_lineage(std::int64_t experiment_id, std::vector<LineageRecord>* out) {
  const std::string where = "list_lineage of experiment " + std::to_string(experiment_id);
  out->clear();
  Statement st;
  Status s = st.prepare(db_,
                        "SELECT l.trial_id, l.epoch, l.donor_id, l.donor_epoch, l.params_before, "
                        "l.params_after, l.reason, l.created_at FROM lineage l "
                        "JOIN trials t ON t.id = l.trial_id WHERE t.experiment_id = ?1 "
                        "ORDER BY l.trial_id, l.epoch");
  if (!s.ok()) return s.With(where);
  st.bind(1, experiment_id);
  while (st.next_row(&s)) {
    LineageRecord r;
    r.trial_id = st.i64(0);
    r.epoch = static_cast<std::int32_t>(st.i64(1));
    r.donor_id = st.i64(2);
    r.donor_epoch = static_cast<std::int32_t>(st.i64(3));
    if (Status ps = params_from_json(st.text(4), &r.params_before); !ps.ok()) return ps.With(where);
    if (Status ps = params_from_json(st.text(5), &r.params_after); !ps.ok()) return ps.With(where);
    r.reason = st.text(6);
    r.created_at = st.text(7);
    out->push_back(std::move(r));
  }
  return s.With(where);
}

Status ExperimentStore::fold_of(std::int64_t trial_id, std::int32_t attempt, MetricFold* out) {
  if (auto live = live_folds_.find(trial_id);
      live != live_folds_.end() && live->second.attempt == attempt) {
    *out = live->second.fold;
    return Status::Ok();
  }
  *out = MetricFold();
  return read_lineage("t.id = ?1", trial_id, false, [&](std::int64_t, Lineage&& lineage) {
    *out = std::move(lineage.fold);
    return Status::Ok();
  });
}

Status ExperimentStore::refresh_summary(std::int64_t trial_id, std::int32_t attempt) {
  MetricFold fold;
  Status s = fold_of(trial_id, attempt, &fold);
  if (!s.ok()) return s;
  Statement update;
  s = update.prepare(db_, statements_.get(),
                     "UPDATE trials SET last_metrics = ?1, epochs_run = ?2 WHERE id = ?3");
  if (!s.ok()) return s;
  update.bind(1, encode_metrics(fold.last()));
  update.bind(2, static_cast<std::int64_t>(fold.epochs_run()));
  update.bind(3, trial_id);
  return update.run();
}

Status ExperimentStore::read_lineage(const char* filter, std::int64_t key, bool series,
                                     const std::function<Status(std::int64_t, Lineage&&)>& visit) {
  Statement st;
  Status s = st.prepare(db_, statements_.get(),
                        std::string(kLineageRows) + filter + kLineageOrder);
  if (!s.ok()) return s;
  st.bind(1, key);
  struct Row {
    std::int32_t epoch;
    std::int32_t attempt;
    MetricMap metrics;
  };
  // Only the trial being read is held: rows arrive grouped by trial (the order is by number),
  // so a trial is complete when the next one starts.
  std::vector<Row> rows;
  std::int64_t trial = -1;
  Lineage current;
  // The series takes, per epoch, each metric from the newest attempt that reported it.
  const auto finish_trial = [&]() -> Status {
    if (trial < 0) return Status::Ok();
    if (series) {
      std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
        return a.epoch != b.epoch ? a.epoch < b.epoch : a.attempt < b.attempt;
      });
      MetricMap merged;
      for (std::size_t i = 0; i < rows.size();) {
        const std::int32_t epoch = rows[i].epoch;
        merged.clear();
        for (; i < rows.size() && rows[i].epoch == epoch; ++i) {
          for (auto& [name, value] : rows[i].metrics) merged[name] = value;
        }
        for (const auto& [name, value] : merged) current.series[name].emplace_back(epoch, value);
      }
      rows.clear();
    }
    Status v = visit(trial, std::move(current));
    current = Lineage();
    return v;
  };
  while (st.next_row(&s)) {
    const std::int64_t id = st.i64(0);
    if (id != trial) {
      if (Status v = finish_trial(); !v.ok()) return v;
      trial = id;
    }
    Row row{static_cast<std::int32_t>(st.i64(1)), static_cast<std::int32_t>(st.i64(2)), {}};
    if (Status d = decode_metrics(st.view(3), &row.metrics); !d.ok()) {
      return d.With("trial " + std::to_string(id) + " epoch " + std::to_string(row.epoch));
    }
    current.fold.add(row.epoch, row.attempt, row.metrics);
    if (series) rows.push_back(std::move(row));
  }
  if (!s.ok()) return s;
  return finish_trial();
}

Status ExperimentStore::metric_series(std::int64_t trial_id, MetricSeries* out) {
  const std::string where = "metric_series of trial " + std::to_string(trial_id);
  out->clear();
  Status s = read_lineage("t.id = ?1", trial_id, true, [&](std::int64_t, Lineage&& lineage) {
    *out = std::move(lineage.series);
    return Status::Ok();
  });
  return s.With(where);
}

Status ExperimentStore::for_each_series(
    std::int64_t experiment_id,
    const std::function<Status(std::int64_t trial_id, MetricSeries&& series)>& visit) {
  const std::string where = "metric series of experiment " + std::to_string(experiment_id);
  bool visitor_failed = false;
  Status s = read_lineage("t.experiment_id = ?1", experiment_id, true,
                          [&](std::int64_t id, Lineage&& lineage) {
                            // Reports without metrics leave no series: not a trial to visit.
                            if (lineage.series.empty()) return Status::Ok();
                            Status v = visit(id, std::move(lineage.series));
                            visitor_failed = !v.ok();
                            return v;
                          });
  // The visitor's error is the caller's own, returned as it came.
  return visitor_failed ? s : s.With(where);
}

Status ExperimentStore::experiment_metrics(std::int64_t experiment_id,
                                           std::map<std::int64_t, MetricSeries>* out) {
  out->clear();
  return for_each_series(experiment_id, [&](std::int64_t id, MetricSeries&& series) {
    out->emplace_hint(out->end(), id, std::move(series));
    return Status::Ok();
  });
}

Status resolve_experiment(ExperimentStore& store, const std::string& name,
                          ExperimentRecord* out) {
  std::optional<ExperimentRecord> found;
  Status s = name.empty() ? store.latest_experiment(&found) : store.find_experiment(name, &found);
  if (!s.ok()) return s;
  if (found) {
    *out = std::move(*found);
    return Status::Ok();
  }
  std::vector<ExperimentRecord> all;
  if (s = store.list_experiments(&all); !s.ok()) return s;
  if (all.empty()) {
    return Status::Error("no experiments in " + store.path() +
                         "; start one with trellis run SPEC");
  }
  std::string names;
  for (const auto& e : all) names += (names.empty() ? "" : ", ") + e.name;
  return Status::Error("no experiment '" + name + "' in " + store.path() +
                       "; experiments: " + names);
}

}  // namespace trellis::coordinator

