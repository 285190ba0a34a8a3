// The cluster path on a real Slurm cluster: one controller and two compute nodes, each in its
// own network namespace (tests/slurm/cluster, started by ctest's slurm_cluster fixture). Slurm
// commands run in the controller's namespace, as from a login node; the nodes reach each other
// and the coordinator only over TCP on the bridge.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "common/checkpoint_path.h"
#include "tests/integration/binaries.h"
#include "tests/integration/process.h"
#include "worker/checkpoint.h"
#include "tests/worker/idx_fixture.h"

namespace trellis::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

const std::string kSweepTemplate = TRELLIS_SOURCE_DIR "/deploy/slurm/sweep.sbatch";

// The running test cluster: its environment (DIR/env) and how to run a command as from its
// login node.
class Cluster {
 public:
  // Empty `why` when the cluster is up; else why it is not.
  static Cluster* Get(std::string* why) {
    static Cluster* cluster = nullptr;
    static std::string reason;
    if (cluster == nullptr && reason.empty()) {
      const char* dir = std::getenv("TRELLIS_SLURM_DIR");
      if (dir == nullptr) {
        reason = "TRELLIS_SLURM_DIR is not set (run through ctest, which starts the cluster)";
      } else if (!fs::exists(fs::path(dir) / "env")) {
        const fs::path unavailable = fs::path(dir) / "unavailable";
        reason = fs::exists(unavailable) ? read_file(unavailable.string())
                                         : "the test cluster in " + std::string(dir) + " is not up";
      } else {
        cluster = new Cluster(dir);
      }
    }
    *why = reason;
    return cluster;
  }

  // `argv` in the controller's namespace with the cluster's environment.
  std::vector<std::string> login(const std::vector<std::string>& argv) const {
    std::vector<std::string> out = {"env"};
    out.insert(out.end(), env_.begin(), env_.end());
    out.insert(out.end(), {"nsenter", "--net=/run/netns/" + ctl_, "--"});
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }
  const std::string& dir() const { return dir_; }
  // The network namespace of node i (0: n1, 1: n2).
  const std::string& node_netns(int i) const { return nodes_.at(i); }

 private:
  explicit Cluster(std::string dir) : dir_(std::move(dir)) {
    std::istringstream in(read_file(dir_ + "/env"));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("export ", 0) != 0) continue;
      const std::string assignment = line.substr(7);
      const std::string name = assignment.substr(0, assignment.find('='));
      std::string value = assignment.substr(name.size() + 1);
      if (value.size() >= 2 && value.front() == '"') value = value.substr(1, value.size() - 2);
      env_.push_back(name + "=" + value);
      if (name == "TRELLIS_SLURM_NETNS_CTL") ctl_ = value;
      if (name == "TRELLIS_SLURM_NETNS_NODES") {
        std::istringstream names(value);
        for (std::string n; names >> n;) nodes_.push_back(n);
      }
    }
  }
  std::string dir_;
  std::string ctl_;
  std::vector<std::string> nodes_;
  std::vector<std::string> env_;  // K=V
};

class SlurmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    cluster_ = Cluster::Get(&why);
    if (cluster_ == nullptr) GTEST_SKIP() << "no Slurm test cluster: " << why;
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    dir_ = worker::testing::fresh_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override {
    if (cluster_ != nullptr && !HasFailure() && !std::getenv("KEEP")) fs::remove_all(dir_);
  }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  Result login(const std::vector<std::string>& argv, const std::string& log,
               std::chrono::seconds timeout = 60s) {
    return run(cluster_->login(argv), file(log), timeout);
  }
  // Submits `argv` (sbatch and its arguments), returns the job id (or -1).
  long submit(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"sbatch", "--parsable", "--chdir=" + dir_.string()});
    const Result r = login(argv, "sbatch.log");
    EXPECT_EQ(r.code, 0) << r.output;
    return r.code == 0 ? std::atol(r.output.c_str()) : -1;
  }
  // The job's state once it has left the queue's live states (COMPLETED, FAILED, ...), polled
  // (sbatch --wait polls with backoff; this is quicker), or "" after `timeout`.
  std::string wait_job(long job, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    static const std::regex kState(R"(JobState=(\S+))");
    for (bool first = true; first || std::chrono::steady_clock::now() < deadline; first = false) {
      const Result r =
          login({"scontrol", "-o", "show", "job", std::to_string(job)}, "scontrol.log");
      std::smatch m;
      if (r.code == 0 && std::regex_search(r.output, m, kState)) {
        const std::string state = m[1];
        if (state != "PENDING" && state != "RUNNING" && state != "CONFIGURING" &&
            state != "COMPLETING" && state != "REQUEUED" && state != "SUSPENDED")
          return state;
      }
      if (timeout > 0s) std::this_thread::sleep_for(250ms);
    }
    return "";
  }
  // Jobs still queued or running in the cluster.
  std::string live_jobs() {
    const Result r = login({"squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING", "-o", "%i %j %T"},
                           "squeue.log");
    EXPECT_EQ(r.code, 0) << r.output;
    return r.output;
  }
  json exported(const std::string& store, const std::string& experiment) {
    const Result r = run({kTrellis, "--store", store, "export", experiment, "--format", "json",
                          "-o", file("export.json")},
                         file("export.log"), 60s);
    EXPECT_EQ(r.code, 0) << r.output;
    return json::parse(read_file(file("export.json")));
  }
  void write_data(std::int64_t rows = 4000) {
    fs::create_directories(dir_ / "data");
    worker::testing::write_dataset(dir_ / "data", worker::testing::make_pattern_data(rows, 16, 1),
                                   worker::testing::make_pattern_data(400, 16, 2), /*gz=*/false);
  }

  Cluster* cluster_ = nullptr;
  fs::path dir_;
};

