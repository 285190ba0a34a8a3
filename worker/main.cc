// trellis-worker: one worker group. Start it with `mpirun -np K trellis-worker --connect
// ENDPOINT`: rank 0 talks to the coordinator, every rank trains.
//
// Rank 0 broadcasts each command to the group (MPI is the only transport between ranks):
// an int32 kind and the encoded Assign. Ranks stay in lock step: every rank takes part in
// every trial, and every rank leaves together when rank 0 says quit.

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <mpi.h>
#include <spdlog/spdlog.h>

#include <ctime>
#include <iostream>

#include "common/keys.h"
#include "common/logging.h"
#include "common/protocol.h"
#include "common/socket_factory.h"
#include "common/version.h"
#include "worker/agent.h"
#include "worker/batch_job.h"
#include "worker/preemption.h"
#include "worker/provenance.h"
#include "worker/topology.h"
#include "worker/trainer.h"

namespace {

using namespace trellis;
using namespace trellis::worker;

enum CommandKind : std::int32_t { kQuit = 0, kTrain = 1 };

// Collective: rank 0 passes its command and payload, the others receive them.
void broadcast_command(std::int32_t* kind, std::string* payload, MPI_Comm comm) {
  std::int64_t size = static_cast<std::int64_t>(payload->size());
  std::int64_t header[2] = {*kind, size};
  MPI_Bcast(header, 2, MPI_INT64_T, 0, comm);
  *kind = static_cast<std::int32_t>(header[0]);
  payload->resize(static_cast<std::size_t>(header[1]));
  if (header[1] > 0) MPI_Bcast(payload->data(), static_cast<int>(header[1]), MPI_CHAR, 0, comm);
}

std::string hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

// What a Done holds besides the model, with room to spare: the model may fill the rest of a
// frame.
constexpr std::int64_t kDoneWithoutModelBytes = 1 << 20;

void attach_model(const std::string& model, Done* done) {
  if (model.empty()) return;
  if (static_cast<std::int64_t>(model.size()) > kMaxFrameBytes - kDoneWithoutModelBytes) {
    done->model_missing = "the final model is " + std::to_string(model.size() >> 20) +
                          " MiB, more than a message to the coordinator carries (" +
                          std::to_string((kMaxFrameBytes - kDoneWithoutModelBytes) >> 20) +
                          " MiB)";
    spdlog::warn("trial id {}: {}; it is not kept beside the store", done->trial,
                 done->model_missing);
    return;
  }
  done->model.assign(model.begin(), model.end());
}

// Runs one assigned trial on every rank; rank 0 reports through `agent`.
void run_trial(const Assign& assign, Agent* agent, const GroupComm& group) {
  TrialTask task;
  task.trial = assign.trial;
  task.attempt = assign.attempt;
  task.seed = assign.seed;
  task.dataset = assign.dataset;
  task.checkpoint = assign.checkpoint;
  task.resume_epoch = assign.resume_epoch;
  task.resume = assign.resume;
  task.warm_start = assign.warm_start;
  task.stop_epoch = assign.stop_epoch;
  task.exploit_snapshots = assign.exploit_snapshots;
  Status status = train_config_from_params(assign.params, &task.config);
  TrainResult result;
  if (status.ok()) {
    TrainerHooks hooks;
    hooks.on_epoch = [&](int epoch, const MetricMap& metrics, bool checkpointed) {
      if (agent == nullptr) return true;
      agent->report(Report{assign.trial, assign.attempt, epoch, metrics, checkpointed});
      return !agent->stop_requested(assign.trial);
    };
    hooks.stop_now = preemption_requested;
    if (agent != nullptr) {
      hooks.stored_checkpoint = [&] { return agent->stored_checkpoint(assign.trial, assign.attempt); };
    }
    // The coordinator tells a group that trains from one stuck in a collective (or on a dead
    // file system) by this count, which only the training thread can advance.
    std::int64_t steps = 0;
    hooks.on_step = [&] {
      if (agent != nullptr) agent->progress(++steps);
    };
    status = train(task, group, hooks, &result);
  }
  if (agent == nullptr) return;
  // Every Done says what decided the attempt's numbers; a dataset that cannot be hashed (its
  // read failed too, most likely) leaves the hash out rather than the rest.
  DatasetDigest digest;
  Status hashed = result.dataset_files.empty() ? Status::Error("no dataset file was read")
                                               : digest_files(result.dataset_files, &digest);
  if (!hashed.ok()) spdlog::warn("no dataset hash in the provenance: {}", hashed.message());
  const std::string provenance = run_provenance(group, hashed.ok() ? &digest : nullptr);
  const auto send_done = [&](Done done) {
    done.provenance = provenance;
    agent->done(done);
  };
  if (status.ok() && result.preempted) {
    spdlog::warn("trial {} of '{}' stopped by SIGTERM or SIGUSR1 after {} epoch(s){}", assign.number,
                 assign.experiment, result.epochs_run,
                 result.checkpointed ? ", checkpointed" : " (no checkpoint)");
    Done done{assign.trial, assign.attempt, false, "preempted", {}};
    done.preempted = true;
    done.checkpointed = result.checkpointed;
    send_done(std::move(done));
  } else if (status.ok()) {
    spdlog::info("trial {} of '{}' done after {} epoch(s)", assign.number, assign.experiment,
                 result.epochs_run);
    Done done{assign.trial, assign.attempt, true, "", result.final_metrics};
    attach_model(result.model, &done);
    send_done(std::move(done));
  } else {
    spdlog::error("trial {} of '{}' failed: {}", assign.number, assign.experiment,
                  status.message());
    Done done{assign.trial, assign.attempt, false, status.message(), {}};
    done.error_kind = result.dataset_error ? ErrorKind::kDataset : ErrorKind::kTrial;
    send_done(std::move(done));
  }
}

// Rank 0's CURVE keys: worker.key and the coordinator's public key from `key_dir`.
Status load_worker_security(const std::string& key_dir, bool insecure, const std::string& endpoint,
                            SocketSecurity* out) {
  if (insecure) {
    if (!is_loopback_endpoint(endpoint))
      return Status::Error("refusing --insecure towards " + endpoint +
                           ": plaintext is for loopback endpoints only; drop --insecure and "
                           "use the keys from `trellis keys init`");
    out->curve = false;
    return Status::Ok();
  }
  const std::string dir = key_dir.empty() ? default_key_dir() : key_dir;
  KeyPair pair;
  if (Status s = load_key_pair(dir, kWorkerKeyName, &pair); !s.ok()) return s;
  if (Status s = load_public_key(dir, kCoordinatorKeyName, &out->server_public_key); !s.ok())
    return s;
  out->curve = true;
  out->public_key = pair.public_key;
  out->secret_key = pair.secret_key;
  // The coordinator logs a refused key; this line lets an operator match it to us.
  spdlog::info("CURVE on: worker key {} (from {}), coordinator key {}", pair.public_key, dir,
               out->server_public_key);
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trellis-worker: one worker group of a Trellis sweep; start it with "
               "`mpirun -np K trellis-worker --connect ENDPOINT`"};
  std::string endpoint, log_level = "info";
  double answer_timeout_s = 300, heartbeat_s = 2, liveness_s = 10;
  app.add_option("--connect", endpoint, "coordinator endpoint, e.g. tcp://login1:5555")
      ->required();
  app.add_option("--timeout", answer_timeout_s,
                 "seconds to wait for an answer from the coordinator before giving up")
      ->capture_default_str();
  app.add_option("--heartbeat", heartbeat_s, "seconds between heartbeats")->capture_default_str();
  app.add_option("--liveness", liveness_s,
                 "seconds of coordinator silence after which the group reconnects and says "
                 "Hello again")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")
      ->capture_default_str();
  std::string bind = "auto", cpu_slot;
  app.add_option("--bind", bind,
                 "auto: bind each rank to its own cores (kept as is when mpirun/srun already "
                 "bound it; needs --cpu-slot unless the launcher bound it); none: do not bind")
      ->capture_default_str();
  app.add_option("--cpu-slot", cpu_slot,
                 "i/n: this group owns the i-th n-th of the node's cores (0/1: the whole node); "
                 "trellis run passes it to each local group");
  std::string key_dir;
  bool insecure = false;
  app.add_option("--keys", key_dir,
                 "CURVE key directory holding worker.key and coordinator.pub (default: "
                 "$TRELLIS_HOME, else ~/.trellis)");
  app.add_flag("--insecure", insecure,
               "plaintext ZeroMQ, for a coordinator started with --insecure on loopback");
  CLI11_PARSE(app, argc, argv);
  BindOptions bind_options;
  for (const Status& s : {parse_bind_mode(bind, &bind_options.mode),
                          cpu_slot.empty() ? Status::Ok() : parse_cpu_slot(cpu_slot, &bind_options.slot)}) {
    if (!s.ok()) {
      std::cerr << "trellis-worker: " << s.message() << "\n";
      return 2;
    }
  }

