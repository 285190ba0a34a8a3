// bench_coordinator_load: how much sweep bookkeeping one coordinator sustains on a login node,
// against Optuna doing the same bookkeeping, both durable in the same sense.
//
// Starts the real `trellis serve` (plaintext on loopback, --insecure, its log at info as a user
// runs it) on a fresh SQLite store for a random-search spec over a small space, and drives it
// with simulated worker groups (ZeroMQ DEALER sockets in one epoll loop) that speak the real
// protocol: Hello (or Done) -> Assign; 10 Reports (epochs 1..10, plausible train_loss,
// val_loss, val_acc, epoch_s, samples_per_s), then their Acks; Done with final metrics -> Ack,
// then the next Assign. Before the clock starts, every socket connects and hears the
// coordinator's heartbeat, so TCP and ZMTP set-up are not counted as assign latency.
//
// Durability, the same on both sides: the coordinator acknowledges a report only after the
// store batch holding it is committed, and the store runs WAL with synchronous=FULL
// (experiment_store.cc), one WAL fsync per group-commit batch; acknowledged reports per
// second is the durable rate. Optuna 3.1's RDBStorage sets no pragma, so its SQLite file runs
// SQLite's defaults, rollback journal and synchronous=FULL, fsynced at every commit (the peer
// reads both back from its connection); its JournalFileStorage fsyncs every append.
//
// Two modes, each repetition running all four runs, their order rotated per repetition:
//   concurrent  ours: --trials trials (100,000) over --connections sockets (1,000), Reports
//               pipelined. Optuna: --optuna-processes processes (4) on JournalFileStorage, the
//               storage its docs give for parallel work on one machine (not SQLite).
//   sequential  one client on each side, one call at a time: ours one socket that waits for
//               each Ack before the next message (--sequential-trials trials); Optuna one
//               process on SQLite. The ratio is the per-trial cost, Optuna's over ours.
// Pinning (sched_setaffinity/taskset): the coordinator on one core, this load generator on
// another; the sequential Optuna process on the coordinator's core; the concurrent Optuna
// processes on all cores, as ours use both (coordinator and load generator).
//
// Assign latency: from sending Hello, Done or Request until its Assign arrives. The start-up
// burst is every Assign asked for before the last connection got its first one (1,000 Hellos
// at once); steady state is every later one; p50/p99 of each are printed separately.
// Also: the coordinator's peak RSS (VmHWM once every trial but the last has ended; the last
// Done is held back meanwhile, because the coordinator exits when it is acknowledged), its
// CPU time and this process's, and how long `trellis trials` takes over the resulting store.
//
// Each figure is the median of --reps (5) interleaved repetitions with its [min, max]; each
// ratio is taken within a repetition. Prints a table and, as its last line, one JSON object:
//   {"benchmark": "coordinator_load", "reports_per_s", "trials_per_s",
//    "sequential_ratio_to_optuna", "concurrent_ratio_to_optuna", "p99_assign_ms",
//    "p50_assign_ms", "burst_p99_assign_ms", ..., "spread": {key: [min, max]}}
// --keep keeps the stores, the logs and every assign latency (assign_latency.csv per run).
// Never asserts on time. Every process it starts is stopped by pid; only loopback is used.
// Exit 1 when the coordinator or the peer fails (their logs are printed).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/protocol.h"

extern char** environ;

