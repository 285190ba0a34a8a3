// The store's group commit (begin_batch / commit_batch), the latest metrics it keeps with a
// trial that ended (what `trellis trials` reads), and the upgrade of a schema-1 store.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <thread>

#include "coordinator/experiment_store.h"
#include "tests/coordinator/temp_store.h"

namespace trellis::coordinator {
namespace {

using testing::TempDir;

std::unique_ptr<ExperimentStore> open_store(const std::string& path, bool read_only = false) {
  std::unique_ptr<ExperimentStore> store;
  Status s = ExperimentStore::Open(path, read_only, &store);
  EXPECT_TRUE(s.ok()) << s.message();
  return store;
}

struct Fixture {
  explicit Fixture(const std::string& path) : store(open_store(path)) {
    experiment.name = "alpha";
    experiment.metric = "val_acc";
    EXPECT_TRUE(store->create_experiment(&experiment).ok());
  }
  std::int64_t trial(std::int32_t number) {
    TrialRecord t;
    t.experiment_id = experiment.id;
    t.number = number;
    t.params = {{"lr", 0.01 * (number + 1)}};
    Status s = store->add_trial(&t);
    EXPECT_TRUE(s.ok()) << s.message();
    return t.id;
  }
  std::int32_t start(std::int64_t trial) {
    std::int32_t attempt = 0;
    Status s = store->start_trial(trial, "g", &attempt);
    EXPECT_TRUE(s.ok()) << s.message();
    return attempt;
  }

  std::unique_ptr<ExperimentStore> store;
  ExperimentRecord experiment;
};

std::size_t epochs_seen_by(ExperimentStore& reader, std::int64_t trial) {
  MetricSeries series;
  Status s = reader.metric_series(trial, &series);
  EXPECT_TRUE(s.ok()) << s.message();
  return series["val_acc"].size();
}

TEST(StoreBatchTest, AReportInAnOpenBatchIsInvisibleToOthersUntilCommitted) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  Fixture f(path);
  const std::int64_t t = f.trial(0);
  const std::int32_t attempt = f.start(t);
  auto reader = open_store(path, /*read_only=*/true);
  ASSERT_TRUE(reader);

  ASSERT_TRUE(f.store->begin_batch().ok());
  EXPECT_TRUE(f.store->in_batch());
  EXPECT_FALSE(f.store->begin_batch().ok()) << "batches do not nest";
  ASSERT_TRUE(f.store->append_report(t, attempt, 1, {{"val_acc", 0.5}}).ok());
  ASSERT_TRUE(f.store->append_report(t, attempt, 2, {{"val_acc", 0.6}}).ok());
  // The writer reads its own batch; another connection sees nothing of it yet.
  EXPECT_EQ(epochs_seen_by(*f.store, t), 2u);
  EXPECT_EQ(epochs_seen_by(*reader, t), 0u);

  ASSERT_TRUE(f.store->commit_batch().ok());
  EXPECT_FALSE(f.store->in_batch());
  EXPECT_EQ(epochs_seen_by(*reader, t), 2u);
  EXPECT_FALSE(f.store->commit_batch().ok()) << "no batch is open";
}

TEST(StoreBatchTest, ARolledBackBatchLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  Fixture f(path);
  const std::int64_t t = f.trial(0);
  const std::int32_t attempt = f.start(t);
  {
    ExperimentStore::Batch batch(f.store.get());
    ASSERT_TRUE(batch.begin().ok());
    ASSERT_TRUE(f.store->append_report(t, attempt, 1, {{"val_acc", 0.5}}).ok());
    ASSERT_TRUE(f.store->finish_trial(t, attempt, TrialState::kCompleted, "", {}).ok());
  }  // out of scope uncommitted: rolled back
  EXPECT_FALSE(f.store->in_batch());
  auto reader = open_store(path, /*read_only=*/true);
  EXPECT_EQ(epochs_seen_by(*reader, t), 0u);
  TrialRecord got;
  ASSERT_TRUE(f.store->get_trial(t, &got).ok());
  EXPECT_EQ(got.state, TrialState::kRunning);
  // The trial goes on as if the batch never was.
  ASSERT_TRUE(f.store->append_report(t, attempt, 1, {{"val_acc", 0.7}}).ok());
  ASSERT_TRUE(f.store->finish_trial(t, attempt, TrialState::kCompleted, "", {}).ok());
  MetricSeries series;
  ASSERT_TRUE(reader->metric_series(t, &series).ok());
  ASSERT_EQ(series["val_acc"].size(), 1u);
  EXPECT_DOUBLE_EQ(series["val_acc"][0].second, 0.7);
}

TEST(StoreBatchTest, ACallRefusedInsideABatchLeavesTheRestOfItToCommit) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  Fixture f(path);
  const std::int64_t a = f.trial(0);
  const std::int64_t b = f.trial(1);
  ASSERT_TRUE(f.store->begin_batch().ok());
  const std::int32_t attempt = f.start(a);
  ASSERT_TRUE(f.store->append_report(a, attempt, 1, {{"val_acc", 0.5}}).ok());
  EXPECT_FALSE(f.store->append_report(b, 1, 1, {{"val_acc", 0.9}}).ok()) << "never started";
  EXPECT_FALSE(f.store->finish_trial(b, 1, TrialState::kCompleted, "", {}).ok());
  ASSERT_TRUE(f.store->commit_batch().ok());

