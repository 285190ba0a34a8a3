// bench_coordinator_load: how much sweep bookkeeping one coordinator sustains on a login node.
//
// Starts the real `trellis serve` (plaintext on loopback, --insecure, its log at info as a user
// runs it) on a fresh SQLite store, for a random-search spec of --trials trials (default
// 100,000) over a small space, and drives it with --connections simulated worker groups
// (default 1,000 ZeroMQ DEALER sockets in one epoll loop) that speak the real protocol: Hello
// (or Done) -> Assign; 10 Reports (epochs 1..10, plausible train_loss, val_loss, val_acc,
// epoch_s, samples_per_s), pipelined, then wait for their Acks; Done with final metrics -> Ack,
// then the next Assign. The coordinator acknowledges a report only after it is committed to
// the store, so acknowledged reports per second is the durable rate. Before the clock starts,
// every socket connects and hears the coordinator's heartbeat, so TCP and ZMTP set-up are not
// counted as assign latency.
//
// Measured: trials/s and reports/s (acknowledged, from the first Hello to the last Done's
// Ack), p50/p99 assign latency over every Assign (sending Hello, Done or Request until its
// Assign arrives; the first 1,000 are the Hellos of all groups at once), the coordinator's peak
// RSS (VmHWM of /proc/PID/status once every trial but the last has ended and every report is
// stored; the last Done is held back meanwhile, because the coordinator exits when it is
// acknowledged), its CPU time and this process's, and how long `trellis trials` takes over the
// resulting store. The peer, in the same run: Optuna with SQLite storage doing ask, 10
// `trial.report`, tell (bench/coordinator_load_optuna.py, run with /usr/bin/python3).
//
// The load generator shares the machine with the coordinator it measures (on 2 cores, 4 busy
// threads: both sides' ZeroMQ I/O threads too), so its figures are a floor for what one
// coordinator does with remote workers.
//
// Prints a table and, as its last line, one JSON object:
//   {"benchmark": "coordinator_load", "trials_per_s", "optuna_trials_per_s", "ratio_to_optuna",
//    "reports_per_s", "p50_assign_ms", "p99_assign_ms", "rss_mb", ...}
// --keep keeps the store, the logs and every assign latency (assign_latency.csv). Never asserts
// on time. Every process it starts is stopped by pid; only loopback is used. Exit 1 when the
// coordinator or the peer fails (their logs are printed).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
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
constexpr auto kStartTimeout = 60s;
// No progress (no message at all) for this long means the coordinator is stuck: give up.
constexpr auto kStallTimeout = 60s;
constexpr auto kShutdownGrace = 5s;

struct Args {
  std::string bin = TRELLIS_BIN_DIR;
  int trials = 100000;
  int connections = 1000;
  int optuna_trials = 200;
  double optuna_seconds = 60;
  std::string log_level = "info";  // the coordinator's, as a user would run it
  bool keep = false;
};

