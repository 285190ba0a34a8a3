// `trellis submit` (the coordinator detached on a login node, the worker groups a Slurm job
// array), `trellis status` and `trellis cancel`.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/run_command.h"
#include "coordinator/cli/serve.h"
#include "coordinator/local_launcher.h"
#include "coordinator/slurm_jobs.h"
#include "coordinator/sweep_status.h"

namespace trellis::cli {
namespace {

using coordinator::cancel_jobs;
using coordinator::Coordinator;
using coordinator::ExperimentRecord;
using coordinator::ExperimentStore;
using coordinator::executable_dir;
using coordinator::live_jobs;
using coordinator::read_submission;
using coordinator::Submission;
using coordinator::submission_path;
using coordinator::submit_worker_jobs;
using coordinator::WorkerJobs;
using coordinator::write_submission;

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
    if (pending_signal() != 0) return false;
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
  if (s.ok() && pending_signal() == 0 && !coordinator->finished()) {
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
  if (pending_signal() != 0) {
    spdlog::warn("stopped by signal {}: `trellis submit` of the same spec and store resumes",
                 static_cast<int>(pending_signal()));
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

// Where a sweep stands, from the store opened read-only (so while the coordinator writes):
// coordinator/sweep_status.h; and for a `trellis submit` sweep its coordinator and jobs.
// Without a name, every experiment of the store, a line each.
int cmd_status(const CommonArgs& common, ExperimentStore& store, const std::string& name) {
  if (name.empty()) {
    std::vector<ExperimentRecord> all;
    if (Status s = store.list_experiments(&all); !s.ok()) return fail(s);
    if (all.empty()) std::cout << "no experiments in " << common.store << "\n";
    for (const ExperimentRecord& e : all) {
      coordinator::SweepStatus status;
      if (Status s = coordinator::sweep_status(store, e, &status); !s.ok()) return fail(s);
      coordinator::print_sweep_line(status, std::cout);
    }
    return 0;
  }
  ExperimentRecord experiment;
  if (Status s = coordinator::resolve_experiment(store, name, &experiment); !s.ok()) return fail(s);
  coordinator::SweepStatus status;
  if (Status s = coordinator::sweep_status(store, experiment, &status); !s.ok()) return fail(s);
  coordinator::print_sweep_status(status, std::cout);
  Submission submission;
  if (!read_submission(submission_path(common.store, name), &submission).ok()) return 0;
  std::cout << "submitted: coordinator pid " << submission.coordinator << ": "
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

}  // namespace

std::vector<Command> add_slurm_commands(CLI::App& app, const CommonArgs& common) {
  auto submit = std::make_shared<SubmitArgs>();
  auto* submit_cmd = app.add_subcommand(
      "submit", "serve a sweep from this (login) node to worker groups that run as a Slurm job "
                "array: starts the coordinator detached (it survives logout; its log goes "
                "beside the store), submits the workers, prints the job id and returns");
  add_serve_options(submit_cmd, &submit->serve,
                    "CURVE key directory, which every node must see (default: $TRELLIS_HOME, "
                    "else ~/.trellis); made on first use");
  submit_cmd->add_option("--groups", submit->groups, "worker groups: the job array's tasks")
      ->capture_default_str();
  submit_cmd->add_option("--nodes-per-group", submit->nodes_per_group,
                         "nodes each group's ranks_per_trial ranks are spread over")
      ->capture_default_str();
  submit_cmd->add_option("--time", submit->time, "each worker job's time limit (sbatch --time)");
  submit_cmd->add_option("--partition", submit->partition, "sbatch --partition");
  submit_cmd->add_option("--account", submit->account, "sbatch --account");
  submit_cmd->add_option("--max-running", submit->max_running,
                         "groups running at once (the array's %throttle; 0: all)")
      ->capture_default_str();
  submit_cmd->add_option("--sbatch-arg", submit->sbatch_args,
                         "extra sbatch argument, repeatable (write --sbatch-arg=--qos=high)")
      ->allow_extra_args(false);
  submit_cmd->add_option("--advertise", submit->advertise,
                         "host name or address the compute nodes reach this node by (default: "
                         "its host name)");
  submit_cmd->add_option("--worker", submit->worker,
                         "trellis-worker for the nodes to run, a path they all see (default: the "
                         "one beside this trellis)");
  submit_cmd->add_option("--port", submit->port,
                         "port to serve on (default: the last submission's, else any free one)");

  auto cancel_name = std::make_shared<std::string>();
  auto* cancel_cmd = app.add_subcommand(
      "cancel", "stop the coordinator `trellis submit` started for an experiment and cancel its "
                "worker jobs");
  cancel_cmd->add_option("experiment", *cancel_name, "experiment name")->required();

  auto status_name = std::make_shared<std::string>();
  auto* status_cmd = app.add_subcommand(
      "status", "where a sweep stands, also while it runs: its trials by state, the worker "
                "groups and what each runs, epochs done of the budget, the best trial, the time "
                "left; for `trellis submit` its coordinator and worker jobs; without a name, "
                "every experiment of the store, a line each");
  status_cmd->add_option("experiment", *status_name, "experiment name (default: all, a line each)");

  return {{submit_cmd, [&common, submit] { return cmd_submit(common, *submit); }},
          {cancel_cmd, [&common, cancel_name] { return cmd_cancel(common, *cancel_name); }},
          {status_cmd, [&common, status_name] {
             std::unique_ptr<ExperimentStore> store;
             if (Status s = open_store(common, /*read_only=*/true, &store); !s.ok()) return fail(s);
             return cmd_status(common, *store, *status_name);
           }}};
}

}  // namespace trellis::cli
