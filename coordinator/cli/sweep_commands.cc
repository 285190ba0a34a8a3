// `trellis run` (a coordinator and its worker groups, here or in a Slurm allocation) and
// `trellis serve` (a coordinator for groups started elsewhere).

#include <spdlog/spdlog.h>

#include <thread>

#include "coordinator/cli/serve.h"
#include "coordinator/local_launcher.h"
#include "coordinator/slurm_allocation.h"

namespace trellis::cli {
namespace {

using coordinator::Coordinator;
using coordinator::current_allocation;
using coordinator::ExperimentStore;
using coordinator::Launcher;
using coordinator::LaunchOptions;
using coordinator::LocalLauncher;
using coordinator::SlurmAllocation;

struct RunArgs {
  ServeArgs serve;
  int groups = 0;
  std::string launcher = "auto";  // auto | mpirun | srun
  std::string mpirun = "mpirun";
  std::string srun = "srun";
  std::vector<std::string> mpirun_args;
};

int cmd_serve(const CommonArgs& common, const ServeArgs& args) {
  std::unique_ptr<ExperimentStore> store;
  std::unique_ptr<Coordinator> coordinator;
  SweepSpec spec;
  if (Status s = load_sweep_spec(args.spec, &spec); !s.ok()) return fail(s);
  if (Status s = start_coordinator(common, args, spec, &store, &coordinator); !s.ok())
    return fail(s);
  spdlog::info("workers join with: mpirun -np {} trellis-worker --connect {}",
               spec.ranks_per_trial, coordinator->endpoint());
  if (Status s = coordinator->Run([] { return pending_signal() == 0; }); !s.ok())
    return fail(coordinator->stopped()
                    ? s
                    : s.With("the sweep stopped (the store keeps what was acknowledged; serve "
                             "the same spec and store again to resume)"));
  if (pending_signal() != 0) {
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
    if (pending_signal() != 0) return false;
    if (!launcher.any_running()) workers_gone = true;
    return !workers_gone;
  });
  // After an error the groups are told at once (SIGTERM: they checkpoint and exit); after the
  // sweep they are given time to exit by themselves.
  launcher.Stop(s.ok() ? std::chrono::milliseconds(15000) : std::chrono::milliseconds(0));
  if (!s.ok())
    return fail(coordinator->stopped() ? s
                                       : s.With("the sweep stopped (the store keeps what was "
                                                "acknowledged; rerun the same command to resume)"));
  if (pending_signal() != 0) {
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

}  // namespace

std::vector<Command> add_sweep_commands(CLI::App& app, const CommonArgs& common) {
  auto run = std::make_shared<RunArgs>();
  auto* run_cmd = app.add_subcommand(
      "run", "run a sweep here: the coordinator plus its worker groups, started with mpirun on "
             "this machine or, inside a Slurm allocation, with srun across its nodes; exits "
             "when every trial has ended, then prints the ranked trials");
  add_serve_options(run_cmd, &run->serve,
                    "CURVE key directory (default: $TRELLIS_HOME, else ~/.trellis); made on "
                    "first use");
  run_cmd->add_option("--groups", run->groups,
                      "worker groups to start (default: cores / ranks_per_trial, at least 1; "
                      "with srun: the job's tasks, or else its CPUs, / ranks_per_trial)");
  run_cmd->add_option("--launcher", run->launcher,
                      "how groups start: mpirun (on this machine), srun (one job step per group "
                      "inside the Slurm allocation this runs in), auto (srun inside an "
                      "allocation, else mpirun)")
      ->capture_default_str();
  run_cmd->add_option("--mpirun", run->mpirun, "mpirun executable")->capture_default_str();
  run_cmd->add_option("--srun", run->srun, "srun executable")->capture_default_str();
  run_cmd->add_option("--mpirun-arg", run->mpirun_args,
                      "extra argument for mpirun (or srun), repeatable; write "
                      "--mpirun-arg=--mca for arguments that start with a dash")
      ->allow_extra_args(false);
  run_cmd->add_flag("--insecure", run->serve.insecure,
                    "plaintext ZeroMQ between the coordinator and its local workers (loopback "
                    "only)");

  auto serve = std::make_shared<ServeArgs>();
  serve->bind = "tcp://127.0.0.1:5555";
  auto* serve_cmd = app.add_subcommand(
      "serve", "serve a sweep to worker groups that connect with `mpirun -np K trellis-worker "
               "--connect ENDPOINT`; exits when every trial has ended");
  add_serve_options(serve_cmd, serve.get(),
                    "CURVE key directory (default: $TRELLIS_HOME, else ~/.trellis; create it "
                    "with `trellis keys init`)");
  serve_cmd->add_option("--bind", serve->bind, "ZeroMQ endpoint to listen on")
      ->capture_default_str();
  serve_cmd->add_flag("--insecure", serve->insecure,
                      "plaintext ZeroMQ for development; refused unless --bind is a loopback "
                      "address");
  return {{run_cmd, [&common, run] { return cmd_run(common, *run); }},
          {serve_cmd, [&common, serve] { return cmd_serve(common, *serve); }}};
}

}  // namespace trellis::cli