  auto reader = open_store(path, /*read_only=*/true);
  EXPECT_EQ(epochs_seen_by(*reader, a), 1u);
  EXPECT_EQ(epochs_seen_by(*reader, b), 0u);
  TrialRecord got;
  ASSERT_TRUE(reader->get_trial(a, &got).ok());
  EXPECT_EQ(got.state, TrialState::kRunning);
  ASSERT_TRUE(reader->get_trial(b, &got).ok());
  EXPECT_EQ(got.state, TrialState::kPending);
}

// TrialSummary of one trial, by number.
TrialSummary summary_of(ExperimentStore& store, std::int64_t experiment, std::int32_t number) {
  std::vector<TrialSummary> all;
  Status s = store.trial_summaries(experiment, &all);
  EXPECT_TRUE(s.ok()) << s.message();
  for (auto& t : all)
    if (t.number == number) return t;
  ADD_FAILURE() << "no trial " << number;
  return {};
}

TEST(StoreBatchTest, AnEndedTrialKeepsTheLatestValueOfEachMetric) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  Fixture f(path);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();

  // Fresh attempt, reports out of order, one metric only in early epochs.
  const std::int64_t fresh = f.trial(0);
  std::int32_t attempt = f.start(fresh);
  ASSERT_TRUE(f.store->append_report(fresh, attempt, 3, {{"val_acc", 0.3}, {"x", nan}}).ok());
  ASSERT_TRUE(f.store->append_report(fresh, attempt, 1, {{"val_acc", 0.1}, {"lr", 1.0}}).ok());
  ASSERT_TRUE(f.store->append_report(fresh, attempt, 2, {{"val_acc", 0.2}, {"lr", inf}}).ok());
  ASSERT_TRUE(f.store->append_report(fresh, attempt, 2, {{"val_acc", 9.9}}).ok());  // duplicate
  ASSERT_TRUE(
      f.store->finish_trial(fresh, attempt, TrialState::kCompleted, "", {{"test_acc", 0.25}})
          .ok());

  // A resumed lineage: attempt 1 checkpointed epoch 1, then was lost; attempt 2 resumed.
  const std::int64_t resumed = f.trial(1);
  attempt = f.start(resumed);
  ASSERT_TRUE(
      f.store->append_report(resumed, attempt, 1, {{"val_acc", 0.4}, {"y", 1.0}}, true).ok());
  ASSERT_TRUE(f.store->append_report(resumed, attempt, 2, {{"val_acc", 0.45}, {"y", 2.0}}).ok());
  ASSERT_TRUE(f.store->requeue_trial(resumed, "lost", Requeue::kLost).ok());
  attempt = f.start(resumed);
  ASSERT_EQ(attempt, 2);
  ASSERT_TRUE(f.store->append_report(resumed, attempt, 2, {{"val_acc", 0.5}}).ok());

  // Still running: folded from its reports at read time.
  TrialSummary running = summary_of(*f.store, f.experiment.id, 1);
  EXPECT_EQ(running.state, TrialState::kRunning);
  EXPECT_EQ(running.epochs_run, 2);
  EXPECT_DOUBLE_EQ(running.last_metrics.at("val_acc"), 0.5);
  EXPECT_DOUBLE_EQ(running.last_metrics.at("y"), 1.0);  // attempt 1's epoch 2 is not its lineage

  // Ended after the store was reopened (nothing of the trial in memory), then a late report
  // of the same attempt arrives.
  f.store.reset();
  f.store = open_store(path);
  ASSERT_TRUE(f.store->finish_trial(resumed, attempt, TrialState::kPruned, "rung 1", {}).ok());
  ASSERT_TRUE(f.store->append_report(resumed, attempt, 3, {{"val_acc", 0.55}}).ok());

  auto reader = open_store(path, /*read_only=*/true);
  const TrialSummary a = summary_of(*reader, f.experiment.id, 0);
  EXPECT_EQ(a.state, TrialState::kCompleted);
  EXPECT_EQ(a.epochs_run, 3);
  EXPECT_DOUBLE_EQ(a.last_metrics.at("val_acc"), 0.3);
  EXPECT_TRUE(std::isinf(a.last_metrics.at("lr")));
  EXPECT_TRUE(std::isnan(a.last_metrics.at("x")));
  EXPECT_DOUBLE_EQ(a.final_metrics.at("test_acc"), 0.25);
  EXPECT_EQ(std::get<double>(a.params.at("lr")), 0.01);

  const TrialSummary b = summary_of(*reader, f.experiment.id, 1);
  EXPECT_EQ(b.state, TrialState::kPruned);
  EXPECT_EQ(b.epochs_run, 3);
  EXPECT_DOUBLE_EQ(b.last_metrics.at("val_acc"), 0.55);
  EXPECT_DOUBLE_EQ(b.last_metrics.at("y"), 1.0);
}