namespace {

using namespace trellis;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kEpochs = 10;
constexpr const char* kExperiment = "load";
constexpr const char* kOptunaScript = TRELLIS_SOURCE_DIR "/bench/coordinator_load_optuna.py";
constexpr const char* kPython = "/usr/bin/python3";  // Debian's python3-optuna lives there
constexpr const char* kTaskset = "/usr/bin/taskset";
constexpr auto kStartTimeout = 60s;
// No progress (no message at all) for this long means the coordinator is stuck: give up.
constexpr auto kStallTimeout = 60s;
constexpr auto kShutdownGrace = 5s;

struct Args {
  std::string bin = TRELLIS_BIN_DIR;
  int trials = 100000;
  int connections = 1000;
  int sequential_trials = 500;
  int optuna_trials = 100000;  // a cap: the peer usually stops at --optuna-seconds
  double optuna_seconds = 10;
  int optuna_processes = 4;
  int reps = 5;
  bool pin = true;
  std::string log_level = "info";  // the coordinator's, as a user would run it
  bool keep = false;
};

// Exits with CLI11's message (and 0 for --help) when the arguments are not usable.
int parse_args(int argc, char** argv, Args* args) {
  CLI::App app{"bench_coordinator_load: one coordinator against many connections, vs Optuna"};
  app.add_option("--trials", args->trials, "trials of the concurrent sweep")->check(CLI::Range(1, 1 << 30));
  app.add_option("--connections", args->connections, "simulated groups of the concurrent sweep")->check(CLI::Range(1, 1 << 30));
  app.add_option("--sequential-trials", args->sequential_trials, "trials of the one-client sweep")->check(CLI::Range(1, 1 << 30));
  app.add_option("--optuna-trials", args->optuna_trials, "most trials of an Optuna run (0: skip the peer)")->check(CLI::NonNegativeNumber);
  app.add_option("--optuna-seconds", args->optuna_seconds, "time budget of an Optuna run")->check(CLI::PositiveNumber);
  app.add_option("--optuna-processes", args->optuna_processes, "Optuna processes on JournalFileStorage")->check(CLI::Range(1, 256));
  app.add_option("--reps", args->reps, "interleaved repetitions")->check(CLI::Range(1, 1000));
  app.add_flag("!--no-pin", args->pin, "leave every process on every core");
  app.add_option("--log-level", args->log_level, "the coordinator's log level");
  app.add_option("--bin", args->bin, "directory of trellis");
  app.add_flag("--keep", args->keep, "keep the runs' directories");
  CLI11_PARSE(app, argc, argv);
  return -1;
}

// Which cores each side runs on; empty strings mean unpinned.
struct Pinning {
  std::string coordinator;  // taskset -c list
  std::string load;         // this process
  std::string all;
  std::string describe() const {
    if (coordinator.empty()) return "not pinned";
    return "coordinator on CPU " + coordinator + ", load generator on CPU " + load;
  }
  // argv prefixed with taskset when pinned.
  std::vector<std::string> on(const std::string& cpus, std::vector<std::string> argv) const {
    if (cpus.empty()) return argv;
    argv.insert(argv.begin(), {kTaskset, "-c", cpus});
    return argv;
  }
};

// Pins this process (and the ZeroMQ threads it starts later) to the first allowed CPU and
// keeps the second for the coordinator; with one CPU, or --no-pin, nothing is pinned.
Pinning pin_cores(bool pin) {
  Pinning out;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (!pin || sched_getaffinity(0, sizeof allowed, &allowed) != 0) return out;
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  if (cpus.size() < 2) return out;
  cpu_set_t mine;
  CPU_ZERO(&mine);
  CPU_SET(cpus[0], &mine);
  if (sched_setaffinity(0, sizeof mine, &mine) != 0) return out;
  out.load = std::to_string(cpus[0]);
  out.coordinator = std::to_string(cpus[1]);
  for (int c : cpus) out.all += (out.all.empty() ? "" : ",") + std::to_string(c);
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A child process in its own process group, output to a file, stopped by pid.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log_path) : log_(log_path) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, &attr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  ~Child() {
    if (running()) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, &status_, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0 || exited_) return false;
    if (waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
    return !exited_;
  }
  // Exit code, or -1 when it had to be killed at the deadline.
  int wait(std::chrono::seconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (running()) {
      if (Clock::now() > deadline) {
        kill(-pid_, SIGKILL);
        waitpid(pid_, &status_, 0);
        exited_ = true;
        return -1;
      }
      std::this_thread::sleep_for(20ms);
    }
    if (pid_ <= 0) return -1;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }
  std::string log() const { return read_file(log_); }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool exited_ = false;
  std::string log_;
};

int free_loopback_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Peak resident set (VmHWM) and CPU seconds (utime + stime) of a live process.
double peak_rss_mb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;  // kB
  }
  return -1;
}

double cpu_seconds(pid_t pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close_paren + 2));
  std::vector<std::string> f;
  for (std::string x; fields >> x && f.size() < 13;) f.push_back(x);
  if (f.size() < 13) return -1;
  // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the name.
  return (std::atof(f[11].c_str()) + std::atof(f[12].c_str())) / sysconf(_SC_CLK_TCK);
}

