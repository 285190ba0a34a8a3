// A store that refuses a write stops the coordinator with the error named; it is never taken
// for "the searcher has nothing left" or swallowed. The refusals are real SQLite errors, raised
// by triggers the test installs in the store file, and the same command resumes the sweep once
// the cause is gone.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/worker/idx_fixture.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;


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

// A restart takes each trial's state from the sweep's events, and its row in the trials table
// must agree (both are written in one batch). A row edited behind the coordinator's back is
// named, with the store, instead of being run on.
TEST_F(StoreFaultTest, ARowThatDisagreesWithTheEventsIsRefusedAtRestart) {
  const Result first = run_sweep("first.log");
  ASSERT_EQ(first.code, 0) << first.output;
  exec_sql(store_, "UPDATE trials SET state = 'pending' WHERE number = 1;");
  const Result refused = run_sweep("refused.log");
  EXPECT_NE(refused.code, 0) << refused.output;
  EXPECT_NE(refused.output.find("trial 1 of experiment 'faults' is pending in the trials table "
                                "but ended in its events"),
            std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find("is inconsistent"), std::string::npos) << refused.output;
  EXPECT_EQ(refused.output.find("trial 1 (attempt"), std::string::npos)
      << "the edited trial ran again\n" << refused.output;
}

// A Done the coordinator stopped before storing stays in the group's outbox. The group that
// reconnects to the restarted coordinator must be heard on it before it is given new work:
// one group runs its trials one after another, so a later trial starting before an earlier
// one ended would be an order no undisturbed run has (and a scheduler fed in that order, such
// as PBT's, decides differently).
TEST_F(StoreFaultTest, AnUnstoredDoneIsHeardBeforeTheGroupIsGivenNewWork) {
  make_schema_then_rename();
  exec_sql(store_,
           "CREATE TRIGGER refuse_end BEFORE UPDATE OF state ON trials "
           "WHEN NEW.state = 'completed' AND NEW.number = 0 "
           "BEGIN SELECT RAISE(ABORT, 'disk I/O error (planted)'); END;");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  const std::vector<std::string> serve = {kTrellis, "--store", store_, "serve", spec_,
                                          "--bind", endpoint, "--liveness", "2"};
  Process group({"mpirun", "-np", "1", "--bind-to", "none", kWorker, "--connect", endpoint,
                 "--heartbeat", "0.3", "--liveness", "2", "--timeout", "120"},
                (dir_ / "group.log").string());
  {
    Process refused(serve, (dir_ / "refused.log").string());
    EXPECT_NE(refused.wait(120s), 0) << refused.log();
    EXPECT_NE(refused.log().find("cannot record the end of trial id"), std::string::npos)
        << refused.log();
  }
  ASSERT_TRUE(group.running()) << group.log();
  exec_sql(store_, "DROP TRIGGER refuse_end;");
  Process resumed(serve, (dir_ / "resumed.log").string());
  ASSERT_EQ(resumed.wait(300s), 0) << resumed.log();
  EXPECT_EQ(group.wait(60s), 0) << group.log();

  const json all = exported("faulty");
  ASSERT_EQ(all["trials"].size(), 4u);
  for (const json& t : all["trials"]) EXPECT_EQ(t["state"], "completed") << t.dump();
  // Each trial's first start and its end, as positions in the story.
  std::map<int, std::size_t> started, ended;
  for (std::size_t i = 0; i < all["events"].size(); ++i) {
    const json& e = all["events"][i];
    if (e["trial"].is_null()) continue;
    const int trial = e["trial"];
    if (e["kind"] == "attempt_started") started.try_emplace(trial, i);
    if (e["kind"] == "trial_ended") ended.try_emplace(trial, i);
  }
  ASSERT_EQ(started.size(), 4u) << all["events"].dump(1);
  ASSERT_EQ(ended.size(), 4u) << all["events"].dump(1);
  for (int trial = 1; trial < 4; ++trial)
    EXPECT_LT(ended[trial - 1], started[trial])
        << "trial " << trial << " started before trial " << trial - 1 << " ended\n"
        << all["events"].dump(1);
  EXPECT_NE(resumed.log().find("reconnected still running trial"), std::string::npos)
      << resumed.log();
}

}  // namespace
}  // namespace trellis::testing
