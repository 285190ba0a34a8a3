// Chaos: a sweep survives its worker groups and its coordinator being killed with SIGKILL.
//
// One undisturbed `trellis run` and one disturbed sweep (`trellis serve` plus two 1-rank
// `mpirun` groups, of which the test preempts a group with SIGTERM once, kills a group with
// SIGKILL twice and the coordinator once, starting each again) run the same spec and seed.
// Training is deterministic, so every trial of the disturbed sweep must complete with exactly
// the undisturbed metrics, each series contiguous with no epoch lost or stored twice.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "tests/integration/raw_client.h"
#include "tests/worker/idx_fixture.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr int kTrials = 12;
constexpr int kEpochs = 5;

class ChaosTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    dir_ = worker::testing::fresh_dir("chaos");
    setenv("TRELLIS_HOME", (dir_ / "keys").c_str(), 1);
    fs::create_directories(dir_ / "data");
    // Large enough that a trial takes a second or two, so every disturbance lands while
    // trials are running; small enough for CI.
    worker::testing::write_dataset(dir_ / "data", worker::testing::make_pattern_data(30000, 32, 1),
                                   worker::testing::make_pattern_data(2000, 32, 2), /*gz=*/false);
    spec_ = (dir_ / "chaos.yaml").string();
    write_text(spec_, "name: chaos\n"
                      "dataset: {path: " + (dir_ / "data").string() + "}\n"
                      "search:\n  seed: 5\n  trials: " + std::to_string(kTrials) + "\n"
                      "  space:\n"
                      "    lr: {type: log_float, low: 1.0e-3, high: 1.0e-2}\n"
                      "    hidden_units: {type: int, low: 64, high: 160}\n"
                      "    dropout: {type: float, low: 0.0, high: 0.3}\n"
                      "train: {epochs: " + std::to_string(kEpochs) + ", batch_size: 64}\n"
                      "resources: {ranks_per_trial: 1}\n");
  }
  void TearDown() override {
    unsetenv("TRELLIS_HOME");
    if (!HasFailure()) fs::remove_all(dir_);
  }

  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  json export_json(const std::string& store) {
    const Result r = run({kTrellis, "--store", store, "export", "chaos", "--format", "json",
                          "-o", file("export.json")},
                         file("export.log"), 60s);
    EXPECT_EQ(r.code, 0) << r.output;
    return json::parse(read_file(file("export.json")));
  }

  fs::path dir_;
  std::string spec_;
};

// The highest "[N/12 done]" the coordinator has logged.
int trials_done(const Process& coordinator) {
  static const std::regex kDone(R"(\[(\d+)/\d+ done\])");
  const std::string log = coordinator.log();
  int most = 0;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), kDone); it != std::sregex_iterator(); ++it)
    most = std::max(most, std::stoi((*it)[1]));
  return most;
}