std::string spec_text(int trials, const std::string& data_dir) {
  std::ostringstream out;
  out << "name: " << kExperiment << "\n"
      << "description: bench_coordinator_load, no worker ever reads the data\n"
      << "dataset: {path: " << data_dir << "}\n"
      << "metric: {name: val_acc, mode: max}\n"
      << "search:\n"
      << "  algorithm: random\n"
      << "  seed: 1\n"
      << "  trials: " << trials << "\n"
      << "  space:\n"
      << "    lr: {type: log_float, low: 1.0e-4, high: 1.0e-1}\n"
      << "    hidden_units: {type: int, low: 32, high: 512}\n"
      << "    activation: {type: categorical, values: [relu, tanh]}\n"
      << "train: {epochs: " << kEpochs << "}\n";
  return out.str();
}

// One simulated worker group: its socket and where it is in the conversation.
struct Worker {
  enum class Phase { kAwaitAssign, kAwaitAcks, kHoldingLastDone, kWaitingToRequest, kFinished };
  std::unique_ptr<zmq::socket_t> socket;
  Phase phase = Phase::kAwaitAssign;
  std::int64_t trial = -1;
  std::int32_t attempt = 0;
  int unacked = 0;
  int next_epoch = 1;  // the next Report to send, when they go one at a time
  bool assigned_once = false;
  double quality = 0;  // how good this trial's model is, for plausible metrics
  Clock::time_point asked;  // when Hello, Done or Request went out
  Clock::time_point request_at;
};

// How one run drives the coordinator.
struct LoadOptions {
  int trials = 0;
  int connections = 0;
  bool lockstep = false;  // each message waits for the answer to the one before
};

struct AssignSample {
  float asked_at_ms;  // since the first Hello
  float latency_ms;
  bool first;  // this connection's first Assign (its Hello's)
};

struct LoadResult {
  int completed = 0;
  long reports_acked = 0;
  double seconds = 0;  // first Hello to the last Done's Ack, without the held-back pause
  std::vector<AssignSample> assigns;
  double rss_mb = -1;
  double cpu_s = -1;
  double bench_cpu_s = -1;  // this process, load generator included
  int waits = 0;
};

class LoadGenerator {
 public:
  LoadGenerator(const LoadOptions& options, const std::string& endpoint, pid_t coordinator)
      : options_(options), endpoint_(endpoint), coordinator_(coordinator), rng_(12345) {}

