// A store that refuses a write stops the coordinator with the error named; it is never taken
// for "the searcher has nothing left" or swallowed. The refusals are real SQLite errors, raised
// by triggers the test installs in the store file, and the same command resumes the sweep once
// the cause is gone.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>

#include "tests/integration/process.h"
#include "tests/worker/idx_fixture.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

const std::string kTrellis = TRELLIS_BIN_DIR "/trellis";

void exec_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << (error ? error : "") << " in " << sql;
  sqlite3_free(error);
  sqlite3_close(db);
}

class StoreFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = worker::testing::fresh_dir(std::string("store_fault_") + info->name());
    const fs::path data = dir_ / "data";
    fs::create_directories(data);
    worker::testing::write_dataset(data, worker::testing::make_pattern_data(600, 8, 1),
                                   worker::testing::make_pattern_data(200, 8, 2), /*gz=*/true);
    setenv("TRELLIS_HOME", (dir_ / "keys").c_str(), 1);
    spec_ = (dir_ / "faults.yaml").string();
    write_text(spec_, "name: faults\n"
                      "dataset: {name: patterns, path: " + data.string() + "}\n"
                      "metric: {name: val_acc, mode: max}\n"
                      "search:\n  seed: 5\n  trials: 4\n  space:\n"
                      "    lr: {type: log_float, low: 1.0e-3, high: 1.0e-2}\n"
                      "train: {epochs: 1, batch_size: 32}\n"
                      "resources: {ranks_per_trial: 1}\n");
    store_ = (dir_ / "faults.db").string();
  }
  void TearDown() override {
    unsetenv("TRELLIS_HOME");
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // A short liveness: the resumed run waits that long for the groups of the stopped one.
  Result run_sweep(const std::string& log) {
    return run({kTrellis, "--store", store_, "run", spec_, "--groups", "1", "--liveness", "2"},
               (dir_ / log).string(), 300s);
  }
  json exported(const std::string& experiment) {
    const Result r = run({kTrellis, "--store", store_, "export", experiment, "--format", "json"},
                         (dir_ / "export.log").string(), 60s);
    EXPECT_EQ(r.code, 0) << r.output;
    return json::parse(r.output.substr(r.output.find('{')));
  }
  // A first sweep makes the store's schema, so a trigger can then be planted in it; the spec is
  // then renamed, so the next run is a new experiment in the same store.
  void make_schema_then_rename() {
    const Result first = run_sweep("first.log");
    ASSERT_EQ(first.code, 0) << first.output;
    ASSERT_EQ(exported("faults")["trials"].size(), 4u);
    write_text(spec_, "name: faulty" + read_file(spec_).substr(std::string("name: faults").size()));
  }
  void expect_resumes_to_completion() {
    const Result resumed = run_sweep("resumed.log");
    ASSERT_EQ(resumed.code, 0) << resumed.output;
    const json all = exported("faulty");
    EXPECT_EQ(all["experiment"]["state"], "completed");
    ASSERT_EQ(all["trials"].size(), 4u);
    for (const json& t : all["trials"]) EXPECT_EQ(t["state"], "completed") << t.dump();
  }

  fs::path dir_;
  std::string spec_, store_;
};

TEST_F(StoreFaultTest, AFailedAddTrialStopsTheSweepInsteadOfEndingIt) {
  make_schema_then_rename();
  exec_sql(store_,
           "CREATE TRIGGER refuse_third BEFORE INSERT ON trials WHEN NEW.number = 2 "
           "BEGIN SELECT RAISE(ABORT, 'disk I/O error (planted by the test)'); END;");
  const Result refused = run_sweep("refused.log");
  EXPECT_NE(refused.code, 0) << refused.output;
  EXPECT_NE(refused.output.find("cannot add trial 2"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("planted by the test"), std::string::npos) << refused.output;
  EXPECT_EQ(refused.output.find("sweep 'faulty' finished"), std::string::npos) << refused.output;
  const json partial = exported("faulty");
  EXPECT_EQ(partial["experiment"]["state"], "running") << "not marked completed";
  EXPECT_EQ(partial["trials"].size(), 2u);

  exec_sql(store_, "DROP TRIGGER refuse_third;");
  expect_resumes_to_completion();
}

// A trial the store refuses to start must not be parked in pending with its group told to wait
// forever: the coordinator stops, naming the trial.
TEST_F(StoreFaultTest, AFailedStartStopsTheCoordinatorWithTheTrialNamed) {
  make_schema_then_rename();
  exec_sql(store_,
           "CREATE TRIGGER refuse_start BEFORE UPDATE OF state ON trials "
           "WHEN NEW.state = 'running' AND NEW.number = 1 "
           "BEGIN SELECT RAISE(ABORT, 'database or disk is full (planted)'); END;");
  const Result refused = run_sweep("refused.log");
  EXPECT_NE(refused.code, 0) << refused.output;
  EXPECT_NE(refused.output.find("cannot start trial id"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("disk is full (planted)"), std::string::npos) << refused.output;
  EXPECT_EQ(exported("faulty")["experiment"]["state"], "running");

  exec_sql(store_, "DROP TRIGGER refuse_start;");
  expect_resumes_to_completion();
}

}  // namespace
}  // namespace trellis::testing