  // Before MPI_Init, which starts threads of its own: they inherit the blocked signals.
  start_preemption_watch();
  int provided = 0;
  // Only the main thread calls MPI; rank 0's I/O thread speaks ZeroMQ only.
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  if (Status s = init_logging("worker r" + std::to_string(rank), log_level); !s.ok()) {
    if (rank == 0) std::cerr << "trellis-worker: " << s.message() << "\n";
    MPI_Finalize();
    return 2;
  }

  std::unique_ptr<GroupComm> group;
  if (Status s = GroupComm::Create(MPI_COMM_WORLD, {}, &group); !s.ok()) {
    spdlog::critical("cannot set up the group's communicators: {}", s.message());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  Binding binding;
  if (Status s = bind_rank(*group, bind_options, &binding); !s.ok())
    spdlog::warn("not bound: {}", s.message());
  set_compute_threads(binding.cores);
  std::string topology;
  if (Status s = gather_summaries(*group, rank_summary(*group, binding), &topology); !s.ok())
    spdlog::warn("no topology summary: {}", s.message());

  // Only rank 0 talks to the coordinator, so only its node needs the keys; every rank learns
  // whether they loaded so the group leaves together.
  SocketSecurity security;
  std::int32_t keys_ok = 1;
  if (rank == 0) {
    if (Status s = load_worker_security(key_dir, insecure, endpoint, &security); !s.ok()) {
      spdlog::critical("{}", s.message());
      keys_ok = 0;
    }
  }
  MPI_Bcast(&keys_ok, 1, MPI_INT32_T, 0, MPI_COMM_WORLD);
  if (keys_ok == 0) {
    group.reset();
    MPI_Finalize();
    return 2;
  }

  std::unique_ptr<Agent> agent;
  if (rank == 0) {
    AgentOptions options;
    options.security = security;
    options.endpoint = endpoint;
    options.group = hostname() + ":" + std::to_string(getpid());
    options.hello = Hello{options.group, ranks,   hostname(), getpid(), topology,
                          TRELLIS_VERSION " " TRELLIS_GIT_REVISION};
    BatchJob job;
    if (Status s = current_batch_job(&job); !s.ok())
      spdlog::warn("{}; the coordinator will not know this group's time limit", s.message());
    options.hello.job = job.id;
    options.hello.job_log = job.log;
    options.hello.job_ends_at = job.ends_at;
    if (job.ends_at > 0)
      spdlog::info("Slurm job {}: its time limit ends in {} s", job.id,
                   job.ends_at - static_cast<std::int64_t>(std::time(nullptr)));
    options.answer_timeout = std::chrono::milliseconds(static_cast<long>(answer_timeout_s * 1000));
    options.heartbeat = std::chrono::milliseconds(static_cast<long>(heartbeat_s * 1000));
    options.liveness = std::chrono::milliseconds(static_cast<long>(liveness_s * 1000));
    agent = std::make_unique<Agent>(options);
    spdlog::info("group '{}' of {} rank(s) on {} node(s) connecting to {}; allreduce auto is {} "
                 "here", options.group, ranks, group->node_count(), endpoint,
                 to_string(group->resolve(AllreduceAlgorithm::kAuto)));
  }

  int exit_code = 0;
  for (;;) {
    std::int32_t kind = kQuit;
    std::string payload;
    Assign assign;
    if (rank == 0) {
      bool shutdown = false;
      if (Status s = agent->next(&assign, &shutdown, preemption_requested); !s.ok()) {
        spdlog::error("{}", s.message());
        exit_code = 3;
      } else if (shutdown) {
        spdlog::info(preemption_requested() ? "SIGTERM or SIGUSR1: leaving"
                                            : "the coordinator ended the sweep; exiting");
      } else {
        kind = kTrain;
        payload = encode(assign);
      }
    }
    broadcast_command(&kind, &payload, MPI_COMM_WORLD);
    if (kind == kQuit) break;
    if (rank != 0) {
      Message m;
      if (Status s = decode(payload.data(), payload.size(), &m); !s.ok() ||
                                                              !std::holds_alternative<Assign>(m)) {
        // Cannot happen unless memory is corrupt: rank 0 encoded it a moment ago.
        spdlog::critical("rank {} cannot decode its assignment: {}", rank, s.message());
        MPI_Abort(MPI_COMM_WORLD, 4);
      }
      assign = std::get<Assign>(m);
    }
    run_trial(assign, agent.get(), *group);
  }
  // Preempted: the Done that says so must reach the coordinator before we leave, or the trial
  // would wait out the liveness timeout and count as a failure.
  if (agent && preemption_requested() && !agent->flush(std::chrono::seconds(10)))
    spdlog::warn("leaving on SIGTERM or SIGUSR1 with reports the coordinator did not acknowledge");
  agent.reset();  // flushes the last Done before MPI goes away
  group.reset();  // frees its communicators while MPI is still up
  MPI_Finalize();
  return exit_code;
}