  // Runs every trial of the sweep; false (with *why) when the coordinator stalls or exits.
  bool run(Child& serve, LoadResult* out, std::string* why) {
    // The default of 1023 sockets per context is below the default connection count.
    context_.set(zmq::ctxopt::max_sockets, options_.connections + 64);
    workers_.resize(options_.connections);
    // zmq_poll over 1,000 sockets costs O(sockets) per wake-up, and this process shares the
    // machine with the coordinator it measures: epoll on each socket's ZMQ_FD wakes only for
    // the sockets with news.
    const int epoll = epoll_create1(EPOLL_CLOEXEC);
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      auto& w = workers_[i];
      w.socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
      w.socket->set(zmq::sockopt::linger, 0);
      w.socket->set(zmq::sockopt::routing_id, "load-" + std::to_string(i));
      w.socket->connect(endpoint_);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      epoll_ctl(epoll, EPOLL_CTL_ADD, w.socket->get(zmq::sockopt::fd), &ev);
    }
    struct CloseFd {
      int fd;
      ~CloseFd() { close(fd); }
    } close_epoll{epoll};
    if (!warm_up(serve, epoll, why)) return false;
    const auto start = start_ = Clock::now();
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      Hello hello;
      hello.group = "load-" + std::to_string(i);
      hello.host = "127.0.0.1";
      hello.pid = getpid();
      hello.version = "bench_coordinator_load";
      ask(workers_[i], hello);
      ready_.push_back(i);
    }
    Clock::duration paused{0};
    auto last_progress = Clock::now();
    auto next_timer_check = Clock::now();
    std::vector<epoll_event> events(workers_.size());
    std::vector<std::size_t> ready;
    zmq::message_t frame;
    while (finished_ < workers_.size()) {
      const int n = epoll_wait(epoll, events.data(), static_cast<int>(events.size()),
                               ready_.empty() ? 20 : 0);
      for (int e = 0; e < n; ++e) ready_.push_back(events[e].data.u64);
      const auto now = Clock::now();
      bool progressed = false;
      ready.swap(ready_);
      for (std::size_t i : ready) {
        Worker& w = workers_[i];
        // ZMQ_FD only says "look": ZMQ_EVENTS tells whether a message is there, and a send may
        // consume the wake-up of a message that arrived meanwhile, so look until it says no.
        while (w.socket->get(zmq::sockopt::events) & ZMQ_POLLIN) {
          while (w.socket->recv(frame, zmq::recv_flags::dontwait)) {
            progressed = true;
            Message m;
            if (Status s = decode(frame.data(), frame.size(), &m); !s.ok()) {
              *why = "undecodable frame from the coordinator: " + s.message();
              return false;
            }
            on_message(w, m);
          }
        }
      }
      ready.clear();
      if (now >= next_timer_check) {  // Wait answers: ask again once their retry is due
        next_timer_check = now + 5ms;
        for (std::size_t i = 0; i < workers_.size(); ++i) {
          Worker& w = workers_[i];
          if (w.phase == Worker::Phase::kWaitingToRequest && now >= w.request_at) {
            ask(w, Request{});
            ready_.push_back(i);
          }
        }
      }
      if (held_ && completed_ == options_.trials - 1) {
        // Every trial but the last has ended and every report is stored: the coordinator is
        // as big as the sweep makes it, and still alive to be measured.
        const auto t0 = Clock::now();
        out->rss_mb = peak_rss_mb(coordinator_);
        out->cpu_s = cpu_seconds(coordinator_);
        Worker& last = *held_;
        held_ = nullptr;
        send_done(last);
        ready_.push_back(static_cast<std::size_t>(&last - workers_.data()));
        paused += Clock::now() - t0;
      }
      if (completed_ == options_.trials && end_ == Clock::time_point{}) end_ = now;
      // Every trial ended: the Shutdowns are a courtesy, not worth waiting long for.
      if (completed_ == options_.trials && (!serve.running() || now - end_ > kShutdownGrace)) break;
      if (progressed) {
        last_progress = now;
      } else if (!serve.running()) {
        *why = "the coordinator exited after " + std::to_string(completed_) + " trials";
        return false;
      } else if (now - last_progress > kStallTimeout) {
        *why = "no message from the coordinator for " +
               std::to_string(
                   std::chrono::duration_cast<std::chrono::seconds>(kStallTimeout).count()) +
               " s after " + std::to_string(completed_) + " trials";
        return false;
      }
    }
    out->completed = completed_;
    out->bench_cpu_s = own_cpu_seconds();
    out->reports_acked = reports_acked_;
    out->seconds = std::chrono::duration<double>(end_ - start - paused).count();
    out->assigns = std::move(assigns_);
    out->waits = waits_;
    return true;
  }

 private:
  // Connection set-up is not assign latency: every socket says Heartbeat (which makes the
  // coordinator list it without giving it work) and waits for the coordinator's heartbeat
  // round, which proves its connection is up, before the clock starts. ZeroMQ connects again
  // until the coordinator has bound its port, so this is also the wait for it to start.
  bool warm_up(Child& serve, int epoll, std::string* why) {
    for (auto& w : workers_) send(w, Heartbeat{});
    std::vector<bool> heard(workers_.size(), false);
    std::size_t count = 0;
    std::vector<epoll_event> events(workers_.size());
    const auto deadline = Clock::now() + kStartTimeout;
    zmq::message_t frame;
    for (std::size_t i = 0; i < workers_.size(); ++i) ready_.push_back(i);
    while (count < workers_.size()) {
      if (!serve.running()) {
        *why = "the coordinator exited before the load started";
        return false;
      }
      if (Clock::now() > deadline) {
        *why = "only " + std::to_string(count) + " of " + std::to_string(workers_.size()) +
               " connections heard the coordinator's heartbeat";
        return false;
      }
      const int n = epoll_wait(epoll, events.data(), static_cast<int>(events.size()),
                               ready_.empty() ? 20 : 0);
      for (int e = 0; e < n; ++e) ready_.push_back(events[e].data.u64);
      std::vector<std::size_t> ready;
      ready.swap(ready_);
      for (std::size_t i : ready) {
        while (workers_[i].socket->get(zmq::sockopt::events) & ZMQ_POLLIN) {
          while (workers_[i].socket->recv(frame, zmq::recv_flags::dontwait)) {
            if (!heard[i]) ++count;
            heard[i] = true;
          }
        }
      }
    }
    return true;
  }

  static double own_cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
           (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  }

  void send(Worker& w, const Message& m) {
    const std::string bytes = encode(m);
    w.socket->send(zmq::buffer(bytes), zmq::send_flags::none);
  }

  void ask(Worker& w, const Message& m) {
    w.phase = Worker::Phase::kAwaitAssign;
    w.asked = Clock::now();
    send(w, m);
  }

  void on_message(Worker& w, const Message& m) {
    if (const auto* assign = std::get_if<Assign>(&m)) {
      if (w.phase != Worker::Phase::kAwaitAssign) return;  // cannot happen; keep going
      assigns_.push_back(
          {std::chrono::duration<float, std::milli>(w.asked - start_).count(),
           std::chrono::duration<float, std::milli>(Clock::now() - w.asked).count(),
           !w.assigned_once});
      w.assigned_once = true;
      w.trial = assign->trial;
      w.attempt = assign->attempt;
      w.phase = Worker::Phase::kAwaitAcks;
      w.unacked = kEpochs;
      w.quality = std::uniform_real_distribution<double>(0.55, 0.92)(rng_);
      w.next_epoch = 1;
      const int burst = options_.lockstep ? 1 : kEpochs;
      for (int i = 0; i < burst; ++i) send_report(w);
    } else if (const auto* ack = std::get_if<Ack>(&m)) {
      if (ack->epoch == 0) {
        ++completed_;
        return;
      }
      ++reports_acked_;
      if (w.phase != Worker::Phase::kAwaitAcks || ack->trial != w.trial) return;
      if (--w.unacked > 0) {
        if (options_.lockstep) send_report(w);
        return;
      }
      if (++dones_ == options_.trials) {
        // The coordinator exits on the last Done: measure it first (see run()), also when
        // every other Done is already acknowledged (run() then measures on its next turn).
        w.phase = Worker::Phase::kHoldingLastDone;
        held_ = &w;
        return;
      }
      send_done(w);
    } else if (const auto* wait = std::get_if<Wait>(&m)) {
      ++waits_;
      w.phase = Worker::Phase::kWaitingToRequest;
      w.request_at = Clock::now() + std::chrono::milliseconds(wait->retry_ms);
    } else if (std::holds_alternative<Shutdown>(m)) {
      if (w.phase != Worker::Phase::kFinished) ++finished_;
      w.phase = Worker::Phase::kFinished;
    }
    // Heartbeats: nothing to do; this worker is never silent for long.
  }

  void send_report(Worker& w) {
    Report r;
    r.trial = w.trial;
    r.attempt = w.attempt;
    r.epoch = w.next_epoch++;
    r.metrics = metrics(w, r.epoch);
    send(w, r);
  }

  void send_done(Worker& w) {
    Done done;
    done.trial = w.trial;
    done.attempt = w.attempt;
    done.ok = true;
    const MetricMap last = metrics(w, kEpochs);
    done.final_metrics = {{"test_acc", last.at("val_acc") - 0.005},
                          {"test_loss", last.at("val_loss") + 0.01},
                          {"val_acc", last.at("val_acc")}};
    ask(w, done);
  }

  // What an MLP on Fashion-MNIST reports: losses fall, accuracy climbs toward the trial's
  // quality, an epoch takes a few seconds at tens of thousands of samples/s.
  MetricMap metrics(const Worker& w, int epoch) {
    std::uniform_real_distribution<double> noise(-0.01, 0.01);
    const double progress = 1 - std::exp(-epoch / 3.0);
    const double acc = std::clamp(0.1 + (w.quality - 0.1) * progress + noise(rng_), 0.0, 1.0);
    const double val_loss = 2.3 * std::exp(-2.2 * acc) + noise(rng_) * 0.1;
    const double samples_per_s = 48000 + 4000 * noise(rng_) * 100;
    return {{"train_loss", val_loss * 0.92 + noise(rng_) * 0.05},
            {"val_loss", val_loss},
            {"val_acc", acc},
            {"epoch_s", 54000 / samples_per_s},
            {"samples_per_s", samples_per_s}};
  }

  const LoadOptions options_;
  std::string endpoint_;
  pid_t coordinator_;
  zmq::context_t context_{1};
  std::vector<Worker> workers_;
  std::vector<std::size_t> ready_;  // sockets to look at on the next turn
  std::mt19937_64 rng_;
  Worker* held_ = nullptr;
  std::size_t finished_ = 0;
  int completed_ = 0;
  int dones_ = 0;
  int waits_ = 0;
  long reports_acked_ = 0;
  std::vector<AssignSample> assigns_;
  Clock::time_point start_{};
  Clock::time_point end_{};
};

