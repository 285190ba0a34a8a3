// trellis: the researcher's command line. `run` and `serve` host the coordinator; `trials`
// and `export` only read the store; `keys` manages the CURVE keys (common/keys.h).

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <iostream>
#include <thread>

#include "common/keys.h"
#include "common/logging.h"
#include "common/run_command.h"
#include "common/socket_factory.h"
#include "common/sweep_spec.h"
#include "coordinator/coordinator.h"
#include "coordinator/experiment_store.h"
#include "coordinator/exporter.h"
#include "coordinator/store_schema.h"
#include "coordinator/local_launcher.h"
#include "coordinator/slurm_allocation.h"
#include "coordinator/slurm_jobs.h"
#include "coordinator/trial_table.h"

namespace {

using namespace trellis;
using namespace trellis::coordinator;

std::atomic<int> g_signal{0};

void on_signal(int sig) { g_signal = sig; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int fail(const Status& s) {
  std::cerr << "trellis: " << s.message() << "\n";
  return 1;
}

struct CommonArgs {
  std::string store = "trellis.db";
  std::string log_level = "info";
};

struct ServeArgs {
  std::string spec;
  std::string bind;
  double liveness_s = 30;
  double stall_s = 0;  // 0: from each group's own step times
  double walltime_margin_s = 30;
  std::string checkpoints;  // default: "checkpoints" beside the store
  std::string key_dir;      // default: default_key_dir()
  bool insecure = false;    // plaintext, loopback only
  bool create_keys = false; // `run`: make the keys on first use
};

// Workers resolve paths on their own nodes, so the coordinator hands them absolute ones.
std::string checkpoint_dir(const CommonArgs& common, const ServeArgs& args) {
  namespace fs = std::filesystem;
  if (args.checkpoints == "none") return "";
  const fs::path dir = args.checkpoints.empty()
                           ? fs::absolute(common.store).parent_path() / "checkpoints"
                           : fs::absolute(args.checkpoints);
  return dir.lexically_normal().string();
}

// The best trials' models belong to the store they rank in, and go where it goes: STORE.models.
std::string model_dir(const std::string& store) {
  return std::filesystem::absolute(store).lexically_normal().string() + ".models";
}

struct RunArgs {
  ServeArgs serve;
  int groups = 0;
  std::string launcher = "auto";  // auto | mpirun | srun
  std::string mpirun = "mpirun";
  std::string srun = "srun";
  std::vector<std::string> mpirun_args;
};

Status open_store(const CommonArgs& common, bool read_only, std::unique_ptr<ExperimentStore>* out) {
  return ExperimentStore::Open(common.store, read_only, out);
}

// CURVE keys of the coordinator and the workers it admits, from the key directory.
Status load_security(const ServeArgs& args, CoordinatorOptions* options) {
  if (args.insecure) {
    options->security.curve = false;
    spdlog::warn("--insecure: plaintext ZeroMQ, anyone who can reach {} may join", args.bind);
    return Status::Ok();
  }
  const std::string dir = args.key_dir.empty() ? default_key_dir() : args.key_dir;
  if (args.create_keys && !any_key_file_exists(dir)) {
    if (Status s = init_keys(dir, /*force=*/false); !s.ok()) return s;
    spdlog::info("created CURVE keys in {} (as `trellis keys init` would)", dir);
  }
  KeyPair pair;
  if (Status s = load_key_pair(dir, kCoordinatorKeyName, &pair); !s.ok()) return s;
  options->security.public_key = pair.public_key;
  options->security.secret_key = pair.secret_key;
  if (Status s = load_authorized_workers(dir, &options->authorized_workers); !s.ok()) return s;
  spdlog::info("CURVE on: coordinator key {}, {} authorized worker key(s) from {}",
               pair.public_key, options->authorized_workers.size(), dir);
  return Status::Ok();
}

// Opens the store and starts a coordinator of `spec` (loaded by the command, which may check
// it before anything starts) bound to `bind`.
Status start_coordinator(const CommonArgs& common, const ServeArgs& args, const SweepSpec& spec,
                         std::unique_ptr<ExperimentStore>* store,
                         std::unique_ptr<Coordinator>* coordinator) {
  // Before the store is touched: a refused bind leaves no experiment behind.
  if (args.insecure && !is_loopback_endpoint(args.bind))
    return Status::Error("refusing --insecure on " + args.bind +
                         ": plaintext is for loopback endpoints only (tcp://127.0.0.1:PORT); "
                         "drop --insecure to serve with CURVE");
  CoordinatorOptions options;
  if (Status s = load_security(args, &options); !s.ok()) return s;
  if (Status s = open_store(common, false, store); !s.ok()) return s;
  Durability durability;
  if (Status s = (*store)->durability(&durability); !s.ok()) return s;
  if (durability.filesystem.network)
    spdlog::warn("store {} is on {}, where SQLite's WAL is unsafe: using a rollback journal "
                 "(slower commits); a local disk is faster (--store /local/path.db)",
                 common.store, durability.filesystem.name);
  options.bind = args.bind;
  options.liveness = std::chrono::milliseconds(static_cast<long>(args.liveness_s * 1000));
  options.stall = std::chrono::milliseconds(static_cast<long>(args.stall_s * 1000));
  options.walltime_margin =
      std::chrono::milliseconds(static_cast<long>(args.walltime_margin_s * 1000));
  options.checkpoint_dir = checkpoint_dir(common, args);
  options.model_dir = model_dir(common.store);
  *coordinator = std::make_unique<Coordinator>(store->get(), spec, options);
  return (*coordinator)->Start();
}

constexpr const char* kStallHelp =
    "seconds without training progress (steps, as the heartbeats report them) after which a "
    "busy worker group that still answers is declared lost and its trial requeued; 0: ten "
    "times the group's slowest observed wait between steps, at least 120 s, and 120 s before "
    "an attempt's first step (data loading)";

int print_ranking(ExperimentStore& store, const std::string& experiment) {
  TrialTableOptions options;
  options.experiment = experiment;
  if (Status s = print_trials(store, options, std::cout); !s.ok()) return fail(s);
  return 0;
}

int cmd_serve(const CommonArgs& common, const ServeArgs& args) {
  std::unique_ptr<ExperimentStore> store;
  std::unique_ptr<Coordinator> coordinator;
  SweepSpec spec;
  if (Status s = load_sweep_spec(args.spec, &spec); !s.ok()) return fail(s);
  if (Status s = start_coordinator(common, args, spec, &store, &coordinator); !s.ok())
    return fail(s);
  spdlog::info("workers join with: mpirun -np {} trellis-worker --connect {}",
               spec.ranks_per_trial, coordinator->endpoint());
  if (Status s = coordinator->Run([] { return g_signal == 0; }); !s.ok())
    return fail(s.With("the sweep stopped (the store keeps what was acknowledged; serve the same "
                       "spec and store again to resume)"));
  if (g_signal != 0) {
    spdlog::warn("interrupted: running trials will be requeued when the sweep is resumed");
    return 130;
  }
  return print_ranking(*store, spec.name);
}

// Where `trellis run` starts its groups, and how many: this machine's cores with mpirun, or the
// Slurm allocation it runs in with srun (auto: srun exactly when inside an allocation).
Status plan_launch(const RunArgs& args, const SweepSpec& spec, LaunchOptions* launch,
                   std::optional<SlurmAllocation>* allocation) {
  if (Status s = current_allocation(allocation); !s.ok()) return s;
  if (args.launcher == "srun" || (args.launcher == "auto" && allocation->has_value())) {
    if (!allocation->has_value())
      return Status::Error("--launcher srun needs a Slurm allocation (run it inside sbatch or "
                           "salloc), and SLURM_JOB_ID is not set");
    launch->launcher = Launcher::kSrun;
  } else if (args.launcher != "mpirun" && args.launcher != "auto") {
    return Status::Error("--launcher '" + args.launcher + "': expected auto, mpirun or srun");
  }
  launch->ranks_per_group = spec.ranks_per_trial;
  if (launch->launcher == Launcher::kMpirun) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    launch->groups = args.groups > 0 ? args.groups : std::max(1, cores / spec.ranks_per_trial);
    return Status::Ok();
  }
  const SlurmAllocation& a = **allocation;
  // A group's ranks on as few nodes as hold them, so most of its all-reduce stays in a node.
  const int per_node = std::max(1, a.min_cpus_per_node());
  launch->nodes_per_group = (spec.ranks_per_trial + per_node - 1) / per_node;
  if (launch->nodes_per_group > a.nodes)
    return Status::Error("a group of " + std::to_string(spec.ranks_per_trial) + " ranks needs " +
                         std::to_string(launch->nodes_per_group) + " nodes of " +
                         std::to_string(per_node) + " CPUs, and job " + a.job_id + " has " +
                         std::to_string(a.nodes));
  const int slots = a.tasks > 0 ? a.tasks : a.total_cpus();
  launch->groups = args.groups > 0 ? args.groups : std::max(1, slots / spec.ranks_per_trial);
  return Status::Ok();
}

int cmd_run(const CommonArgs& common, RunArgs args) {
  std::unique_ptr<ExperimentStore> store;
  std::unique_ptr<Coordinator> coordinator;
  SweepSpec spec;
  LaunchOptions launch;
  std::optional<SlurmAllocation> allocation;
  // The launch plan is checked before anything is started.
  if (Status s = load_sweep_spec(args.serve.spec, &spec); !s.ok()) return fail(s);
  if (Status s = plan_launch(args, spec, &launch, &allocation); !s.ok()) return fail(s);
  const bool srun = launch.launcher == Launcher::kSrun;
  // Groups on other nodes reach the coordinator over the allocation's network (with CURVE).
  if (args.serve.bind.empty()) args.serve.bind = srun ? "tcp://*:*" : "tcp://127.0.0.1:*";
  args.serve.create_keys = true;
  // Local workers find the coordinator's key directory through the environment they inherit.
  if (!args.serve.insecure && !args.serve.key_dir.empty())
    setenv("TRELLIS_HOME", args.serve.key_dir.c_str(), 1);
  if (Status s = start_coordinator(common, args.serve, spec, &store, &coordinator); !s.ok())
    return fail(s);

  launch.endpoint = coordinator->endpoint();
  if (srun) {
    // The bound wildcard address is no address to connect to: the batch node's name is.
    const std::string& bound = launch.endpoint;
    launch.endpoint = "tcp://" + allocation->node_name + bound.substr(bound.rfind(':'));
    spdlog::info("inside Slurm job {} ({} node(s)): {} group(s) of {} rank(s) on {} node(s) "
                 "each, with srun; workers connect to {}",
                 allocation->job_id, allocation->nodes, launch.groups, launch.ranks_per_group,
                 launch.nodes_per_group, launch.endpoint);
  }
  launch.mpirun = args.mpirun;
  launch.srun = args.srun;
  launch.mpirun_args = args.mpirun_args;
  launch.log_level = common.log_level;
  if (args.serve.insecure) launch.worker_args.push_back("--insecure");
  LocalLauncher launcher;
  if (!coordinator->finished()) {
    if (Status s = launcher.Launch(launch); !s.ok()) return fail(s);
  }
  bool workers_gone = false;
  Status s = coordinator->Run([&] {
    if (g_signal != 0) return false;
    if (!launcher.any_running()) workers_gone = true;
    return !workers_gone;
  });
  // After an error the groups are told at once (SIGTERM: they checkpoint and exit); after the
  // sweep they are given time to exit by themselves.
  launcher.Stop(s.ok() ? std::chrono::milliseconds(15000) : std::chrono::milliseconds(0));
  if (!s.ok()) return fail(s.With("the sweep stopped (the store keeps what was acknowledged; "
                                  "rerun the same command to resume)"));
  if (g_signal != 0) {
    spdlog::warn("interrupted: `trellis run` with the same spec and store resumes the sweep");
    return 130;
  }
  if (workers_gone && !coordinator->finished()) {
    std::string why;
    for (const auto& f : launcher.failures()) why += "; " + f;
    return fail(Status::Error("every worker group exited before the sweep finished" + why +
                              " (rerun the same command to resume)"));
  }
  return print_ranking(*store, spec.name);
}

struct SubmitArgs {
  ServeArgs serve;
  int groups = 1;
  int nodes_per_group = 1;
  std::string time;
  std::string partition;
  std::string account;
  int max_running = 0;
  std::vector<std::string> sbatch_args;
  std::string advertise;  // the name compute nodes reach this node by; default: its host name
  int port = 0;           // 0: the last submission's, else any free one
  std::string worker;     // default: the trellis-worker beside this trellis
};

// How often a detached coordinator asks Slurm whether its worker jobs still exist. Two answers
// in a row without one (the jobs died at start, or were cancelled) end the serving.
constexpr auto kJobCheckInterval = std::chrono::seconds(10);

bool is_live_trellis(pid_t pid) {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("State:", 0) == 0 && line.find('Z') != std::string::npos) return false;
  std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline");
  std::string text((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
  return text.find("trellis") != std::string::npos;
}

// The detached coordinator of `trellis submit`: tells the submitting process (through `ready`)
// where it listens, or why it could not start, then serves the sweep; when the sweep ends, it
// cancels the worker jobs still queued (running ones leave on the Shutdown they are sent).
std::string joined(const std::vector<std::string>& items, const char* separator = ", ") {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

int serve_detached(const CommonArgs& common, const ServeArgs& args, const SweepSpec& spec,
                   int ready, const std::string& record) {
  namespace fs = std::filesystem;
  std::unique_ptr<ExperimentStore> store;
  std::unique_ptr<Coordinator> coordinator;
  const Status started = start_coordinator(common, args, spec, &store, &coordinator);
  const std::string line =
      started.ok() ? "OK " + coordinator->endpoint() + "\n" : "ERR " + started.message() + "\n";
  (void)!write(ready, line.data(), line.size());
  close(ready);
  if (!started.ok()) return fail(started);
  auto next_check = std::chrono::steady_clock::now() + kJobCheckInterval;
  int checks_without_jobs = 0;
  std::vector<std::string> ended;
  const Status s = coordinator->Run([&] {
    if (g_signal != 0) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_check) return true;
    next_check = now + kJobCheckInterval;
    Submission submission;
    std::vector<std::string> live;
    if (!read_submission(record, &submission).ok() || submission.jobs.empty()) return true;
    if (Status q = live_jobs(submission.jobs, &live); !q.ok()) {
      spdlog::warn("cannot tell whether the worker jobs still run: {}", q.message());
      return true;
    }
    checks_without_jobs = live.empty() ? checks_without_jobs + 1 : 0;
    ended = submission.jobs;
    return checks_without_jobs < 2;
  });
  if (s.ok() && g_signal == 0 && !coordinator->finished()) {
    std::string logs;
    for (const std::string& id : ended)
      logs += (logs.empty() ? "" : ", ") + fs::path(record).parent_path().string() + "/trellis-" +
              spec.name + "-" + id + "_*.log";
    return fail(Status::Error("every worker job (" + joined(ended) +
                              ") ended before the sweep finished; their logs: " + logs +
                              ". The store keeps what was acknowledged: `trellis submit` of the "
                              "same spec and store resumes"));
  }
  if (coordinator->finished()) {
    Submission submission;
    if (Status r = read_submission(record, &submission); r.ok()) {
      if (Status c = cancel_jobs(submission.jobs, /*pending_only=*/true); !c.ok())
        spdlog::warn("the sweep ended, but its queued worker jobs were not cancelled: {}",
                     c.message());
      else if (!submission.jobs.empty())
        spdlog::info("the sweep ended: cancelled the queued worker jobs of array(s) {}",
                     joined(submission.jobs));
    }
  }
  if (!s.ok()) return fail(s.With("the sweep stopped (`trellis submit` of the same spec and "
                                  "store resumes it)"));
  if (g_signal != 0) {
    spdlog::warn("stopped by signal {}: `trellis submit` of the same spec and store resumes",
                 static_cast<int>(g_signal));
    return 130;
  }
  return print_ranking(*store, spec.name);
}

int cmd_submit(const CommonArgs& common, SubmitArgs args) {
  namespace fs = std::filesystem;
  SweepSpec spec;
  if (Status s = load_sweep_spec(args.serve.spec, &spec, DatasetCheck::kOnTheWorkers); !s.ok())
    return fail(s);
  spdlog::info("spec {} checked, except its dataset {}: the workers check it, on nodes that may "
               "mount what this one does not",
               args.serve.spec, spec.dataset.path);
  if (args.groups < 1 || args.nodes_per_group < 1)
    return fail(Status::Error("--groups and --nodes-per-group must be at least 1"));
  if (args.nodes_per_group > spec.ranks_per_trial)
    return fail(Status::Error("--nodes-per-group " + std::to_string(args.nodes_per_group) +
                              " is more nodes than a group has ranks (ranks_per_trial " +
                              std::to_string(spec.ranks_per_trial) + ")"));
  {
    std::string output;
    int code = 0;
    if (Status s = run_command({"sbatch", "--version"}, &output, &code); !s.ok() || code != 0)
      return fail(Status::Error("trellis submit needs Slurm's sbatch: " +
                                (s.ok() ? output : s.message())));
  }
  const std::string store = fs::absolute(common.store).lexically_normal().string();
  const std::string dir = fs::path(store).parent_path().string();
  const std::string log = dir + "/trellis-" + spec.name + ".log";
  const std::string record = submission_path(store, spec.name);
  Submission previous;
  const bool resubmitted = read_submission(record, &previous).ok();
  if (resubmitted && is_live_trellis(previous.coordinator))
    return fail(Status::Error("experiment '" + spec.name + "' is already served by coordinator pid " +
                              std::to_string(previous.coordinator) + " (" + previous.endpoint +
                              "); `trellis status " + spec.name + "` follows it, `trellis cancel " +
                              spec.name + "` stops it"));
  // Jobs of the last submission that still run reconnect to the same port.
  if (args.port == 0 && resubmitted) {
    const auto colon = previous.endpoint.rfind(':');
    if (colon != std::string::npos) args.port = std::atoi(previous.endpoint.c_str() + colon + 1);
  }
  if (args.serve.bind.empty())
    args.serve.bind = "tcp://*:" + (args.port > 0 ? std::to_string(args.port) : std::string("*"));
  args.serve.create_keys = true;
  std::string advertise = args.advertise;
  if (advertise.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    advertise = host;
  }

  int ready[2];
  if (pipe(ready) != 0) return fail(Status::Error(std::string("pipe: ") + std::strerror(errno)));
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = fork();
  if (pid < 0) return fail(Status::Error(std::string("fork: ") + std::strerror(errno)));
  if (pid == 0) {
    // Detached: its own session (no terminal, so logout and SIGHUP do not reach it), its
    // output in the log beside the store.
    close(ready[0]);
    setsid();
    signal(SIGHUP, SIG_IGN);
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int in = open("/dev/null", O_RDONLY);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    if (in >= 0) dup2(in, 0);
    _exit(serve_detached(common, args.serve, spec, ready[1], record));
  }
  close(ready[1]);
  std::string answer;
  char c = 0;
  while (read(ready[0], &c, 1) == 1 && c != '\n') answer += c;
  close(ready[0]);
  if (answer.rfind("OK ", 0) != 0) {
    waitpid(pid, nullptr, 0);
    return fail(Status::Error(answer.rfind("ERR ", 0) == 0
                                  ? answer.substr(4)
                                  : "the coordinator died at start; its log: " + log));
  }
  const std::string bound = answer.substr(3);
  WorkerJobs jobs;
  jobs.experiment = spec.name;
  jobs.endpoint = "tcp://" + advertise + bound.substr(bound.rfind(':'));
  jobs.worker = args.worker.empty() ? executable_dir() + "/trellis-worker"
                                    : fs::absolute(args.worker).string();
  jobs.log_level = common.log_level;
  jobs.groups = args.groups;
  jobs.ranks_per_group = spec.ranks_per_trial;
  jobs.nodes_per_group = args.nodes_per_group;
  jobs.time = args.time;
  jobs.partition = args.partition;
  jobs.account = args.account;
  jobs.max_running = args.max_running;
  jobs.sbatch_args = args.sbatch_args;
  jobs.dir = dir;
  // Jobs of the last submission still queued or running reconnect to this coordinator: a
  // new array on top of them would double the groups the researcher asked for.
  std::vector<std::string> still_live;
  if (resubmitted) {
    if (Status s = live_jobs(previous.jobs, &still_live); !s.ok()) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
      return fail(s.With("cannot tell whether the last submission's jobs still run, so the "
                         "coordinator was stopped"));
    }
  }
  if (!still_live.empty()) {
    Submission submission = previous;
    submission.coordinator = pid;
    submission.endpoint = jobs.endpoint;
    submission.log = log;
    if (Status s = write_submission(record, submission); !s.ok()) return fail(s);
    std::cout << "Coordinator pid " << pid << " serves '" << spec.name << "' again on "
              << jobs.endpoint << "; its log: " << log << "\n"
              << "Worker job(s) " << joined(still_live)
              << " of the last submission are still queued or running: they reconnect to it, "
                 "so no new job was submitted (`trellis cancel " << spec.name
              << "` and submit again for new ones)\n";
    return 0;
  }
  std::string job_id, script;
  if (Status s = submit_worker_jobs(jobs, &job_id, &script); !s.ok()) {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    return fail(s.With("no worker job was submitted, and the coordinator was stopped; the store "
                       "keeps the experiment: fix this and submit again"));
  }
  Submission submission;
  submission.coordinator = pid;
  submission.endpoint = jobs.endpoint;
  submission.log = log;
  if (resubmitted)
    for (const std::string& id : previous.jobs)
      if (id != job_id) submission.jobs.push_back(id);
  submission.jobs.push_back(job_id);
  if (Status s = write_submission(record, submission); !s.ok()) return fail(s);
  std::cout << "Submitted worker job array " << job_id << " (" << args.groups << " group(s) of "
            << spec.ranks_per_trial << " rank(s) on " << args.nodes_per_group
            << " node(s); script " << script << ")\n"
            << "Coordinator pid " << pid << " serves '" << spec.name << "' on " << jobs.endpoint
            << "; its log: " << log << "\n"
            << "Follow it with `trellis --store " << store << " status " << spec.name
            << "`; stop it with `trellis --store " << store << " cancel " << spec.name << "`\n";
  return 0;
}

int cmd_cancel(const CommonArgs& common, const std::string& experiment) {
  const std::string record = submission_path(common.store, experiment);
  Submission submission;
  if (Status s = read_submission(record, &submission); !s.ok()) return fail(s);
  if (is_live_trellis(submission.coordinator)) {
    kill(submission.coordinator, SIGTERM);
    for (int i = 0; i < 200 && is_live_trellis(submission.coordinator); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::cout << "stopped coordinator pid " << submission.coordinator << "\n";
  }
  if (Status s = cancel_jobs(submission.jobs, /*pending_only=*/false); !s.ok()) return fail(s);
  for (const std::string& id : submission.jobs) std::cout << "cancelled job " << id << "\n";
  std::cout << "the store keeps what was acknowledged: `trellis submit` of the same spec resumes\n";
  return 0;
}

// Where a sweep stands: the experiment and its trials by state from the store (read-only, so
// while the coordinator writes), and for a `trellis submit` sweep its coordinator and jobs.
int cmd_status(const CommonArgs& common, ExperimentStore& store, const std::string& name) {
  std::optional<ExperimentRecord> experiment;
  if (Status s = store.find_experiment(name, &experiment); !s.ok()) return fail(s);
  if (!experiment)
    return fail(Status::Error("no experiment '" + name + "' in " + common.store));
  std::vector<TrialSummary> trials;
  if (Status s = store.trial_summaries(experiment->id, &trials); !s.ok()) return fail(s);
  std::map<std::string, int> by_state;
  for (const TrialSummary& t : trials) ++by_state[to_string(t.state)];
  std::cout << "experiment " << name << ": " << experiment->state << ", " << trials.size()
            << " trial(s)";
  for (const auto& [state, n] : by_state) std::cout << ", " << n << " " << state;
  std::cout << "\n";
  Submission submission;
  if (!read_submission(submission_path(common.store, name), &submission).ok()) return 0;
  std::cout << "coordinator pid " << submission.coordinator << ": "
            << (is_live_trellis(submission.coordinator) ? "running" : "not running") << ", "
            << submission.endpoint << ", log " << submission.log << "\n";
  if (submission.jobs.empty()) return 0;
  const std::string jobs = joined(submission.jobs, ",");
  std::string output;
  int code = 0;
  const Status s = run_command({"squeue", "-h", "-j", jobs, "-o", "%i %T %M %R"}, &output, &code);
  std::cout << "worker jobs " << jobs << ":";
  if (!s.ok() || code != 0) {
    std::cout << " squeue cannot tell (" << (s.ok() ? output : s.message()) << ")\n";
    return 0;
  }
  std::cout << (output.empty() ? " none queued or running\n" : "\n" + output);
  return 0;
}

int cmd_events(ExperimentStore& store, const std::string& name, std::int64_t after) {
  ExperimentRecord experiment;
  if (Status s = resolve_experiment(store, name, &experiment); !s.ok()) return fail(s);
  std::vector<EventRecord> events;
  if (Status s = store.list_events(experiment.id, after, &events); !s.ok()) return fail(s);
  std::vector<TrialRecord> trials;
  if (Status s = store.list_trials(experiment.id, &trials); !s.ok()) return fail(s);
  std::map<std::int64_t, std::int32_t> number_of;
  for (const TrialRecord& t : trials) number_of[t.id] = t.number;
  for (const EventRecord& e : events) {
    std::cout << e.seq << "  " << e.created_at << "  " << e.kind;
    if (const auto it = number_of.find(e.trial_id); it != number_of.end())
      std::cout << "  trial " << it->second;
    if (!e.group.empty()) std::cout << "  group " << e.group;
    std::cout << "  " << e.body << "\n";
  }
  return 0;
}

int cmd_keys_show(const std::string& dir) {
  std::string coordinator_pub, worker_pub;
  std::vector<std::string> authorized;
  for (const Status& s : {load_public_key(dir, kCoordinatorKeyName, &coordinator_pub),
                          load_public_key(dir, kWorkerKeyName, &worker_pub),
                          load_authorized_workers(dir, &authorized)}) {
    if (!s.ok()) return fail(s);
  }
  std::cout << "key directory:       " << dir << "\n"
            << "coordinator public:  " << coordinator_pub << "\n"
            << "worker public:       " << worker_pub << "\n"
            << "authorized workers:  " << authorized.size() << "\n";
  for (const auto& k : authorized) std::cout << "  " << k << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trellis: hyperparameter sweeps on HPC clusters (coordinator and store)"};
  app.require_subcommand(1);
  CommonArgs common;
  app.add_option("--store", common.store, "experiment store (SQLite file)")
      ->capture_default_str();
  app.add_option("--log-level", common.log_level, "trace|debug|info|warn|error|off")
      ->capture_default_str();

  RunArgs run;
  auto* run_cmd = app.add_subcommand(
      "run", "run a sweep here: the coordinator plus its worker groups, started with mpirun on "
             "this machine or, inside a Slurm allocation, with srun across its nodes; exits "
             "when every trial has ended, then prints the ranked trials");
  run_cmd->fallthrough();  // `trellis run SPEC --store DB`, as the sbatch template writes it
  run_cmd->add_option("spec", run.serve.spec, "sweep spec (YAML)")->required();
  run_cmd->add_option("--groups", run.groups,
                      "worker groups to start (default: cores / ranks_per_trial, at least 1; "
                      "with srun: the job's tasks, or else its CPUs, / ranks_per_trial)");
  run_cmd->add_option("--launcher", run.launcher,
                      "how groups start: mpirun (on this machine), srun (one job step per group "
                      "inside the Slurm allocation this runs in), auto (srun inside an "
                      "allocation, else mpirun)")
      ->capture_default_str();
  run_cmd->add_option("--mpirun", run.mpirun, "mpirun executable")->capture_default_str();
  run_cmd->add_option("--srun", run.srun, "srun executable")->capture_default_str();
  run_cmd->add_option("--mpirun-arg", run.mpirun_args, "extra argument for mpirun (or srun), repeatable; write --mpirun-arg=--mca for arguments that start with a dash")
      ->allow_extra_args(false);
  run_cmd->add_option("--liveness", run.serve.liveness_s,
                      "seconds of silence after which a busy worker group is declared lost")
      ->capture_default_str();
  run_cmd->add_option("--stall", run.serve.stall_s, kStallHelp)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  run_cmd->add_option("--walltime-margin", run.serve.walltime_margin_s,
                         "seconds kept free before a Slurm job's time limit: a group is given only "
                         "whole epochs that end before it (the job's end comes from the group)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  run_cmd->add_option("--checkpoints", run.serve.checkpoints,
                      "directory for trial checkpoints, reachable by every worker (default: "
                      "checkpoints/ beside the store; none: no checkpoints)");
  run_cmd->add_option("--keys", run.serve.key_dir,
                      "CURVE key directory (default: $TRELLIS_HOME, else ~/.trellis); made on "
                      "first use");
  run_cmd->add_flag("--insecure", run.serve.insecure,
                    "plaintext ZeroMQ between the coordinator and its local workers (loopback "
                    "only)");

  ServeArgs serve;
  serve.bind = "tcp://127.0.0.1:5555";
  auto* serve_cmd = app.add_subcommand(
      "serve", "serve a sweep to worker groups that connect with `mpirun -np K trellis-worker "
               "--connect ENDPOINT`; exits when every trial has ended");
  serve_cmd->add_option("spec", serve.spec, "sweep spec (YAML)")->required();
  serve_cmd->add_option("--bind", serve.bind, "ZeroMQ endpoint to listen on")
      ->capture_default_str();
  serve_cmd->add_option("--liveness", serve.liveness_s,
                        "seconds of silence after which a busy worker group is declared lost")
      ->capture_default_str();
  serve_cmd->add_option("--stall", serve.stall_s, kStallHelp)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  serve_cmd->add_option("--walltime-margin", serve.walltime_margin_s,
                         "seconds kept free before a Slurm job's time limit: a group is given only "
                         "whole epochs that end before it (the job's end comes from the group)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  serve_cmd->add_option("--checkpoints", serve.checkpoints,
                        "directory for trial checkpoints, reachable by every worker (default: "
                        "checkpoints/ beside the store; none: no checkpoints)");
  serve_cmd->add_option("--keys", serve.key_dir,
                        "CURVE key directory (default: $TRELLIS_HOME, else ~/.trellis; create "
                        "it with `trellis keys init`)");
  serve_cmd->add_flag("--insecure", serve.insecure,
                      "plaintext ZeroMQ for development; refused unless --bind is a loopback "
                      "address");

  std::string keys_dir;
  bool keys_force = false;
  std::string authorize_key;
  auto* keys_cmd = app.add_subcommand(
      "keys", "CURVE keys of the coordinator and the workers ($TRELLIS_HOME, else ~/.trellis)");
  keys_cmd->require_subcommand(1);
  keys_cmd->fallthrough();  // `trellis keys init --dir DIR` as well as `keys --dir DIR init`
  keys_cmd->add_option("--dir", keys_dir,
                       "key directory (default: $TRELLIS_HOME, else ~/.trellis)");
  auto* keys_init_cmd = keys_cmd->add_subcommand(
      "init", "make the coordinator and worker key pairs and authorize the worker key");
  keys_init_cmd->add_flag("--force", keys_force,
                          "replace existing keys (workers with the old keys are refused)");
  auto* keys_show_cmd =
      keys_cmd->add_subcommand("show", "print the public keys and the allow-list");
  auto* keys_authorize_cmd = keys_cmd->add_subcommand(
      "authorize", "add a worker public key (the line of another worker.pub) to the allow-list");
  // Z85 has '-': one key in 85 starts with it, and would read as an option without the `--`.
  keys_authorize_cmd->add_option("key", authorize_key,
                                 "worker public key (40 characters of Z85); write `trellis keys "
                                 "authorize -- KEY`, since a key may start with '-'")
      ->required();

  TrialTableOptions table;
  bool all_trials = false;
  auto* trials_cmd = app.add_subcommand("trials", "list an experiment's trials, best first");
  trials_cmd->add_option("experiment", table.experiment, "experiment name (default: the latest)");
  trials_cmd->add_option("--sort", table.sort_metric,
                         "metric to rank by (default: the experiment's metric)");
  trials_cmd->add_option("--limit", table.limit, "show the best N trials (0: all)")
      ->capture_default_str();
  trials_cmd->add_flag("--all", all_trials, "show every trial (as --limit 0)");

  std::string export_name, export_format = "json", export_output;
  auto* export_cmd = app.add_subcommand(
      "export", "print an experiment's trials, parameters and every epoch's metrics");
  export_cmd->add_option("experiment", export_name, "experiment name")->required();
  export_cmd->add_option("--format", export_format, "json|csv")->capture_default_str();
  export_cmd->add_option("--output,-o", export_output, "write to this file instead of stdout");

  std::string events_name;
  std::int64_t events_after = 0;
  auto* events_cmd = app.add_subcommand(
      "events", "print an experiment's story: proposals, attempts, pauses, promotions, "
                "exploits, requeues, ends, groups joining and lost (one line each, in order)");
  events_cmd->add_option("experiment", events_name, "experiment name (default: the latest)");
  events_cmd->add_option("--after", events_after, "only events after this sequence number");

  SubmitArgs submit;
  auto* submit_cmd = app.add_subcommand(
      "submit", "serve a sweep from this (login) node to worker groups that run as a Slurm job "
                "array: starts the coordinator detached (it survives logout; its log goes "
                "beside the store), submits the workers, prints the job id and returns");
  submit_cmd->fallthrough();
  submit_cmd->add_option("spec", submit.serve.spec, "sweep spec (YAML)")->required();
  submit_cmd->add_option("--groups", submit.groups, "worker groups: the job array's tasks")
      ->capture_default_str();
  submit_cmd->add_option("--nodes-per-group", submit.nodes_per_group,
                         "nodes each group's ranks_per_trial ranks are spread over")
      ->capture_default_str();
  submit_cmd->add_option("--time", submit.time, "each worker job's time limit (sbatch --time)");
  submit_cmd->add_option("--partition", submit.partition, "sbatch --partition");
  submit_cmd->add_option("--account", submit.account, "sbatch --account");
  submit_cmd->add_option("--max-running", submit.max_running,
                         "groups running at once (the array's %throttle; 0: all)")
      ->capture_default_str();
  submit_cmd->add_option("--sbatch-arg", submit.sbatch_args,
                         "extra sbatch argument, repeatable (write --sbatch-arg=--qos=high)")
      ->allow_extra_args(false);
  submit_cmd->add_option("--advertise", submit.advertise,
                         "host name or address the compute nodes reach this node by (default: "
                         "its host name)");
  submit_cmd->add_option("--worker", submit.worker,
                         "trellis-worker for the nodes to run, a path they all see (default: the "
                         "one beside this trellis)");
  submit_cmd->add_option("--port", submit.port,
                         "port to serve on (default: the last submission's, else any free one)");
  submit_cmd->add_option("--liveness", submit.serve.liveness_s,
                         "seconds of silence after which a busy worker group is declared lost")
      ->capture_default_str();
  submit_cmd->add_option("--stall", submit.serve.stall_s, kStallHelp)
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  submit_cmd->add_option("--walltime-margin", submit.serve.walltime_margin_s,
                         "seconds kept free before a Slurm job's time limit: a group is given only "
                         "whole epochs that end before it (the job's end comes from the group)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  submit_cmd->add_option("--checkpoints", submit.serve.checkpoints,
                         "directory for trial checkpoints, reachable by every worker (default: "
                         "checkpoints/ beside the store)");
  submit_cmd->add_option("--keys", submit.serve.key_dir,
                         "CURVE key directory, which every node must see (default: "
                         "$TRELLIS_HOME, else ~/.trellis); made on first use");

  std::string cancel_name;
  auto* cancel_cmd = app.add_subcommand(
      "cancel", "stop the coordinator `trellis submit` started for an experiment and cancel its "
                "worker jobs");
  cancel_cmd->add_option("experiment", cancel_name, "experiment name")->required();

  std::string status_name;
  auto* status_cmd = app.add_subcommand(
      "status", "where a sweep stands: its trials by state, and for `trellis submit` its "
                "coordinator and worker jobs");
  status_cmd->add_option("experiment", status_name, "experiment name")->required();

  auto* upgrade_cmd = app.add_subcommand(
      "upgrade", "upgrade a store written by an older trellis to this version's schema, in place");

  CLI11_PARSE(app, argc, argv);

  if (Status s = init_logging("trellis", common.log_level); !s.ok()) return fail(s);
  install_signal_handlers();

  if (*run_cmd) return cmd_run(common, run);
  if (*serve_cmd) return cmd_serve(common, serve);
  if (*submit_cmd) return cmd_submit(common, submit);
  if (*cancel_cmd) return cmd_cancel(common, cancel_name);
  if (*keys_cmd) {
    const std::string dir = keys_dir.empty() ? default_key_dir() : keys_dir;
    if (*keys_show_cmd) return cmd_keys_show(dir);
    const Status s =
        *keys_init_cmd ? init_keys(dir, keys_force) : authorize_worker(dir, authorize_key);
    if (!s.ok()) return fail(s);
    if (*keys_init_cmd) return cmd_keys_show(dir);
    spdlog::info("authorized worker key {} in {}/{}", authorize_key, dir, kAuthorizedWorkersFile);
    return 0;
  }

  std::unique_ptr<ExperimentStore> store;
  if (*upgrade_cmd) {
    // Opening for writing migrates; a store that is current is left as it is.
    if (Status s = open_store(common, /*read_only=*/false, &store); !s.ok()) return fail(s);
    std::cout << common.store << ": schema version " << kSchemaVersion << "\n";
    return 0;
  }
  if (Status s = open_store(common, /*read_only=*/true, &store); !s.ok()) return fail(s);
  if (*status_cmd) return cmd_status(common, *store, status_name);
  if (*events_cmd) return cmd_events(*store, events_name, events_after);
  if (*trials_cmd) {
    if (all_trials) table.limit = 0;
    if (Status s = print_trials(*store, table, std::cout); !s.ok()) return fail(s);
    return 0;
  }
  ExportFormat format;
  if (Status s = parse_export_format(export_format, &format); !s.ok()) return fail(s);
  std::ofstream file;
  if (!export_output.empty()) {
    file.open(export_output);
    if (!file) return fail(Status::Error("cannot write '" + export_output + "'"));
  }
  std::ostream& out = export_output.empty() ? std::cout : file;
  if (Status s = export_experiment(*store, export_name, format, out); !s.ok()) return fail(s);
  return 0;
}