TEST_F(SlurmTest, TheTwoNodesRunOneStepWithTheirOwnHostnames) {
  const Result r = login({"srun", "--nodes=2", "--ntasks-per-node=1", "hostname"}, "srun.log");
  ASSERT_EQ(r.code, 0) << r.output;
  std::multiset<std::string> hosts;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) hosts.insert(line);
  EXPECT_EQ(hosts, (std::multiset<std::string>{"n1", "n2"})) << r.output;
}

// Same trials, same metrics: random search and FIFO, so no decision depends on a metric. The
// groups on the cluster run with the cores srun binds them to, the local ones with their
// --cpu-slot share: thread counts may differ, OpenBLAS then sums in another order, so metrics
// agree to a relative 1e-6, not bit for bit (README, "What else is reproduced").
TEST_F(SlurmTest, ASweepFromTheSbatchTemplateAcrossBothNodesEqualsTheSameSpecRunOnOneNode) {
  write_data();
  const std::string spec = file("sweep.yaml");
  write_text(spec, "name: cluster\ndataset: {path: " + (dir_ / "data").string() + "}\n"
                   "metric: {name: val_loss, mode: min}\n"
                   "search:\n  algorithm: random\n  seed: 5\n  trials: 4\n  space:\n"
                   "    lr: {type: log_float, low: 1.0e-3, high: 1.0e-1}\n"
                   "    hidden_units: {type: int, low: 8, high: 32}\n"
                   "train: {batch_size: 64, epochs: 2}\n");
  setenv("TRELLIS_HOME", file("keys").c_str(), 1);
  const Result local = run({kTrellis, "--store", file("local.db"), "run", spec, "--groups", "2",
                            "--launcher", "mpirun"},
                           file("local.log"), 300s);
  ASSERT_EQ(local.code, 0) << local.output;

  const long job = submit({"--nodes=2", "--ntasks-per-node=1", "--export=ALL,TRELLIS_BIN=" TRELLIS_BIN_DIR,
                           kSweepTemplate, spec, "--store", file("cluster.db")});
  ASSERT_GT(job, 0);
  const std::string state = wait_job(job, 300s);
  const std::string log = read_file(file("trellis-sweep-" + std::to_string(job) + ".log"));
  ASSERT_EQ(state, "COMPLETED") << log;
  EXPECT_NE(log.find("inside Slurm job " + std::to_string(job) + " (2 node(s)): 2 group(s)"),
            std::string::npos)
      << log;
  EXPECT_EQ(live_jobs(), "");

  const json want = exported(file("local.db"), "cluster");
  const json got = exported(file("cluster.db"), "cluster");
  std::set<std::string> hosts;
  ASSERT_EQ(got["trials"].size(), want["trials"].size());
  for (std::size_t i = 0; i < want["trials"].size(); ++i) {
    const json& t = got["trials"][i];
    const json& w = want["trials"][i];
    EXPECT_EQ(t["state"], "completed") << i;
    EXPECT_EQ(t["params"], w["params"]) << i;
    const std::string group = t["group"];
    hosts.insert(group.substr(0, group.find(':')));
    for (const char* name : {"train_loss", "val_loss", "val_acc"}) {
      ASSERT_EQ(w["metrics"][name].size(), 2u) << i << " " << name;  // both epochs
      ASSERT_EQ(t["metrics"][name].size(), 2u) << i << " " << name;
      for (std::size_t e = 0; e < w["metrics"][name].size(); ++e) {
        const double a = t["metrics"][name][e][1], b = w["metrics"][name][e][1];
        EXPECT_LE(std::abs(a - b), 1e-6 * std::max(1.0, std::abs(b)))
            << "trial " << i << " " << name << " epoch " << e + 1;
      }
    }
  }
  EXPECT_EQ(hosts, (std::set<std::string>{"n1", "n2"})) << got["trials"].dump(1);
  unsetenv("TRELLIS_HOME");
}