double percentile(std::vector<float> values, double p) {
  if (values.empty()) return 0;
  const auto k = static_cast<std::size_t>(std::ceil(p * values.size())) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<long>(k), values.end());
  return values[k];
}

// The start-up burst ends when the last connection gets its first Assign: everything asked for
// before then queued behind the Hellos of every connection at once.
struct AssignSplit {
  std::vector<float> burst;
  std::vector<float> steady;
};

AssignSplit split_assigns(const std::vector<AssignSample>& samples) {
  float burst_end = 0;
  for (const auto& a : samples)
    if (a.first) burst_end = std::max(burst_end, a.asked_at_ms + a.latency_ms);
  AssignSplit out;
  for (const auto& a : samples)
    (a.first || a.asked_at_ms < burst_end ? out.burst : out.steady).push_back(a.latency_ms);
  return out;
}

// One run of ours: a fresh store in `dir`, `trellis serve` on the coordinator's core.
struct OursRun {
  LoadResult load;
  AssignSplit assigns;
  double trials_per_s = 0;
  double reports_per_s = 0;
  double trials_command_s = -1;
  std::string journal_mode;  // read back from the store file's header
};

// SQLite's header says WAL at bytes 18 and 19 (file format versions 2); 1 is a rollback journal.
std::string store_journal_mode(const std::string& path) {
  const std::string head = read_file(path).substr(0, 20);
  if (head.size() < 20) return "unknown";
  return head[18] == 2 && head[19] == 2 ? "wal" : "rollback (delete)";
}