bool wait_until_done(const Process& coordinator, int trials, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (trials_done(coordinator) < trials) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

// Waits until the group whose log is `worker` runs a trial that has reported epoch 1 and not
// finished, so a signal sent now lands inside training.
bool wait_until_mid_trial(const Process& coordinator, const Process& worker,
                          std::chrono::seconds timeout) {
  static const std::regex kName(R"(group '([^']+)' of)");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (; std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
    std::smatch name;
    const std::string worker_log = worker.log();
    if (!std::regex_search(worker_log, name, kName)) continue;
    const std::string log = coordinator.log();
    const std::regex assigned(R"(trial (\d+) \(attempt \d+[^)]*\) -> group ')" + name[1].str() + "'");
    std::string trial;
    for (auto it = std::sregex_iterator(log.begin(), log.end(), assigned); it != std::sregex_iterator(); ++it)
      trial = (*it)[1];
    if (trial.empty() || log.find("trial " + trial + " completed") != std::string::npos) continue;
    if (log.find("trial " + trial + " epoch 1:") != std::string::npos) return true;
  }
  return false;
}

TEST_F(ChaosTest, KilledWorkersAndCoordinatorLoseNothing) {
  ASSERT_EQ(run({kTrellis, "keys", "init"}, file("keys.log"), 30s).code, 0);

  const std::string calm_store = file("calm.db");
  const Result calm = run({kTrellis, "--store", calm_store, "run", spec_, "--groups", "2"},
                          file("calm.log"), 600s);
  ASSERT_EQ(calm.code, 0) << calm.output;
  const json undisturbed = export_json(calm_store);

  const std::string store = file("chaos.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  const std::vector<std::string> serve_args = {kTrellis, "--store", store, "serve", spec_,
                                               "--bind", endpoint, "--liveness", "2"};
  const auto group = [&](int slot, const std::string& log) {
    return std::make_unique<Process>(
        std::vector<std::string>{"mpirun", "-np", "1", "--bind-to", "none", kWorker, "--connect",
                                 endpoint, "--cpu-slot", std::to_string(slot) + "/2",
                                 "--heartbeat", "0.3", "--liveness", "2", "--timeout", "120"},
        file(log));
  };

  auto coordinator = std::make_unique<Process>(serve_args, file("serve1.log"));
  auto a = group(0, "a1.log");
  auto b = group(1, "b1.log");

  ASSERT_TRUE(wait_until_mid_trial(*coordinator, *b, 300s)) << coordinator->log();
  // Preemption: checkpoint now, report, leave. To the rank, as Slurm signals a step's tasks:
  // mpirun forwards a SIGTERM only about a second after it got it, which is longer than what
  // is left of a trial here.
  const pid_t b_rank0 = rank_pid(b->pid(), 0);
  ASSERT_GT(b_rank0, 0) << "no rank 0 under mpirun " << b->pid();
  ASSERT_EQ(::kill(b_rank0, SIGTERM), 0);
  ASSERT_NE(b->wait(60s), -1) << b->log();
  EXPECT_NE(b->log().find("stopped by SIGTERM"), std::string::npos) << b->log();
  b = group(1, "b2.log");

  ASSERT_TRUE(wait_until_done(*coordinator, 3, 300s)) << coordinator->log();
  a->kill_group(SIGKILL);
  a = group(0, "a2.log");

  ASSERT_TRUE(wait_until_done(*coordinator, 5, 300s)) << coordinator->log();
  coordinator->kill_group(SIGKILL);
  coordinator = std::make_unique<Process>(serve_args, file("serve2.log"));

  ASSERT_TRUE(wait_until_done(*coordinator, 8, 300s)) << coordinator->log();
  b->kill_group(SIGKILL);
  b = group(1, "b3.log");

  ASSERT_EQ(coordinator->wait(600s), 0) << coordinator->log();
  EXPECT_EQ(a->wait(60s), 0) << a->log();
  EXPECT_EQ(b->wait(60s), 0) << b->log();
  const std::string serve_logs = read_file(file("serve1.log")) + coordinator->log();
  EXPECT_NE(serve_logs.find("lost"), std::string::npos) << "no group was ever declared lost";
  EXPECT_NE(serve_logs.find("preempted"), std::string::npos) << "the SIGTERM was not reported";

  // No trial may fail: each disturbance costs a trial at most one of its max_failures (3)
  // lives, the SIGTERM and the coordinator's restart none, so a failed trial is a lost one.
  ASSERT_EQ(undisturbed["trials"].size(), static_cast<std::size_t>(kTrials));
  for (const json& t : undisturbed["trials"]) ASSERT_EQ(t["state"], "completed") << t.dump();
  const json disturbed = export_json(store);
  ASSERT_EQ(disturbed["trials"].size(), static_cast<std::size_t>(kTrials));
  for (const json& t : disturbed["trials"]) {
    EXPECT_EQ(t["state"], "completed") << t.dump();
    for (const auto& [name, series] : t["metrics"].items()) {
      ASSERT_EQ(series.size(), static_cast<std::size_t>(kEpochs)) << name << " " << t.dump();
      for (int e = 0; e < kEpochs; ++e) EXPECT_EQ(series[e][0], e + 1) << name << " " << t.dump();
    }
    // Deterministic training: the disturbed trial learned exactly what the calm one did.
    const json& calm_trial = undisturbed["trials"][t["id"].get<int>()];
    EXPECT_EQ(t["params"], calm_trial["params"]);
    for (const char* name : {"train_loss", "val_loss", "val_acc"})
      EXPECT_EQ(t["metrics"][name], calm_trial["metrics"][name]) << "trial " << t["id"] << " " << name;
    EXPECT_EQ(t["final"], calm_trial["final"]) << "trial " << t["id"];
  }

  // The best trial and its metrics are the undisturbed run's.
  const auto best = [](const json& doc) {
    int id = -1;
    double acc = -1;
    for (const json& t : doc["trials"])
      if (t["final"]["val_acc"].get<double>() > acc)
        acc = t["final"]["val_acc"], id = t["id"];
    return id;
  };
  ASSERT_GE(best(undisturbed), 0);
  EXPECT_EQ(best(disturbed), best(undisturbed));
}

}  // namespace
}  // namespace trellis::testing