// The weights of trial 0's checkpoint after `epoch` in the checkpoint directory beside `store`.
std::vector<float> final_weights(const fs::path& store, const std::string& experiment,
                                 int epoch) {
  const std::string base =
      (store.parent_path() / "checkpoints" / experiment / "trial-0.ckpt").string();
  worker::Checkpoint c;
  const Status s = worker::read_checkpoint(checkpoint_file(base, epoch), &c);
  EXPECT_TRUE(s.ok()) << s.message();
  const std::vector<float>* params = c.find("params");
  return params == nullptr ? std::vector<float>{} : *params;
}

// Whether a trellis-worker in node namespace `ns` holds an established TCP connection to
// another node's address (MPI between the ranks: the coordinator is reached from rank 0 only).
bool worker_talks_tcp_to_another_node(const std::string& ns, const std::string& own_address,
                                      const std::string& log) {
  const Result r = run({"nsenter", "--net=/run/netns/" + ns, "--", "ss", "-tnpH", "state",
                        "established"},
                       log, 10s);
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    if (line.find("trellis-worker") == std::string::npos) continue;
    std::istringstream fields(line);
    std::string recv_q, send_q, local, peer;
    fields >> recv_q >> send_q >> local >> peer;
    if (local.rfind(own_address + ":", 0) == 0 && peer.rfind("10.213.0.", 0) == 0 &&
        peer.rfind(own_address + ":", 0) != 0)
      return true;
  }
  return false;
}

// A trial of 4 ranks as one group on both nodes, 2 + 2 (oversubscribed: a correctness test, not
// a speed one). allreduce auto picks the hierarchical algorithm there, the ranks talk TCP across
// the nodes, and the trial ends with a 1-rank run's weights within the multi-rank tests'
// tolerance (relative L2 1e-5), trained as they train (Adam, lr 1e-2, batch 64): a larger lr
// amplifies the rounding of another summation order further (3e-5 at lr 0.03 on an EPYC).
TEST_F(SlurmTest, AFourRankGroupSpanningBothNodesEndsWithTheOneRankWeights) {
  write_data();
  const auto spec_with = [&](const std::string& name, int ranks) {
    const std::string spec = file(name + ".yaml");
    write_text(spec, "name: " + name + "\ndataset: {path: " + (dir_ / "data").string() + "}\n"
                     "metric: {name: val_loss, mode: min}\n"
                     "search:\n  algorithm: random\n  seed: 2\n  trials: 1\n  space:\n"
                     "    lr: {type: categorical, values: [0.01]}\n"
                     "train: {batch_size: 64, epochs: 2, hidden_units: 24, optimizer: adam}\n"
                     "resources: {ranks_per_trial: " + std::to_string(ranks) + "}\n");
    return spec;
  };
  setenv("TRELLIS_HOME", file("keys").c_str(), 1);
  fs::create_directories(dir_ / "one");
  const Result one = run({kTrellis, "--store", file("one/one.db"), "run", spec_with("one", 1),
                          "--groups", "1", "--launcher", "mpirun"},
                         file("one.log"), 300s);
  ASSERT_EQ(one.code, 0) << one.output;

  fs::create_directories(dir_ / "four");
  const long job = submit({"--nodes=2", "--ntasks-per-node=2",
                           "--export=ALL,TRELLIS_BIN=" TRELLIS_BIN_DIR, kSweepTemplate,
                           spec_with("four", 4), "--store", file("four/four.db")});
  ASSERT_GT(job, 0);
  bool tcp_between_nodes = false;
  std::string state;
  const auto deadline = std::chrono::steady_clock::now() + 300s;
  while (state.empty() && std::chrono::steady_clock::now() < deadline) {
    if (!tcp_between_nodes)
      tcp_between_nodes = worker_talks_tcp_to_another_node(cluster_->node_netns(1), "10.213.0.12",
                                                           file("ss.log"));
    state = wait_job(job, 0s);
  }
  const std::string log = read_file(file("trellis-sweep-" + std::to_string(job) + ".log"));
  ASSERT_EQ(state, "COMPLETED") << log;
  EXPECT_NE(log.find("1 group(s) of 4 rank(s) on 2 node(s) each"), std::string::npos) << log;
  EXPECT_NE(log.find("of 4 rank(s) on 2 node(s) connecting to"), std::string::npos) << log;
  EXPECT_NE(log.find("allreduce auto is hierarchical here"), std::string::npos) << log;
  EXPECT_TRUE(tcp_between_nodes) << "no trellis-worker on n2 was seen with a TCP connection to n1";
  EXPECT_EQ(live_jobs(), "");
  // srun bound each rank (task/affinity) and the worker kept that binding: on each node, two
  // ranks on different PUs.
  std::map<std::string, std::set<std::string>> pus_by_node;
  static const std::regex kRank(R"((n[12]) rank \d/4 \(node rank \d/2\): [^\n]*; PUs (\S+) by the launcher)");
  for (auto m = std::sregex_iterator(log.begin(), log.end(), kRank); m != std::sregex_iterator(); ++m)
    pus_by_node[(*m)[1]].insert((*m)[2]);
  EXPECT_EQ(pus_by_node["n1"].size(), 2u) << log;
  EXPECT_EQ(pus_by_node["n2"].size(), 2u) << log;

  const std::vector<float> want = final_weights(file("one/one.db"), "one", 2);
  const std::vector<float> got = final_weights(file("four/four.db"), "four", 2);
  ASSERT_EQ(got.size(), want.size());
  ASSERT_FALSE(want.empty());
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  EXPECT_LE(std::sqrt(diff / norm), 1e-5);
  EXPECT_GT(diff, 0.0) << "4 ranks summed in another order yet matched to the bit: was it one rank?";
  unsetenv("TRELLIS_HOME");
}