bool run_ours(const Args& args, const Pinning& pinning, const LoadOptions& options,
              const std::string& dir, bool time_trials_command, OursRun* out, std::string* why) {
  std::filesystem::create_directories(dir + "/data");
  const std::string spec = dir + "/load.yaml";
  const std::string store = dir + "/load.db";
  std::ofstream(spec) << spec_text(options.trials, dir + "/data");
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  {
    Child serve(pinning.on(pinning.coordinator,
                           {args.bin + "/trellis", "--store", store, "--log-level",
                            args.log_level, "serve", spec, "--bind", endpoint, "--insecure",
                            "--checkpoints", "none"}),
                dir + "/serve.log");
    if (!serve.started()) {
      *why = "cannot start " + args.bin + "/trellis";
      return false;
    }
    LoadGenerator generator(options, endpoint, serve.pid());
    if (!generator.run(serve, &out->load, why)) {
      const std::string log = serve.log();
      *why += "\n... coordinator log (end):\n" + log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
      return false;
    }
    // It prints the ranking and exits once the sweep is over.
    if (const int rc = serve.wait(300s); rc != 0) {
      *why = "the coordinator exited with " + std::to_string(rc);
      return false;
    }
  }
  out->journal_mode = store_journal_mode(store);
  out->trials_per_s = out->load.completed / out->load.seconds;
  out->reports_per_s = out->load.reports_acked / out->load.seconds;
  out->assigns = split_assigns(out->load.assigns);
  if (args.keep) {
    std::ofstream latencies(dir + "/assign_latency.csv");
    latencies << "asked_at_ms,latency_ms,first\n";
    for (const auto& a : out->load.assigns)
      latencies << a.asked_at_ms << "," << a.latency_ms << "," << a.first << "\n";
  }
  if (!time_trials_command) return true;
  const auto t0 = Clock::now();
  Child trials(pinning.on(pinning.coordinator,
                          {args.bin + "/trellis", "--store", store, "trials", kExperiment}),
               dir + "/trials.log");
  const int rc = trials.wait(300s);
  out->trials_command_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (rc != 0) {
    *why = "trellis trials failed:\n" + trials.log();
    return false;
  }
  return true;
}

struct OptunaRun {
  double trials_per_s = 0;
  std::string durability;  // what the peer read back from its storage
  int torn_reads = 0;      // trials abandoned on Optuna 3.1's torn journal read
};