namespace trellis::testing {
namespace {


// Two-rank groups, so one rank can be disturbed while the other goes on; a few trials, each
// compared with an undisturbed run of two-rank groups (same summation order, same bits).
class OneRankChaosTest : public ChaosTest {
 protected:
  static constexpr int kRankTrials = 3;

  void SetUp() override {
    ChaosTest::SetUp();
    spec_ = file("two-ranks.yaml");
    write_text(spec_, "name: chaos\n"
                      "dataset: {path: " + (dir_ / "data").string() + "}\n"
                      "search:\n  seed: 11\n  trials: " + std::to_string(kRankTrials) + "\n"
                      "  space:\n"
                      "    lr: {type: log_float, low: 1.0e-3, high: 1.0e-2}\n"
                      "    hidden_units: {type: int, low: 64, high: 160}\n"
                      "train: {epochs: " + std::to_string(kEpochs) + ", batch_size: 64}\n"
                      "resources: {ranks_per_trial: 2}\n");
  }

  std::unique_ptr<Process> group(const std::string& endpoint, const std::string& log) {
    return std::make_unique<Process>(
        std::vector<std::string>{"mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none",
                                 kWorker, "--connect", endpoint, "--bind", "none",
                                 "--heartbeat", "0.3", "--liveness", "2", "--timeout", "120"},
        file(log));
  }

  // Every trial of the disturbed sweep completed with exactly the undisturbed metrics, and
  // some trial needed a second attempt.
  void expect_undisturbed_results(const json& undisturbed, const json& disturbed) {
    ASSERT_EQ(disturbed["trials"].size(), static_cast<std::size_t>(kRankTrials));
    int reattempted = 0;
    for (const json& t : disturbed["trials"]) {
      ASSERT_EQ(t["state"], "completed") << t.dump();
      if (t["attempt"].get<int>() > 1) ++reattempted;
      for (const auto& [name, series] : t["metrics"].items())
        ASSERT_EQ(series.size(), static_cast<std::size_t>(kEpochs)) << name << " " << t.dump();
      const json& calm_trial = undisturbed["trials"][t["id"].get<int>()];
      EXPECT_EQ(t["params"], calm_trial["params"]);
      for (const char* name : {"train_loss", "val_loss", "val_acc"})
        EXPECT_EQ(t["metrics"][name], calm_trial["metrics"][name]) << "trial " << t["id"] << " " << name;
      EXPECT_EQ(t["final"], calm_trial["final"]) << "trial " << t["id"];
    }
    EXPECT_GE(reattempted, 1) << "no trial was requeued: " << disturbed.dump();
  }

  json calm_run() {
    const std::string calm_store = file("calm.db");
    const Result calm = run({kTrellis, "--store", calm_store, "run", spec_, "--groups", "1"},
                            file("calm.log"), 600s);
    EXPECT_EQ(calm.code, 0) << calm.output;
    return export_json(calm_store);
  }
};

// Rank 1 stopped (SIGSTOP: as good as stuck on a dead NFS mount) leaves rank 0 inside the
// gradient all-reduce while its I/O thread keeps heartbeating: never silent, so only its
// progress shows it is stuck. The coordinator must requeue its trial, and a fresh group
// must finish it as if nothing happened.
TEST_F(OneRankChaosTest, AGroupStuckInACollectiveIsDeclaredStalledAndItsTrialRequeued) {
  ASSERT_EQ(run({kTrellis, "keys", "init"}, file("keys.log"), 30s).code, 0);
  const json undisturbed = calm_run();
  ASSERT_FALSE(HasFailure());

  const std::string store = file("stuck.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  Process coordinator({kTrellis, "--store", store, "serve", spec_, "--bind", endpoint,
                       "--liveness", "2", "--stall", "8"},
                      file("serve.log"));
  auto a = group(endpoint, "a.log");
  ASSERT_TRUE(wait_until_mid_trial(coordinator, *a, 300s)) << coordinator.log();
  const pid_t rank1 = rank_pid(a->pid(), 1);
  ASSERT_GT(rank1, 0) << "no rank 1 under mpirun " << a->pid();
  ASSERT_EQ(::kill(rank1, SIGSTOP), 0);

