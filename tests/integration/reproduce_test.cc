// `trellis reproduce` on trials of real sweeps (`trellis run --groups 1`: mpirun, a worker
// group, a SQLite store): a plain trial, one that Hyperband paused and promoted, one that PBT
// exploited (and the same with its donor's checkpoint deleted), one whose dataset changed after
// the run, and one whose recorded metric was edited in the store.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>

#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/worker/idx_fixture.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ReproduceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = worker::testing::fresh_dir(std::string("reproduce_") + info->name());
    setenv("TRELLIS_HOME", (dir_ / "keys").c_str(), 1);
    write_data(1);
  }
  void TearDown() override {
    unsetenv("TRELLIS_HOME");
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  void write_data(int seed) {
    fs::create_directories(dir_ / "data");
    worker::testing::write_dataset(dir_ / "data", worker::testing::make_pattern_data(1500, 8, seed),
                                   worker::testing::make_pattern_data(300, 8, seed + 10),
                                   /*gz=*/false);
  }

  // Runs the sweep `name` (search and scheduler lines as given) to its end; returns the store.
  std::string sweep(const std::string& name, const std::string& search,
                    const std::string& scheduler) {
    const std::string spec = file(name + ".yaml");
    write_text(spec, "name: " + name + "\n"
                     "dataset: {path: " + (dir_ / "data").string() + "}\n"
                     "metric: {name: val_loss, mode: min}\n"
                     "search:\n  seed: 4\n" + search +
                     "  space:\n"
                     "    lr: {type: log_float, low: 1.0e-3, high: 1.0e-1}\n"
                     "    hidden_units: {type: int, low: 8, high: 24}\n"
                     "train: {batch_size: 64, epochs: 3}\n" + scheduler);
    const std::string store = file(name + ".db");
    const Result r = run({kTrellis, "--store", store, "run", spec, "--groups", "1", "--insecure"},
                         file(name + "-run.log"), 300s);
    EXPECT_EQ(r.code, 0) << r.output;
    return store;
  }

  Result reproduce(const std::string& store, const std::string& experiment, int trial,
                   const std::string& log) {
    return run({kTrellis, "--store", store, "reproduce", experiment, std::to_string(trial),
                "--mpirun-arg=--oversubscribe"},
               file(log), 300s);
  }

  // The first row's first column of `sql` on `store`, as text ("" for none).
  static std::string query(const std::string& store, const std::string& sql) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(store.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    std::string out;
    if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }
  static void execute(const std::string& store, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(store.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK) << error;
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
  }

  fs::path dir_;
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_F(ReproduceTest, APlainTrialReproducesBitForBit) {
  const std::string store = sweep("plain", "  trials: 2\n", "");
  const Result r = reproduce(store, "plain", 1, "reproduce.log");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "trial 1 of plain: reproduced: 3 epochs")) << r.output;
  EXPECT_TRUE(contains(r.output, "provenance: no field differs")) << r.output;
  EXPECT_TRUE(contains(r.output, "epoch 3 of 3")) << r.output;  // progress
}

TEST_F(ReproduceTest, APausedAndPromotedTrialIsReRunThroughTheSameDecisions) {
  const std::string store =
      sweep("bands", "  trials: 9\n",
            "scheduler: {type: hyperband, min_epochs: 1, reduction_factor: 3, max_epochs: 3}\n");
  // A trial paused at a rung and promoted from it: its re-run stops and resumes there.
  const std::string number = query(
      store, "SELECT t.number FROM events e JOIN trials t ON t.id = e.trial_id "
             "WHERE e.kind = 'trial_promoted' AND t.state = 'completed' ORDER BY t.number LIMIT 1");
  ASSERT_FALSE(number.empty()) << "no trial was promoted to the end";
  const Result r = reproduce(store, "bands", std::stoi(number), "reproduce.log");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "leg 2/")) << r.output;
  EXPECT_TRUE(contains(r.output, "reproduced:")) << r.output;
}

TEST_F(ReproduceTest, AnExploitedPbtTrialReproducesAndWithoutItsDonorsCheckpointCannot) {
  const std::string store = sweep(
      "pbt", "  trials: 4\n",
      "scheduler: {type: pbt, interval: 1, quantile: 0.25, resample_probability: 0, "
      "max_epochs: 3}\n");
  const std::string number = query(
      store, "SELECT t.number FROM lineage l JOIN trials t ON t.id = l.trial_id "
             "ORDER BY l.epoch, t.number LIMIT 1");
  ASSERT_FALSE(number.empty()) << "no trial exploited another";
  const Result same = reproduce(store, "pbt", std::stoi(number), "reproduce.log");
  EXPECT_EQ(same.code, 0) << same.output;
  EXPECT_TRUE(contains(same.output, "from donor trial")) << same.output;
  EXPECT_TRUE(contains(same.output, "reproduced:")) << same.output;

  const std::string snapshot = query(
      store, "SELECT json_extract(body, '$.warm_start') FROM events e JOIN trials t "
             "ON t.id = e.trial_id WHERE e.kind = 'attempt_started' AND t.number = " + number +
             " AND json_extract(body, '$.warm_start') != '' ORDER BY e.seq LIMIT 1");
  ASSERT_TRUE(fs::exists(snapshot)) << snapshot;
  fs::remove(snapshot);
  const Result gone = reproduce(store, "pbt", std::stoi(number), "gone.log");
  EXPECT_EQ(gone.code, 2) << gone.output;
  EXPECT_TRUE(contains(gone.output, snapshot + ", is gone")) << gone.output;
  EXPECT_TRUE(contains(gone.output, "took donor trial")) << gone.output;
}

TEST_F(ReproduceTest, AChangedDatasetExplainsTheDifference) {
  const std::string store = sweep("data", "  trials: 1\n", "");
  write_data(2);  // same shape, other rows
  const Result r = reproduce(store, "data", 0, "reproduce.log");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "differs at epoch 1")) << r.output;
  EXPECT_TRUE(contains(r.output, "  dataset_hash: \"crc32:")) << r.output;
  EXPECT_TRUE(contains(r.output, "explained by the provenance difference")) << r.output;
}

TEST_F(ReproduceTest, ATamperedMetricWithNoProvenanceDifferenceIsUnexplained) {
  const std::string store = sweep("edited", "  trials: 1\n", "");
  execute(store, "UPDATE reports SET metrics = json_set(metrics, '$.val_loss', "
                 "json_extract(metrics, '$.val_loss') * 2) WHERE epoch = 2");
  const Result r = reproduce(store, "edited", 0, "reproduce.log");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "differs at epoch 2, metric val_loss: recorded ")) << r.output;
  EXPECT_TRUE(contains(r.output, ", difference ")) << r.output;
  EXPECT_TRUE(contains(r.output, "provenance: no field differs")) << r.output;
  EXPECT_TRUE(contains(r.output, "no provenance field explains it")) << r.output;
}

TEST_F(ReproduceTest, UnknownExperimentOrTrialIsNamed) {
  const std::string store = sweep("known", "  trials: 1\n", "");
  const Result experiment = reproduce(store, "unknown", 0, "experiment.log");
  EXPECT_EQ(experiment.code, 2) << experiment.output;
  EXPECT_TRUE(contains(experiment.output, "no experiment 'unknown'")) << experiment.output;
  const Result trial = reproduce(store, "known", 7, "trial.log");
  EXPECT_EQ(trial.code, 2) << trial.output;
  EXPECT_TRUE(contains(trial.output, "has no trial 7")) << trial.output;
}

}  // namespace
}  // namespace trellis::testing