// One run of the Optuna peer (coordinator_load_optuna.py) on `storage` with `processes`
// processes, or false (with *why) when it fails.
bool run_optuna(const Args& args, const Pinning& pinning, const std::string& cpus,
                const std::string& dir,
                const std::string& storage, int processes, OptunaRun* out, std::string* why) {
  std::filesystem::create_directories(dir);
  const std::string log = dir + "/optuna.log";
  Child peer(pinning.on(cpus, {kPython, kOptunaScript, "--dir", dir, "--storage", storage,
                               "--processes", std::to_string(processes), "--trials",
                               std::to_string(args.optuna_trials), "--seconds",
                               std::to_string(args.optuna_seconds)}),
             log);
  const int rc = peer.wait(std::chrono::seconds(static_cast<long>(args.optuna_seconds) + 180));
  const std::string text = peer.log();
  std::string last;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) last = line;
  const auto doc = nlohmann::json::parse(last, nullptr, false);
  if (rc != 0 || doc.is_discarded() || !doc.contains("trials_per_s") ||
      !doc["trials_per_s"].is_number()) {
    *why = "the Optuna peer (" + storage + ") failed (exit " + std::to_string(rc) +
           "; scripts/bench installs python3-optuna):\n" + text;
    return false;
  }
  out->trials_per_s = doc["trials_per_s"].get<double>();
  out->durability = doc.value("durability", "");
  out->torn_reads = doc.value("torn_reads", 0);
  return true;
}

// Median and range of one figure over the repetitions.
struct Spread {
  double median = 0, min = 0, max = 0;
};

Spread spread(std::vector<double> values) {
  if (values.empty()) return {};
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  const double median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return {median, values.front(), values.back()};
}

// Each figure's value in every repetition, in the order they were added.
class Figures {
 public:
  void add(const std::string& key, double value) {
    if (values_.find(key) == values_.end()) order_.push_back(key);
    values_[key].push_back(value);
  }
  Spread get(const std::string& key) const {
    const auto it = values_.find(key);
    return it == values_.end() ? Spread{} : spread(it->second);
  }
  double last(const std::string& key) const { return values_.at(key).back(); }
  bool has(const std::string& key) const { return values_.count(key) > 0; }
  const std::vector<std::string>& keys() const { return order_; }