  const auto deadline = std::chrono::steady_clock::now() + 300s;
  while (coordinator.log().find("stalled: no training progress") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(100ms);
  ASSERT_NE(coordinator.log().find("stalled: no training progress"), std::string::npos)
      << "the stuck group was never declared stalled\n" << coordinator.log();
  EXPECT_TRUE(a->running()) << "the stuck group was expected to hang, not exit\n" << a->log();
  a->kill_group(SIGKILL);  // a stopped process takes SIGKILL; the test started it, it ends it
  auto b = group(endpoint, "b.log");

  ASSERT_EQ(coordinator.wait(600s), 0) << coordinator.log();
  EXPECT_EQ(b->wait(60s), 0) << b->log();
  EXPECT_NE(coordinator.log().find("requeued: stalled"), std::string::npos) << coordinator.log();
  expect_undisturbed_results(undisturbed, export_json(store));
}

// Rank 1 killed alone: the group must end (rank 0 must not wait forever for a peer that is
// gone), its trial be requeued, and a fresh group finish it with the undisturbed metrics.
TEST_F(OneRankChaosTest, ARankKilledAloneEndsItsGroupAndItsTrialIsRequeued) {
  ASSERT_EQ(run({kTrellis, "keys", "init"}, file("keys.log"), 30s).code, 0);
  const json undisturbed = calm_run();
  ASSERT_FALSE(HasFailure());

  const std::string store = file("killed.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  Process coordinator({kTrellis, "--store", store, "serve", spec_, "--bind", endpoint,
                       "--liveness", "2"},
                      file("serve.log"));
  auto a = group(endpoint, "a.log");
  ASSERT_TRUE(wait_until_mid_trial(coordinator, *a, 300s)) << coordinator.log();
  const pid_t rank1 = rank_pid(a->pid(), 1);
  ASSERT_GT(rank1, 0) << "no rank 1 under mpirun " << a->pid();
  ASSERT_EQ(::kill(rank1, SIGKILL), 0);
  // An exit code, or 128+signal; -1 is a group still running at the deadline.
  EXPECT_GT(a->wait(120s), 0) << "the group outlived its rank 1\n" << a->log();
  auto b = group(endpoint, "b.log");