// `trellis submit` as from the login node (the controller's namespace): the coordinator
// detached there, the groups a job array on the nodes, reaching it over the bridge.
class SubmitTest : public SlurmTest {
 protected:
  void TearDown() override {
    // A coordinator a failed test left behind is stopped by its pid, its jobs cancelled.
    if (cluster_ != nullptr) {
      std::ifstream in(file("trellis-" + experiment_ + ".submit.json"));
      const json record = json::parse(in, nullptr, false);
      if (record.is_object()) {
        const int pid = record.value("coordinator_pid", 0);
        if (pid > 0 && ::kill(pid, 0) == 0) ::kill(pid, SIGKILL);
        for (const json& id : record.value("jobs", json::array()))
          login({"scancel", id.get<std::string>()}, "scancel.log");
      }
    }
    SlurmTest::TearDown();
  }
  // A random-search spec of `trials` over lr, on write_data()'s data.
  std::string write_spec(int trials, const std::string& scheduler,
                         const std::string& train = "{batch_size: 64, epochs: 4, hidden_units: 16}") {
    const std::string spec = file("submit.yaml");
    write_text(spec, "name: " + experiment_ + "\ndataset: {path: " + (dir_ / "data").string() +
                         "}\nmetric: {name: val_loss, mode: min}\n"
                         "search:\n  algorithm: random\n  seed: 8\n  trials: " +
                         std::to_string(trials) + "\n  space:\n"
                         "    lr: {type: log_float, low: 1.0e-3, high: 1.0e-1}\n"
                         "train: " + train + "\n" + scheduler);
    return spec;
  }
  Result submit_sweep(const std::string& spec, std::vector<std::string> extra) {
    std::vector<std::string> argv = {kTrellis, "--store", file("submit.db"), "submit", spec,
                                     "--advertise", "10.213.0.1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return login(argv, "submit.log");
  }
  json record() {
    std::ifstream in(file("trellis-" + experiment_ + ".submit.json"));
    return json::parse(in, nullptr, false);
  }
  static bool alive(int pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind("State:", 0) == 0) return line.find('Z') == std::string::npos;
    return false;
  }
  // Whether the file at `path` comes to hold `text` within `timeout`.
  static bool log_shows(const std::string& path, const std::string& text,
                        std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (read_file(path).find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(50ms);
    }
    return true;
  }
  std::string experiment_ = "submitted";
};