// The WAL is copied into the database file by the store's own thread: the file grows without
// any call asking for a checkpoint. (Waits for it, with a generous deadline; times nothing.)
TEST(StoreBatchTest, TheWalReachesTheDatabaseFileInTheBackground) {
  TempDir dir;
  const std::string path = dir.file("store.db");
  Fixture f(path);
  const auto file_size = [&] {
    std::error_code ec;
    return std::filesystem::file_size(path, ec);
  };
  const auto before = file_size();
  const std::int64_t t = f.trial(0);
  const std::int32_t attempt = f.start(t);
  for (int epoch = 1; epoch <= 4000; ++epoch) {
    if (epoch % 100 == 1) {
      ASSERT_TRUE(f.store->begin_batch().ok());
    }
    MetricMap metrics;
    for (int m = 0; m < 20; ++m) metrics["metric_" + std::to_string(m)] = epoch + m;
    ASSERT_TRUE(f.store->append_report(t, attempt, epoch, metrics).ok());
    if (epoch % 100 == 0) {
      ASSERT_TRUE(f.store->commit_batch().ok());
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (file_size() <= before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GT(file_size(), before) << "nothing was checkpointed";
}

// Schema 1 as trellis 0.1 wrote it: one metrics row per (trial, attempt, epoch, name).
constexpr const char* kSchemaOne = R"sql(
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('application', 'trellis-experiment-store'), ('schema_version', '1');
CREATE TABLE experiments (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
  spec_yaml TEXT NOT NULL, spec_hash TEXT NOT NULL, metric TEXT NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('max', 'min')), seed INTEGER NOT NULL,
  state TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE trials (id INTEGER PRIMARY KEY, experiment_id INTEGER NOT NULL REFERENCES
  experiments(id), number INTEGER NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending',
  'running', 'completed', 'pruned', 'failed')), params TEXT NOT NULL, seed INTEGER NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0, grp TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT
  '', started_at TEXT NOT NULL DEFAULT '', finished_at TEXT NOT NULL DEFAULT '',
  checkpoint_epoch INTEGER NOT NULL DEFAULT 0, resumable INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0, UNIQUE (experiment_id, number));
CREATE TABLE attempts (trial_id INTEGER NOT NULL REFERENCES trials(id), attempt INTEGER NOT
  NULL, resume_epoch INTEGER NOT NULL, grp TEXT NOT NULL, provenance TEXT NOT NULL, started_at
  TEXT NOT NULL, PRIMARY KEY (trial_id, attempt)) WITHOUT ROWID;
CREATE TABLE metrics (trial_id INTEGER NOT NULL REFERENCES trials(id), attempt INTEGER NOT
  NULL, epoch INTEGER NOT NULL, name TEXT NOT NULL, value REAL, PRIMARY KEY (trial_id, attempt,
  epoch, name)) WITHOUT ROWID;
CREATE TABLE finals (trial_id INTEGER NOT NULL REFERENCES trials(id), name TEXT NOT NULL,
  value REAL, PRIMARY KEY (trial_id, name)) WITHOUT ROWID;
INSERT INTO experiments VALUES (1, 'old', 'name: old', 'h', 'val_acc', 'max', 7, 'completed',
  '2024-01-01T00:00:00.000Z');
INSERT INTO trials (id, experiment_id, number, state, params, seed, attempt)
  VALUES (1, 1, 0, 'completed', '{"lr":0.1}', 1, 1), (2, 1, 1, 'running', '{"lr":0.2}', 2, 1);
INSERT INTO attempts VALUES (1, 1, 0, 'g', '{}', 't'), (2, 1, 0, 'g', '{}', 't');
INSERT INTO metrics VALUES (1, 1, 1, 'val_acc', 0.5), (1, 1, 1, 'val_loss', 0.9),
  (1, 1, 2, 'val_acc', 0.6), (1, 1, 2, 'val_loss', NULL),
  (2, 1, 1, 'val_acc', 0.123456789012345678);
INSERT INTO finals VALUES (1, 'test_acc', 0.58);
)sql";