 private:
  std::map<std::string, std::vector<double>> values_;
  std::vector<std::string> order_;
};

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (const int code = parse_args(argc, argv, &args); code >= 0) return code;
  char dir_template[] = "/tmp/trellis-bench-load-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    std::perror("bench_coordinator_load: mkdtemp");
    return 1;
  }
  const std::string dir = dir_template;
  const auto cleanup = [&](const std::string& path) {
    if (!args.keep) std::filesystem::remove_all(path);
  };
  const auto fail = [&](const std::string& why) {
    std::cerr << "bench_coordinator_load: " << why << "\n";
    cleanup(dir);
    return 1;
  };
  // Before any ZeroMQ context exists: its I/O thread inherits this process's core.
  const Pinning pinning = pin_cores(args.pin);
  const bool peer = args.optuna_trials > 0;

  Figures fig;
  std::string ours_durability, optuna_sqlite, optuna_journal;
  for (int rep = 0; rep < args.reps; ++rep) {
    // The four runs, their order rotated so that none always runs first or after another.
    for (int k = 0; k < 4; ++k) {
      const int which = (k + rep) % 4;
      const std::string run_dir = dir + "/rep" + std::to_string(rep) + "-" + std::to_string(which);
      std::string why;
      if (which == 0) {  // ours, concurrent
        OursRun run;
        if (!run_ours(args, pinning, {args.trials, args.connections, false}, run_dir,
                      /*time_trials_command=*/rep == 0, &run, &why))
          return fail(why);
        ours_durability = "SQLite journal_mode=" + run.journal_mode +
                          " synchronous=FULL, one commit (fsync) per group-commit batch";
        fig.add("trials_per_s", run.trials_per_s);
        fig.add("reports_per_s", run.reports_per_s);
        fig.add("p50_assign_ms", percentile(run.assigns.steady, 0.50));
        fig.add("p99_assign_ms", percentile(run.assigns.steady, 0.99));
        fig.add("burst_p50_assign_ms", percentile(run.assigns.burst, 0.50));
        fig.add("burst_p99_assign_ms", percentile(run.assigns.burst, 0.99));
        fig.add("burst_assigns", static_cast<double>(run.assigns.burst.size()));
        fig.add("rss_mb", run.load.rss_mb);
        fig.add("coordinator_cpu_s", run.load.cpu_s);
        if (run.trials_command_s >= 0) fig.add("trials_command_s", run.trials_command_s);
      } else if (which == 1) {  // ours, one client, one message at a time
        OursRun run;
        if (!run_ours(args, pinning, {args.sequential_trials, 1, true}, run_dir, false, &run, &why))
          return fail(why);
        fig.add("sequential_trials_per_s", run.trials_per_s);
        fig.add("sequential_trial_ms", 1000 / run.trials_per_s);
        fig.add("sequential_p50_assign_ms", percentile(run.assigns.steady, 0.50));
        fig.add("sequential_p99_assign_ms", percentile(run.assigns.steady, 0.99));
      } else if (peer && which == 2) {  // Optuna, one process on SQLite
        OptunaRun run;
        if (!run_optuna(args, pinning, pinning.coordinator, run_dir, "sqlite", 1, &run, &why))
          return fail(why);
        optuna_sqlite = run.durability;
        fig.add("optuna_sequential_trials_per_s", run.trials_per_s);
        fig.add("optuna_sequential_trial_ms", 1000 / run.trials_per_s);
      } else if (peer && which == 3) {  // Optuna, several processes on JournalFileStorage
        OptunaRun run;
        if (!run_optuna(args, pinning, pinning.all, run_dir, "journal", args.optuna_processes, &run, &why))
          return fail(why);
        optuna_journal = run.durability;
        fig.add("optuna_concurrent_trials_per_s", run.trials_per_s);
        fig.add("optuna_concurrent_torn_reads", run.torn_reads);
      }
      cleanup(run_dir);
    }
    if (peer) {  // ratios within the repetition: the same minutes of the shared machine
      fig.add("sequential_ratio_to_optuna",
              fig.last("sequential_trials_per_s") / fig.last("optuna_sequential_trials_per_s"));
      fig.add("concurrent_ratio_to_optuna",
              fig.last("trials_per_s") / fig.last("optuna_concurrent_trials_per_s"));
    }
  }
  cleanup(dir);

  std::printf("trellis serve (%s) on loopback, %s\n", ours_durability.c_str(),
              pinning.describe().c_str());
  std::printf("  concurrent: %d trials x %d reports over %d connections, reports pipelined; "
              "sequential: %d trials, one socket, one message at a time\n",
              args.trials, kEpochs, args.connections, args.sequential_trials);
  if (peer)
    std::printf("optuna 3.1: sequential one process on %s (CPU %s); concurrent %d processes on "
                "%s (CPUs %s)\n",
                optuna_sqlite.c_str(), pinning.coordinator.empty() ? "any" : pinning.coordinator.c_str(),
                args.optuna_processes, optuna_journal.c_str(),
                pinning.all.empty() ? "any" : pinning.all.c_str());
  std::printf("median of %d interleaved repetitions [min, max]\n", args.reps);
  std::printf("%-34s %12s %12s %12s\n", "measure", "median", "min", "max");
  for (const auto& key : fig.keys()) {
    const Spread v = fig.get(key);
    std::printf("%-34s %12.3f %12.3f %12.3f\n", key.c_str(), v.median, v.min, v.max);
  }

  nlohmann::json summary = {{"benchmark", "coordinator_load"},
                            {"trials", args.trials},
                            {"connections", args.connections},
                            {"sequential_trials", args.sequential_trials},
                            {"optuna_processes", args.optuna_processes},
                            {"reps", args.reps},
                            {"pinning", pinning.describe()},
                            {"durability", {{"trellis", ours_durability},
                                            {"optuna_sequential", optuna_sqlite},
                                            {"optuna_concurrent", optuna_journal}}},
                            {"sequential_ratio_to_optuna", nullptr},
                            {"concurrent_ratio_to_optuna", nullptr}};
  nlohmann::json ranges = nlohmann::json::object();
  for (const auto& key : fig.keys()) {
    const Spread v = fig.get(key);
    summary[key] = v.median;
    ranges[key] = {v.min, v.max};
  }
  summary["spread"] = ranges;
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}