TEST_F(SubmitTest, ASubmittedAshaSweepCompletesAndLeavesNoJobBehind) {
  write_data();
  setenv("TRELLIS_HOME", file("keys").c_str(), 1);
  const std::string spec =
      write_spec(6, "scheduler: {type: asha, min_epochs: 1, reduction_factor: 2}\n"
                    "resources: {ranks_per_trial: 2}\n");
  const Result submitted = submit_sweep(spec, {"--groups", "2", "--time", "00:10:00"});
  ASSERT_EQ(submitted.code, 0) << submitted.output;
  EXPECT_NE(submitted.output.find("Submitted worker job array"), std::string::npos)
      << submitted.output;
  const json r = record();
  ASSERT_TRUE(r.is_object()) << submitted.output;
  const int pid = r.value("coordinator_pid", 0);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(r["jobs"].size(), 1u);
  const std::string job = r["jobs"][0];
  // submit returned at once; the coordinator runs on without it until the sweep ends.
  const auto deadline = std::chrono::steady_clock::now() + 300s;
  while (alive(pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(250ms);
  const std::string log = read_file(file("trellis-" + experiment_ + ".log"));
  ASSERT_FALSE(alive(pid)) << log;
  EXPECT_NE(log.find("sweep '" + experiment_ + "' finished: 6 trials"), std::string::npos) << log;
  // Both groups joined, one per array task.
  EXPECT_TRUE(fs::exists(file("trellis-" + experiment_ + "-" + job + "_0.log")));
  EXPECT_TRUE(fs::exists(file("trellis-" + experiment_ + "-" + job + "_1.log")));
  // Each array task's srun bound its two ranks apart (the template's --cpu-bind; without it
  // both inherit the batch script's mask), as the joins show.
  static const std::regex kBound(
      R"(joined: 2 rank\(s\) on \S+ \[[^\n]*; PUs (\S+) by the launcher[^\n]*\n[^\n]*; PUs (\S+) by the launcher)");
  int bound_groups = 0;
  for (auto m = std::sregex_iterator(log.begin(), log.end(), kBound); m != std::sregex_iterator();
       ++m, ++bound_groups)
    EXPECT_NE((*m)[1], (*m)[2]) << m->str();
  EXPECT_EQ(bound_groups, 2) << log;
  std::set<std::string> groups;
  const json doc = exported(file("submit.db"), experiment_);
  ASSERT_EQ(doc["trials"].size(), 6u);
  for (const json& t : doc["trials"]) {
    const std::string state = t["state"];
    EXPECT_TRUE(state == "completed" || state == "pruned") << t.dump();
    groups.insert(t["group"].get<std::string>());
  }
  EXPECT_EQ(groups.size(), 2u) << doc["trials"].dump(1);
  // Nothing of the array is left queued or running.
  for (int i = 0; i < 40 && !live_jobs().empty(); ++i) std::this_thread::sleep_for(250ms);
  EXPECT_EQ(live_jobs(), "");
  const Result status = login({kTrellis, "--store", file("submit.db"), "status", experiment_},
                              "status.log");
  EXPECT_EQ(status.code, 0) << status.output;
  EXPECT_NE(status.output.find("completed, 6 trial(s)"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("not running"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("none queued or running"), std::string::npos) << status.output;
  unsetenv("TRELLIS_HOME");
}

TEST_F(SubmitTest, AnUnknownPartitionIsNamedAndLeavesNoCoordinatorRunning) {
  write_data();
  setenv("TRELLIS_HOME", file("keys").c_str(), 1);
  const Result submitted =
      submit_sweep(write_spec(2, ""), {"--groups", "1", "--partition", "nosuchpartition"});
  EXPECT_NE(submitted.code, 0);
  EXPECT_NE(submitted.output.find("sbatch refused the worker jobs"), std::string::npos)
      << submitted.output;
  EXPECT_NE(submitted.output.find("nosuchpartition"), std::string::npos) << submitted.output;
  EXPECT_NE(submitted.output.find("the store keeps the experiment"), std::string::npos)
      << submitted.output;
  EXPECT_FALSE(record().is_object()) << "no submission may be recorded";
  // The experiment is in the store, and submitting again (to the real partition) serves it.
  const Result again = submit_sweep(write_spec(2, ""), {"--groups", "1"});
  ASSERT_EQ(again.code, 0) << again.output;
  const int pid = record().value("coordinator_pid", 0);
  const auto deadline = std::chrono::steady_clock::now() + 300s;
  while (alive(pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(250ms);
  EXPECT_NE(read_file(file("trellis-" + experiment_ + ".log")).find("resuming experiment"),
            std::string::npos);
  unsetenv("TRELLIS_HOME");
}

TEST_F(SubmitTest, WithoutSbatchOnPathSubmitSaysSoAndStartsNothing) {
  write_data();
  const Result r = login({"env", "PATH=/nonexistent", kTrellis, "--store", file("submit.db"),
                          "submit", write_spec(2, ""), "--groups", "1"},
                         "nosbatch.log");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("trellis submit needs Slurm's sbatch"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not on PATH"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(file("submit.db"))) << "nothing may be started before sbatch is found";
  EXPECT_FALSE(record().is_object());
}

// `scontrol requeue` of the worker job mid-trial: the batch shell's SIGTERM reaches the group,
// which checkpoints mid-epoch, reports and leaves; Slurm requeues the job, and the trial
// resumes from that checkpoint in it, ending with the undisturbed run's metrics, every epoch
// stored once.
TEST_F(SubmitTest, ARequeuedWorkerJobResumesItsTrialFromTheCheckpoint) {
  setenv("TRELLIS_HOME", file("keys").c_str(), 1);
  write_data(16000);
  const std::string spec = write_spec(1, "", "{batch_size: 32, epochs: 12, hidden_units: 32}");
  fs::create_directories(dir_ / "calm");
  const Result calm = run({kTrellis, "--store", file("calm/calm.db"), "run", spec, "--groups",
                           "1", "--launcher", "mpirun"},
                          file("calm.log"), 300s);
  ASSERT_EQ(calm.code, 0) << calm.output;

  const Result submitted =
      login({kTrellis, "--store", file("submit.db"), "--log-level", "debug", "submit", spec,
             "--advertise", "10.213.0.1", "--groups", "1"},
            "submit.log");
  ASSERT_EQ(submitted.code, 0) << submitted.output;
  const json r = record();
  const int pid = r.value("coordinator_pid", 0);
  ASSERT_GT(pid, 0);
  const std::string task = r["jobs"][0].get<std::string>() + "_0";
  const std::string log_path = file("trellis-" + experiment_ + ".log");
  ASSERT_TRUE(log_shows(log_path, "trial 0 epoch 3:", 120s)) << read_file(log_path);
  const Result requeue = login({"scontrol", "requeue", task}, "requeue.log");
  ASSERT_EQ(requeue.code, 0) << requeue.output;
  // A requeued job waits ~120 s to be eligible again; make it eligible now.
  auto deadline = std::chrono::steady_clock::now() + 60s;
  bool restarted = false;
  while (!restarted && std::chrono::steady_clock::now() < deadline) {
    login({"scontrol", "update", "JobId=" + task, "StartTime=now"}, "update.log");
    // The requeued job's group took the trial again (it may finish before squeue is asked).
    const std::string log = read_file(log_path);
    const auto requeued = log.find("requeued: preempted");
    restarted = requeued != std::string::npos &&
                log.find("(attempt 2", requeued) != std::string::npos;
    if (!restarted) std::this_thread::sleep_for(500ms);
  }
  ASSERT_TRUE(restarted) << read_file(log_path);
  deadline = std::chrono::steady_clock::now() + 300s;
  while (alive(pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(250ms);
  const std::string log = read_file(log_path);
  ASSERT_FALSE(alive(pid)) << log;
  EXPECT_NE(log.find("requeued: preempted (SIGTERM); resumes from the checkpoint it took"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("(attempt 2, resuming after epoch"), std::string::npos) << log;

  const json want = exported(file("calm/calm.db"), experiment_);
  const json got = exported(file("submit.db"), experiment_);
  ASSERT_EQ(got["trials"].size(), 1u);
  EXPECT_EQ(got["trials"][0]["state"], "completed");
  EXPECT_EQ(got["trials"][0]["params"], want["trials"][0]["params"]);
  for (const char* name : {"train_loss", "val_loss", "val_acc"}) {
    const json& series = got["trials"][0]["metrics"][name];
    const json& reference = want["trials"][0]["metrics"][name];
    ASSERT_EQ(series.size(), 12u) << name << " " << series.dump();  // every epoch, once
    ASSERT_EQ(reference.size(), 12u) << name;
    for (std::size_t e = 0; e < 12; ++e) {
      EXPECT_EQ(series[e][0], e + 1) << name;
      const double a = series[e][1], b = reference[e][1];
      EXPECT_LE(std::abs(a - b), 1e-6 * std::max(1.0, std::abs(b))) << name << " epoch " << e + 1;
    }
  }
  for (int i = 0; i < 40 && !live_jobs().empty(); ++i) std::this_thread::sleep_for(250ms);
  EXPECT_EQ(live_jobs(), "");
  unsetenv("TRELLIS_HOME");
}

// The login node's coordinator dies (SIGKILL: an OOM kill, a reboot) while its job trains.
// The same submit line starts it again on the same port; the running job reconnects and keeps
// its trial (no second attempt), no new array is submitted, and every epoch is stored once.
TEST_F(SubmitTest, AResubmittedCoordinatorIsRejoinedByItsRunningJob) {
  setenv("TRELLIS_HOME", file("keys").c_str(), 1);
  write_data(16000);
  const std::string spec = write_spec(1, "", "{batch_size: 32, epochs: 12, hidden_units: 32}");
  const Result first = submit_sweep(spec, {"--groups", "1"});
  ASSERT_EQ(first.code, 0) << first.output;
  const json before = record();
  const int killed = before.value("coordinator_pid", 0);
  ASSERT_GT(killed, 0);
  ASSERT_EQ(before["jobs"].size(), 1u);
  const std::string log_path = file("trellis-" + experiment_ + ".log");
  ASSERT_TRUE(log_shows(log_path, "trial 0 epoch 1:", 120s)) << read_file(log_path);
  ::kill(killed, SIGKILL);
  for (int i = 0; i < 200 && alive(killed); ++i) std::this_thread::sleep_for(25ms);
  ASSERT_FALSE(alive(killed));

  const Result again = submit_sweep(spec, {"--groups", "1"});
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_NE(again.output.find("still queued or running: they reconnect to it, so no new job"),
            std::string::npos)
      << again.output;
  const json after = record();
  EXPECT_EQ(after["jobs"], before["jobs"]) << "a second array was submitted";
  EXPECT_EQ(after["endpoint"], before["endpoint"]);
  const int pid = after.value("coordinator_pid", 0);
  ASSERT_GT(pid, 0);
  ASSERT_NE(pid, killed);
  const auto deadline = std::chrono::steady_clock::now() + 300s;
  while (alive(pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(250ms);
  const std::string log = read_file(log_path);
  ASSERT_FALSE(alive(pid)) << log;
  EXPECT_NE(log.find("reconnected still running trial id"), std::string::npos) << log;
  EXPECT_EQ(log.find("(attempt 2"), std::string::npos) << log;

  const json got = exported(file("submit.db"), experiment_);
  ASSERT_EQ(got["trials"].size(), 1u);
  EXPECT_EQ(got["trials"][0]["state"], "completed") << got.dump();
  for (const char* name : {"train_loss", "val_loss", "val_acc"}) {
    const json& series = got["trials"][0]["metrics"][name];
    ASSERT_EQ(series.size(), 12u) << name << " " << series.dump();  // every epoch, once
    for (std::size_t e = 0; e < 12; ++e) EXPECT_EQ(series[e][0], e + 1) << name;
  }
  for (int i = 0; i < 40 && !live_jobs().empty(); ++i) std::this_thread::sleep_for(250ms);
  EXPECT_EQ(live_jobs(), "");
  unsetenv("TRELLIS_HOME");
}

TEST_F(SubmitTest, AWorkerJobThatDiesAtStartEndsTheCoordinatorWithTheJobLogNamed) {
  write_data();
  setenv("TRELLIS_HOME", file("keys").c_str(), 1);
  const Result submitted = submit_sweep(
      write_spec(2, ""), {"--groups", "1", "--worker", "/nonexistent/bin/trellis-worker"});
  ASSERT_EQ(submitted.code, 0) << submitted.output;
  const json r = record();
  const int pid = r.value("coordinator_pid", 0);
  const std::string job = r["jobs"][0];
  const auto deadline = std::chrono::steady_clock::now() + 90s;
  while (alive(pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(250ms);
  const std::string log = read_file(file("trellis-" + experiment_ + ".log"));
  ASSERT_FALSE(alive(pid)) << log;
  EXPECT_NE(log.find("every worker job (" + job + ") ended before the sweep finished"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("trellis-" + experiment_ + "-" + job + "_*.log"), std::string::npos) << log;
  const std::string job_log = read_file(file("trellis-" + experiment_ + "-" + job + "_0.log"));
  EXPECT_NE(job_log.find("/nonexistent/bin/trellis-worker"), std::string::npos) << job_log;
  unsetenv("TRELLIS_HOME");
}

TEST_F(SubmitTest, AWorkerThatCannotReachTheCoordinatorNamesTheAddressAndCancelStopsAll) {
  write_data();
  setenv("TRELLIS_HOME", file("keys").c_str(), 1);
  std::vector<std::string> argv = {kTrellis, "--store", file("submit.db"), "submit",
                                   write_spec(2, ""), "--advertise", "10.213.0.99", "--groups", "1"};
  const Result submitted = login(argv, "submit.log");
  ASSERT_EQ(submitted.code, 0) << submitted.output;
  const json r = record();
  const int pid = r.value("coordinator_pid", 0);
  const std::string job = r["jobs"][0];
  const std::string job_log = file("trellis-" + experiment_ + "-" + job + "_0.log");
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (read_file(job_log).find("no answer from the coordinator at tcp://10.213.0.99:") ==
             std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(250ms);
  EXPECT_NE(read_file(job_log).find("no answer from the coordinator at tcp://10.213.0.99:"),
            std::string::npos)
      << read_file(job_log);
  const Result cancelled =
      login({kTrellis, "--store", file("submit.db"), "cancel", experiment_}, "cancel.log");
  EXPECT_EQ(cancelled.code, 0) << cancelled.output;
  EXPECT_NE(cancelled.output.find("stopped coordinator pid " + std::to_string(pid)),
            std::string::npos)
      << cancelled.output;
  EXPECT_NE(cancelled.output.find("cancelled job " + job), std::string::npos) << cancelled.output;
  EXPECT_FALSE(alive(pid));
  for (int i = 0; i < 40 && !live_jobs().empty(); ++i) std::this_thread::sleep_for(250ms);
  EXPECT_EQ(live_jobs(), "");
  unsetenv("TRELLIS_HOME");
}

// A job whose time limit falls inside the sweep: once epochs are timed, the group is given only
// epochs that end before its limit (less the margin); a trial that does not fit stops on a
// checkpoint and continues in the next array task, and a group with no room for an epoch
// leaves, so its job ends early, COMPLETED rather than TIMEOUT. Slurm checks limits about every
// 30 s: the margin and the limit leave room for that.
TEST_F(SubmitTest, AGroupTakesOnlyWorkThatEndsBeforeItsJobsTimeLimit) {
  setenv("TRELLIS_HOME", file("keys").c_str(), 1);
  write_data(16000);
  // Four trials of about 20 s each: twice the 40 s a one-minute job leaves after the margin, so
  // the sweep needs more than one job. Machines differ ninefold in epoch time (0.017 s on an
  // EPYC, 0.15 s on a Xeon), so the epochs are counted from a short run timed here, on one
  // core as each array task's rank runs: unpinned, the rank would run two BLAS threads, and
  // with other tests on the second core (CI runs two at once) its epochs took four times
  // those of the job.
  const std::string train = "batch_size: 32, hidden_units: 32";
  const Result timing = run({"taskset", "-c", "0", kTrellis, "--store", file("timing.db"), "run",
                             write_spec(1, "", "{" + train + ", epochs: 5}"), "--groups", "1",
                             "--checkpoints", "none", "--launcher", "mpirun"},
                            file("timing.log"), 300s);
  ASSERT_EQ(timing.code, 0) << timing.output;
  const json timed = exported(file("timing.db"), experiment_);
  ASSERT_EQ(timed["trials"][0]["provenance"]["blas"]["threads"], 1) << timed.dump();
  // The fastest epoch, not the first: the first also pays for the GEMM library's kernel
  // generation (oneDNN JITs on first use), several times a steady epoch here.
  double epoch_s = std::numeric_limits<double>::infinity();
  for (const json& e : timed["trials"][0]["metrics"]["epoch_s"])
    epoch_s = std::min(epoch_s, e[1].get<double>());
  ASSERT_GT(epoch_s, 0);
  ASSERT_TRUE(std::isfinite(epoch_s)) << timed.dump();
  const int epochs = std::clamp(static_cast<int>(20.0 / epoch_s), 30, 20000);
  const std::string spec = write_spec(4, "", "{" + train + ", epochs: " + std::to_string(epochs) + "}");
  // Six array tasks, one at a time: room for the 80 s of training even if the tests beside this
  // one slow it threefold; the tasks the sweep does not need are cancelled when it ends.
  const Result submitted = login(
      {kTrellis, "--store", file("submit.db"), "submit", spec, "--advertise", "10.213.0.1",
       "--groups", "6", "--max-running", "1", "--time", "1", "--walltime-margin", "20"},
      "submit.log");
  ASSERT_EQ(submitted.code, 0) << submitted.output;
  const json r = record();
  const int pid = r.value("coordinator_pid", 0);
  const std::string job = r["jobs"][0];
  const auto deadline = std::chrono::steady_clock::now() + 600s;
  while (alive(pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(250ms);
  const std::string log = read_file(file("trellis-" + experiment_ + ".log"));
  ASSERT_FALSE(alive(pid)) << log;
  EXPECT_NE(log.find("sweep '" + experiment_ + "' finished: 4 trials, 4 completed"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("before job " + job + "_0's time limit"), std::string::npos) << log;
  EXPECT_NE(log.find("so the group leaves and the job returns its time"), std::string::npos)
      << log;
  // A cut ends its group's work: no job cuts a trial twice (a slow trial may still be cut in
  // several jobs, once in each).
  static const std::regex kCut(R"(before the time limit of job (\S+);)");
  std::map<std::string, int> cuts;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), kCut); it != std::sregex_iterator(); ++it)
    ++cuts[(*it)[1]];
  EXPECT_FALSE(cuts.empty()) << log;
  for (const auto& [task, n] : cuts) EXPECT_EQ(n, 1) << "job " << task << " cut " << n << " trials\n" << log;
  // The first task left before its limit: it completed, it was not timed out.
  const Result first = login({"scontrol", "-o", "show", "job", job + "_0"}, "first.log");
  EXPECT_NE(first.output.find("JobState=COMPLETED"), std::string::npos) << first.output;
  EXPECT_EQ(first.output.find("TIMEOUT"), std::string::npos) << first.output;
  const json doc = exported(file("submit.db"), experiment_);
  ASSERT_EQ(doc["trials"].size(), 4u);
  for (const json& t : doc["trials"]) {
    EXPECT_EQ(t["state"], "completed") << t.dump();
    const json& series = t["metrics"]["val_loss"];
    ASSERT_EQ(series.size(), static_cast<std::size_t>(epochs));  // every epoch once, across the jobs
    for (std::size_t e = 0; e < series.size(); ++e) EXPECT_EQ(series[e][0], e + 1);
  }
  // The provenance of each attempt names its job and the job's log.
  const Result events = login({kTrellis, "--store", file("submit.db"), "export", experiment_,
                               "--format", "json"},
                              "provenance.log");
  EXPECT_NE(events.output.find(job + "_0"), std::string::npos);
  for (int i = 0; i < 40 && !live_jobs().empty(); ++i) std::this_thread::sleep_for(250ms);
  EXPECT_EQ(live_jobs(), "");
  unsetenv("TRELLIS_HOME");
}

}  // namespace
}  // namespace trellis::testing