TEST(StoreBatchTest, SchemaOneStoreIsUpgradedWhenOpenedForWriting) {
  TempDir dir;
  const std::string path = dir.file("old.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, kSchemaOne, nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  std::unique_ptr<ExperimentStore> store;
  Status s = ExperimentStore::Open(path, /*read_only=*/true, &store);
  ASSERT_FALSE(s.ok()) << "reading schema 1 needs the upgrade first";
  EXPECT_NE(s.message().find("trellis serve"), std::string::npos) << s.message();

  ASSERT_TRUE(open_store(path)) << "opening for writing upgrades";
  auto reader = open_store(path, /*read_only=*/true);
  ASSERT_TRUE(reader);
  MetricSeries series;
  ASSERT_TRUE(reader->metric_series(1, &series).ok());
  const std::vector<std::pair<std::int32_t, double>> acc = {{1, 0.5}, {2, 0.6}};
  EXPECT_EQ(series["val_acc"], acc);
  ASSERT_EQ(series["val_loss"].size(), 2u);
  EXPECT_TRUE(std::isnan(series["val_loss"][1].second));
  ASSERT_TRUE(reader->metric_series(2, &series).ok());
  EXPECT_EQ(series["val_acc"][0].second, 0.123456789012345678) << "bit for bit";

  std::vector<TrialSummary> all;
  ASSERT_TRUE(reader->trial_summaries(1, &all).ok());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].epochs_run, 2);
  EXPECT_DOUBLE_EQ(all[0].last_metrics.at("val_acc"), 0.6);
  EXPECT_DOUBLE_EQ(all[0].final_metrics.at("test_acc"), 0.58);
  EXPECT_EQ(all[1].epochs_run, 1);

  // Schema 1's rows are still there to query, as a view.
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* count = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT COUNT(*), SUM(value IS NULL) FROM metrics", -1,
                               &count, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  ASSERT_EQ(sqlite3_step(count), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(count, 0), 5);
  EXPECT_EQ(sqlite3_column_int(count, 1), 1);
  sqlite3_finalize(count);
  sqlite3_close(db);
  // And on to schema 3: the events table is there.
  EventRecord e;
  e.experiment_id = 1;
  e.kind = "coordinator_started";
  EXPECT_TRUE(open_store(path)->append_event(&e).ok());
}

// Schema 2 (what the previous release wrote: no events table) is upgraded in place by any
// writer, or by `trellis upgrade`, which is what a reader's refusal names.
TEST(StoreBatchTest, SchemaTwoStoreGainsTheEventsTableInPlace) {
  TempDir dir;
  const std::string path = dir.file("two.db");
  {
    auto store = open_store(path);
    ASSERT_TRUE(store);
    ExperimentRecord e;
    e.name = "kept";
    e.spec_yaml = "name: kept\n";
    e.spec_hash = "h";
    e.metric = "val_acc";
    ASSERT_TRUE(store->create_experiment(&e).ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP INDEX events_by_experiment; DROP TABLE events; "
                         "UPDATE meta SET value = '2' WHERE key = 'schema_version';",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  std::unique_ptr<ExperimentStore> reader;
  const Status refused = ExperimentStore::Open(path, /*read_only=*/true, &reader);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("schema version 2"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("trellis upgrade"), std::string::npos) << refused.message();

  auto store = open_store(path);
  ASSERT_TRUE(store);
  std::optional<ExperimentRecord> kept;
  ASSERT_TRUE(store->find_experiment("kept", &kept).ok());
  ASSERT_TRUE(kept.has_value()) << "the upgrade keeps what was there";
  EventRecord event;
  event.experiment_id = kept->id;
  event.kind = "coordinator_started";
  ASSERT_TRUE(store->append_event(&event).ok());
  store.reset();
  reader = open_store(path, /*read_only=*/true);
  ASSERT_TRUE(reader) << "readable once upgraded";
  std::vector<EventRecord> events;
  ASSERT_TRUE(reader->list_events(kept->id, 0, &events).ok());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, "coordinator_started");
}

}  // namespace
}  // namespace trellis::coordinator