  ASSERT_EQ(coordinator.wait(600s), 0) << coordinator.log();
  EXPECT_EQ(b->wait(60s), 0) << b->log();
  EXPECT_NE(coordinator.log().find("lost"), std::string::npos) << coordinator.log();
  expect_undisturbed_results(undisturbed, export_json(store));
}

// A sweep whose decisions depend on results -- TPE proposals after its startup trials, and
// the scheduler's promotions, brackets or exploits -- with the coordinator SIGKILLed twice and
// started again on the same store. The restarted coordinator reaches its state by replaying the
// store's events and reports through the functions the live one used, so every decision, and
// every trial's metrics, equal an undisturbed run's bit for bit. What timing may change
// (attempt numbers, requeues, groups) is left out of the comparison.
struct ReplayCase {
  const char* name;
  const char* metric;     // the metric: line
  const char* search;     // under search:
  const char* scheduler;  // the scheduler: line
};

class ReplayChaosTest : public ::testing::TestWithParam<ReplayCase> {
 protected:
  void SetUp() override {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    dir_ = worker::testing::fresh_dir(std::string("replay_") + GetParam().name);
    setenv("TRELLIS_HOME", (dir_ / "keys").c_str(), 1);
    fs::create_directories(dir_ / "data");
    worker::testing::write_dataset(dir_ / "data", worker::testing::make_pattern_data(6000, 16, 1),
                                   worker::testing::make_pattern_data(600, 16, 2), /*gz=*/false);
    spec_ = (dir_ / "replay.yaml").string();
    write_text(spec_, std::string("name: replay\n") +
                          "dataset: {path: " + (dir_ / "data").string() + "}\n"
                          + GetParam().metric + "search:\n  seed: 9\n" + GetParam().search +
                          "  space:\n"
                          "    lr: {type: log_float, low: 1.0e-4, high: 1.0e-1}\n"
                          "    hidden_units: {type: int, low: 8, high: 48}\n"
                          "train: {batch_size: 64}\n" + GetParam().scheduler);
  }
  void TearDown() override {
    unsetenv("TRELLIS_HOME");
    if (!HasFailure() && !getenv("KEEP")) fs::remove_all(dir_);
  }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  json exported(const std::string& store) {
    const Result r = run({kTrellis, "--store", store, "export", "replay", "--format", "json", "-o",
                          file("export.json")},
                         file("export.log"), 60s);
    EXPECT_EQ(r.code, 0) << r.output;
    return json::parse(read_file(file("export.json")));
  }
  // The decisions, in order, without what timing may change.
  static json decisions(const json& doc) {
    json out = json::array();
    for (const json& e : doc["events"]) {
      const std::string kind = e["kind"];
      if (kind != "trial_proposed" && kind != "trial_promoted" && kind != "trial_exploited" &&
          kind != "trial_paused" && kind != "trial_ended" && kind != "trial_stopped")
        continue;
      json data = e["data"];
      data.erase("attempt");
      out.push_back({{"kind", kind}, {"trial", e["trial"]}, {"data", data}});
    }
    return out;
  }
  fs::path dir_;
  std::string spec_;
};

constexpr const char* kValLoss = "metric: {name: val_loss, mode: min}\n";

// Every trial of `got` has the state, parameters, learning curves and final metrics of the
// same trial in `want` (timing aside: samples_per_s and epoch_s are not compared).
void expect_same_trials(const json& got, const json& want) {
  ASSERT_EQ(got["trials"].size(), want["trials"].size());
  for (std::size_t i = 0; i < want["trials"].size(); ++i) {
    const json& t = got["trials"][i];
    const json& w = want["trials"][i];
    EXPECT_EQ(t["state"], w["state"]) << "trial " << i;
    EXPECT_EQ(t["params"], w["params"]) << "trial " << i;
    for (const char* name : {"train_loss", "val_loss", "val_acc"})
      EXPECT_EQ(t["metrics"][name], w["metrics"][name]) << "trial " << i << " " << name;
    EXPECT_EQ(t["final"], w["final"]) << "trial " << i;
  }
}

// The files of a store's model shelf (STORE.models/EXPERIMENT), by name, with their bytes.
std::map<std::string, std::string> shelf_of(const std::string& store) {
  std::map<std::string, std::string> files;
  const fs::path dir = store + ".models";
  if (!fs::is_directory(dir)) return files;
  for (const auto& f : fs::recursive_directory_iterator(dir))
    if (f.is_regular_file())
      files[fs::relative(f.path(), dir).string()] = read_file(f.path().string());
  return files;
}

// How many trials the coordinator has started (attempts included) in `log`.
int starts(const std::string& log) {
  static const std::regex kStart(R"(trial \d+ \(attempt \d+)");
  return static_cast<int>(std::distance(std::sregex_iterator(log.begin(), log.end(), kStart),
                                        std::sregex_iterator()));
}

TEST_P(ReplayChaosTest, TwoCoordinatorKillsChangeNoDecisionAndNoMetric) {
  ASSERT_EQ(run({kTrellis, "keys", "init"}, file("keys.log"), 30s).code, 0);
  const Result calm = run({kTrellis, "--store", file("calm.db"), "run", spec_, "--groups", "1"},
                          file("calm.log"), 600s);
  ASSERT_EQ(calm.code, 0) << calm.output;
  const json undisturbed = exported(file("calm.db"));
  const int total_starts = starts(calm.output);
  ASSERT_GE(total_starts, 6) << calm.output;

  const std::string store = file("killed.db");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  const std::vector<std::string> serve = {kTrellis, "--store", store, "serve", spec_,
                                          "--bind", endpoint, "--liveness", "2"};
  Process group({"mpirun", "-np", "1", "--bind-to", "none", kWorker, "--connect", endpoint,
                 "--heartbeat", "0.3", "--liveness", "2", "--timeout", "120"},
                file("group.log"));
  // Killed once a third of the way through, and again two thirds in.
  int started_before = 0;
  for (int kill = 1; kill <= 2; ++kill) {
    Process coordinator(serve, file("serve" + std::to_string(kill) + ".log"));
    const int target = total_starts * kill / 3;
    const auto deadline = std::chrono::steady_clock::now() + 300s;
    while (started_before + starts(coordinator.log()) < target &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(coordinator.running()) << coordinator.log();
    coordinator.kill_group(SIGKILL);
    started_before += starts(coordinator.log());
  }
  Process last(serve, file("serve3.log"));
  ASSERT_EQ(last.wait(600s), 0) << last.log();
  EXPECT_EQ(group.wait(60s), 0) << group.log();

  const json disturbed = exported(store);
  EXPECT_EQ(disturbed["experiment"]["state"], "completed");
  const json want = decisions(undisturbed);
  const json got = decisions(disturbed);
  ASSERT_EQ(got.size(), want.size()) << got.dump(1) << "\nwanted\n" << want.dump(1);
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "decision " << i;
  expect_same_trials(disturbed, undisturbed);
  // The best trials' models too, byte for byte, and no other (index.json included).
  const std::map<std::string, std::string> shelf = shelf_of(store);
  const std::map<std::string, std::string> calm_shelf = shelf_of(file("calm.db"));
  EXPECT_GE(calm_shelf.size(), 2u) << "no model was kept";
  ASSERT_EQ(shelf.size(), calm_shelf.size());
  for (const auto& [name, bytes] : calm_shelf) {
    ASSERT_EQ(shelf.count(name), 1u) << name;
    EXPECT_TRUE(shelf.at(name) == bytes) << name << " differs";
  }
}

INSTANTIATE_TEST_SUITE_P(
    ResultDependentSweeps, ReplayChaosTest,
    ::testing::Values(
        ReplayCase{"TpeAsha", kValLoss, "  algorithm: tpe\n  trials: 16\n",
                   "scheduler: {type: asha, min_epochs: 1, reduction_factor: 3, max_epochs: 3}\n"},
        ReplayCase{"TpeHyperband", kValLoss, "  algorithm: tpe\n  trials: 16\n",
                   "scheduler: {type: hyperband, min_epochs: 1, reduction_factor: 3, "
                   "max_epochs: 9}\n"},
        ReplayCase{"Pbt", kValLoss, "  trials: 6\n",
                   "scheduler: {type: pbt, interval: 1, quantile: 0.34, max_epochs: 4}\n"},
        // A metric only the end of a trial reports: TPE's observations come from Done alone,
        // which a replay of the per-epoch series once missed, so proposals after its startup
        // trials were random draws again.
        ReplayCase{"TpeOnTheTestMetric", "metric: {name: test_acc, mode: max}\n",
                   "  algorithm: tpe\n  trials: 14\n", ""}),
    [](const ::testing::TestParamInfo<ReplayCase>& info) { return std::string(info.param.name); });

// Same spec and seed, same trials, when groups run in parallel: a TPE sweep run by two groups,
// once undisturbed and once with one group slowed (its rank stopped and continued over and
// over, so results come in another order), proposes the same parameters for every trial and
// every trial learns the same curve. Nothing in the worker knows it is being slowed.
TEST(ParallelDeterminismTest, ASlowedGroupChangesNoTrialAndNoMetric) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const fs::path dir = worker::testing::fresh_dir("parallel");
  setenv("TRELLIS_HOME", (dir / "keys").c_str(), 1);
  fs::create_directories(dir / "data");
  worker::testing::write_dataset(dir / "data", worker::testing::make_pattern_data(6000, 16, 1),
                                 worker::testing::make_pattern_data(600, 16, 2), /*gz=*/false);
  const std::string spec = (dir / "p.yaml").string();
  write_text(spec, "name: parallel\ndataset: {path: " + (dir / "data").string() + "}\n"
                   "metric: {name: val_loss, mode: min}\n"
                   "search:\n  algorithm: tpe\n  seed: 4\n  trials: 18\n  space:\n"
                   "    lr: {type: log_float, low: 1.0e-4, high: 1.0e-1}\n"
                   "    hidden_units: {type: int, low: 8, high: 48}\n"
                   "train: {batch_size: 64, epochs: 2}\n");
  const auto file = [&](const std::string& name) { return (dir / name).string(); };
  const auto exported = [&](const std::string& store) {
    const Result r = run({kTrellis, "--store", store, "export", "parallel", "--format", "json",
                          "-o", file("export.json")},
                         file("export.log"), 60s);
    EXPECT_EQ(r.code, 0) << r.output;
    return json::parse(read_file(file("export.json")));
  };
  ASSERT_EQ(run({kTrellis, "keys", "init"}, file("keys.log"), 30s).code, 0);
  const Result calm = run({kTrellis, "--store", file("calm.db"), "run", spec, "--groups", "2"},
                          file("calm.log"), 600s);
  ASSERT_EQ(calm.code, 0) << calm.output;

  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  Process coordinator({kTrellis, "--store", file("slowed.db"), "serve", spec, "--bind", endpoint,
                       "--liveness", "60"},
                      file("serve.log"));
  // Each group on its own core, as `trellis run --groups 2` places them: a GEMM split over
  // another number of threads rounds differently (README, "What else is reproduced").
  const auto group = [&](const std::string& log, const char* slot) {
    return std::make_unique<Process>(
        std::vector<std::string>{"mpirun", "-np", "1", "--bind-to", "none", kWorker, "--connect",
                                 endpoint, "--liveness", "60", "--cpu-slot", slot},
        file(log));
  };
  // The slowed group joins first, so it surely runs a trial before the other finishes them all.
  auto slow = group("slow.log", "0/2");
  pid_t slow_rank = -1;
  for (int i = 0; i < 200 && slow_rank < 0; ++i) {
    slow_rank = rank_pid(slow->pid(), 0);
    if (slow_rank < 0) std::this_thread::sleep_for(50ms);
  }
  ASSERT_GT(slow_rank, 0) << slow->log();
  ASSERT_TRUE(wait_for(coordinator, ":" + std::to_string(slow_rank) + "' joined", 60s))
      << coordinator.log() << slow->log();
  auto fast = group("fast.log", "1/2");
  std::atomic<bool> throttling{true};
  std::thread throttle([&] {
    while (throttling) {
      ::kill(slow_rank, SIGSTOP);
      std::this_thread::sleep_for(150ms);
      ::kill(slow_rank, SIGCONT);
      std::this_thread::sleep_for(50ms);
    }
  });
  const int code = coordinator.wait(600s);
  throttling = false;
  throttle.join();
  ::kill(slow_rank, SIGCONT);
  ASSERT_EQ(code, 0) << coordinator.log();
  EXPECT_EQ(fast->wait(60s), 0) << fast->log();
  EXPECT_EQ(slow->wait(60s), 0) << slow->log();

  const json want = exported(file("calm.db"));
  const json got = exported(file("slowed.db"));
  // Both groups ran trials, the slowed one fewer, so results did come in another order.
  std::map<std::string, int> ran_by;
  for (const json& t : got["trials"]) ++ran_by[t["group"].get<std::string>()];
  EXPECT_EQ(ran_by.size(), 2u) << got["trials"].dump(1);
  expect_same_trials(got, want);
  unsetenv("TRELLIS_HOME");
  if (!::testing::Test::HasFailure() && !getenv("KEEP")) fs::remove_all(dir);
}

// A coordinator killed after it stored an Assign but before the frame left. The group is a
// test client, so the Assign is "lost" for certain.
class OrphanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = worker::testing::fresh_dir("orphan");
    fs::create_directories(dir_ / "data");
    worker::testing::write_dataset(dir_ / "data", worker::testing::make_pattern_data(600, 8, 1),
                                   worker::testing::make_pattern_data(200, 8, 2), /*gz=*/false);
    const std::string spec = (dir_ / "o.yaml").string();
    write_text(spec, "name: o\ndataset: {path: " + (dir_ / "data").string() + "}\n"
                     "search: {seed: 3, trials: 3}\ntrain: {epochs: 1, batch_size: 32}\n");
    const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
    serve_ = {kTrellis, "--store", (dir_ / "o.db").string(), "serve", spec, "--bind", endpoint,
              "--insecure", "--liveness", "30"};
    group_ = std::make_unique<RawClient>(context_, endpoint, "group-a");
    idle_.group = "group-a";
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string log(const std::string& name) const { return (dir_ / name).string(); }