// Exits with CLI11's message (and 0 for --help) when the arguments are not usable.
int parse_args(int argc, char** argv, Args* args) {
  CLI::App app{"bench_coordinator_load: one coordinator against many connections"};
  app.add_option("--trials", args->trials, "trials of the sweep")->check(CLI::Range(1, 1 << 30));
  app.add_option("--connections", args->connections, "simulated groups")->check(CLI::Range(1, 1 << 30));
  app.add_option("--optuna-trials", args->optuna_trials, "trials of the Optuna peer (0: skip it)")->check(CLI::NonNegativeNumber);
  app.add_option("--optuna-seconds", args->optuna_seconds, "time budget of the Optuna peer")->check(CLI::PositiveNumber);
  app.add_option("--log-level", args->log_level, "the coordinator's log level");
  app.add_option("--bin", args->bin, "directory of trellis");
  app.add_flag("--keep", args->keep, "keep the sweep's directory");
  CLI11_PARSE(app, argc, argv);
  return -1;
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

std::string spec_text(const Args& args, const std::string& data_dir) {
  std::ostringstream out;
  out << "name: " << kExperiment << "\n"
      << "description: bench_coordinator_load, no worker ever reads the data\n"
      << "dataset: {path: " << data_dir << "}\n"
      << "metric: {name: val_acc, mode: max}\n"
      << "search:\n"
      << "  algorithm: random\n"
      << "  seed: 1\n"
      << "  trials: " << args.trials << "\n"
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
  double quality = 0;  // how good this trial's model is, for plausible metrics
  Clock::time_point asked;  // when Hello, Done or Request went out
  Clock::time_point request_at;
};

struct LoadResult {
  int completed = 0;
  long reports_acked = 0;
  double seconds = 0;  // first Hello to the last Done's Ack, without the held-back pause
  std::vector<float> assign_ms;
  std::vector<float> assign_at_ms;
  double rss_mb = -1;
  double cpu_s = -1;
  double bench_cpu_s = -1;  // this process, load generator included
  int waits = 0;
};

class LoadGenerator {
 public:
  LoadGenerator(const Args& args, const std::string& endpoint, pid_t coordinator)
      : args_(args), endpoint_(endpoint), coordinator_(coordinator), rng_(12345) {}

  // Runs every trial of the sweep; false (with *why) when the coordinator stalls or exits.
  bool run(Child& serve, LoadResult* out, std::string* why) {
    // The default of 1023 sockets per context is below the default connection count.
    context_.set(zmq::ctxopt::max_sockets, args_.connections + 64);
    workers_.resize(args_.connections);
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
      if (held_ && completed_ == args_.trials - 1) {
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
      if (completed_ == args_.trials && end_ == Clock::time_point{}) end_ = now;
      // Every trial ended: the Shutdowns are a courtesy, not worth waiting long for.
      if (completed_ == args_.trials && (!serve.running() || now - end_ > kShutdownGrace)) break;
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
    out->assign_ms = std::move(assign_ms_);
    out->assign_at_ms = std::move(assign_at_ms_);
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
      assign_ms_.push_back(
          std::chrono::duration<float, std::milli>(Clock::now() - w.asked).count());
      assign_at_ms_.push_back(std::chrono::duration<float, std::milli>(w.asked - start_).count());
      w.trial = assign->trial;
      w.attempt = assign->attempt;
      w.phase = Worker::Phase::kAwaitAcks;
      w.unacked = kEpochs;
      w.quality = std::uniform_real_distribution<double>(0.55, 0.92)(rng_);
      for (int epoch = 1; epoch <= kEpochs; ++epoch) {
        Report r;
        r.trial = w.trial;
        r.attempt = w.attempt;
        r.epoch = epoch;
        r.metrics = metrics(w, epoch);
        send(w, r);
      }
    } else if (const auto* ack = std::get_if<Ack>(&m)) {
      if (ack->epoch == 0) {
        ++completed_;
        return;
      }
      ++reports_acked_;
      if (w.phase == Worker::Phase::kAwaitAcks && ack->trial == w.trial && --w.unacked == 0) {
        if (++dones_ == args_.trials && completed_ < args_.trials - 1) {
          // The coordinator exits on the last Done: measure it first (see run()).
          w.phase = Worker::Phase::kHoldingLastDone;
          held_ = &w;
          return;
        }
        send_done(w);
      }
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

  const Args& args_;
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
  std::vector<float> assign_ms_;
  std::vector<float> assign_at_ms_;  // when each was asked for, since the first Hello
  Clock::time_point start_{};
  Clock::time_point end_{};
};

double percentile(std::vector<float> values, double p) {
  if (values.empty()) return 0;
  const auto k = static_cast<std::size_t>(std::ceil(p * values.size())) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<long>(k), values.end());
  return values[k];
}

// The Optuna peer's trials/s, or nullopt (with *why) when it fails.
std::optional<double> run_optuna(const Args& args, const std::string& dir, std::string* why) {
  const std::string log = dir + "/optuna.log";
  Child peer({kPython, kOptunaScript, "--dir", dir, "--trials", std::to_string(args.optuna_trials),
              "--seconds", std::to_string(args.optuna_seconds)},
             log);
  const int rc = peer.wait(std::chrono::seconds(static_cast<long>(args.optuna_seconds) + 120));
  const std::string text = peer.log();
  std::string last;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) last = line;
  const auto doc = nlohmann::json::parse(last, nullptr, false);
  if (rc != 0 || doc.is_discarded() || !doc.contains("trials_per_s") ||
      !doc["trials_per_s"].is_number()) {
    *why = "the Optuna peer failed (exit " + std::to_string(rc) + "; scripts/bench installs "
           "python3-optuna):\n" + text;
    return std::nullopt;
  }
  return doc["trials_per_s"].get<double>();
}

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
  const auto cleanup = [&] {
    if (!args.keep) std::filesystem::remove_all(dir);
  };
  std::filesystem::create_directories(dir + "/data");
  const std::string spec = dir + "/load.yaml";
  const std::string store = dir + "/load.db";
  std::ofstream(spec) << spec_text(args, dir + "/data");

  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  LoadResult load;
  double trials_command_s = -1;
  {
    Child serve({args.bin + "/trellis", "--store", store, "--log-level", args.log_level, "serve",
                 spec, "--bind", endpoint, "--insecure", "--checkpoints", "none"},
                dir + "/serve.log");
    if (!serve.started()) {
      std::cerr << "bench_coordinator_load: cannot start " << args.bin << "/trellis\n";
      cleanup();
      return 1;
    }
    LoadGenerator generator(args, endpoint, serve.pid());
    std::string why;
    if (!generator.run(serve, &load, &why)) {
      const std::string log = serve.log();
      std::cerr << "bench_coordinator_load: " << why << "\n... coordinator log (end):\n"
                << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
      cleanup();
      return 1;
    }
    // It prints the ranking and exits once the sweep is over.
    if (const int rc = serve.wait(300s); rc != 0) {
      std::cerr << "bench_coordinator_load: the coordinator exited with " << rc << "\n";
      cleanup();
      return 1;
    }
  }
  {
    const auto t0 = Clock::now();
    Child trials({args.bin + "/trellis", "--store", store, "trials", kExperiment},
                 dir + "/trials.log");
    const int rc = trials.wait(300s);
    trials_command_s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (rc != 0) {
      std::cerr << "bench_coordinator_load: trellis trials failed:\n" << trials.log();
      cleanup();
      return 1;
    }
  }

  std::optional<double> optuna;
  std::string optuna_error;
  if (args.optuna_trials > 0) optuna = run_optuna(args, dir, &optuna_error);

  const double trials_per_s = load.completed / load.seconds;
  const double reports_per_s = load.reports_acked / load.seconds;
  const double p50 = percentile(load.assign_ms, 0.50);
  const double p99 = percentile(load.assign_ms, 0.99);
  std::printf("trellis serve (SQLite store, WAL) on loopback: %d trials x %d reports, %d "
              "connections\n",
              args.trials, kEpochs, args.connections);
  std::printf("%-34s %14s\n", "measure", "value");
  std::printf("%-34s %14.1f\n", "wall s (first Hello to last Ack)", load.seconds);
  std::printf("%-34s %14.0f\n", "trials/s", trials_per_s);
  std::printf("%-34s %14.0f\n", "durable reports/s (acknowledged)", reports_per_s);
  std::printf("%-34s %14.3f\n", "assign latency p50 ms", p50);
  std::printf("%-34s %14.3f\n", "assign latency p99 ms", p99);
  const double max_ms =
      load.assign_ms.empty() ? 0 : *std::max_element(load.assign_ms.begin(), load.assign_ms.end());
  std::printf("%-34s %14.3f\n", "assign latency max ms", max_ms);
  std::printf("%-34s %14.1f\n", "coordinator peak RSS MB (VmHWM)", load.rss_mb);
  std::printf("%-34s %14.1f\n", "coordinator CPU s", load.cpu_s);
  std::printf("%-34s %14.1f\n", "load generator CPU s", load.bench_cpu_s);
  std::printf("%-34s %14.3f\n", "`trellis trials` s (whole store)", trials_command_s);
  if (optuna) {
    std::printf("%-34s %14.1f\n", "optuna trials/s (SQLite storage)", *optuna);
    std::printf("%-34s %14.0f\n", "ratio to optuna", trials_per_s / *optuna);
  } else if (args.optuna_trials > 0) {
    std::fprintf(stderr, "bench_coordinator_load: %s\n", optuna_error.c_str());
  }
  if (args.keep) {
    std::ofstream latencies(dir + "/assign_latency.csv");
    latencies << "asked_at_ms,latency_ms\n";
    for (std::size_t i = 0; i < load.assign_ms.size(); ++i)
      latencies << load.assign_at_ms[i] << "," << load.assign_ms[i] << "\n";
    std::printf("spec, store, logs and assign_latency.csv kept in %s\n", dir.c_str());
  }
  cleanup();

  nlohmann::json summary = {{"benchmark", "coordinator_load"},
                            {"trials", args.trials},
                            {"connections", args.connections},
                            {"trials_per_s", trials_per_s},
                            {"optuna_trials_per_s", nullptr},
                            {"ratio_to_optuna", nullptr},
                            {"reports_per_s", reports_per_s},
                            {"p99_assign_ms", p99},
                            {"p50_assign_ms", p50},
                            {"rss_mb", load.rss_mb},
                            {"coordinator_cpu_s", load.cpu_s},
                            {"trials_command_s", trials_command_s}};
  if (optuna) {
    summary["optuna_trials_per_s"] = *optuna;
    summary["ratio_to_optuna"] = trials_per_s / *optuna;
  }
  std::printf("%s\n", summary.dump().c_str());
  return args.optuna_trials > 0 && !optuna ? 1 : 0;
}