  // The restarted coordinator gives the group `lost` again: same trial, a later attempt.
  void expect_given_again(const Assign& lost, const std::optional<Assign>& again,
                          const Process& restarted) {
    ASSERT_TRUE(again.has_value()) << restarted.log();
    EXPECT_EQ(again->trial, lost.trial) << restarted.log();
    EXPECT_EQ(again->number, lost.number);
    EXPECT_GT(again->attempt, lost.attempt);
    EXPECT_EQ(again->params, lost.params);
    EXPECT_NE(restarted.log().find("the assignment never reached the group"), std::string::npos)
        << restarted.log();
  }

  fs::path dir_;
  std::vector<std::string> serve_;
  zmq::context_t context_;
  std::unique_ptr<RawClient> group_;
  Hello idle_;  // names no trial
};

// Its group, idle, comes back to the restarted coordinator naming no trial. That trial must be
// the group's next one (as in a run without the restart), not wait out the orphans' deadline
// while newer work goes first.
TEST_F(OrphanTest, AnAssignThatNeverArrivedIsTheGroupsNextTrialAfterARestart) {
  Assign first;
  {
    Process killed(serve_, log("serve1.log"));
    group_->send(idle_);
    const auto assign = group_->receive<Assign>(30000ms);
    ASSERT_TRUE(assign.has_value()) << killed.log();
    first = *assign;
    killed.kill_group(SIGKILL);
  }
  Process restarted(serve_, log("serve2.log"));
  ASSERT_TRUE(wait_for(restarted, "listening", 30s)) << restarted.log();
  group_->send(idle_);
  expect_given_again(first, group_->receive<Assign>(30000ms), restarted);
  restarted.kill_group(SIGKILL);
}

// The Assign that was lost followed the Ack of the group's last Done, lost with it: the group
// comes back still naming its finished trial and sends that Done again. Once that is settled,
// the lost trial is the group's next one (a chaos run once gave it a new trial instead, and
// the sweep's order, and so ASHA's promotions, differed from the undisturbed run).
TEST_F(OrphanTest, AnAssignLostAfterAnUnackedDoneIsTheGroupsNextTrialAfterARestart) {
  Assign first, second;
  {
    Process killed(serve_, log("serve1.log"));
    group_->send(idle_);
    const auto assign = group_->receive<Assign>(30000ms);
    ASSERT_TRUE(assign.has_value()) << killed.log();
    first = *assign;
    group_->send(Done{first.trial, first.attempt, true, "", {{"val_acc", 0.5}}});
    const auto next = group_->receive<Assign>(30000ms);
    ASSERT_TRUE(next.has_value()) << killed.log();
    second = *next;
    ASSERT_NE(second.trial, first.trial);
    killed.kill_group(SIGKILL);
  }
  Process restarted(serve_, log("serve2.log"));
  ASSERT_TRUE(wait_for(restarted, "listening", 30s)) << restarted.log();
  Hello still_running = idle_;
  still_running.trial = first.trial;
  still_running.attempt = first.attempt;
  group_->send(still_running);
  ASSERT_TRUE(group_->receive<Stop>(30000ms).has_value()) << restarted.log();
  group_->send(Done{first.trial, first.attempt, true, "", {{"val_acc", 0.5}}});
  expect_given_again(second, group_->receive<Assign>(30000ms), restarted);
  restarted.kill_group(SIGKILL);
}

}  // namespace
}  // namespace trellis::testing
