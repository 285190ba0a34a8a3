// `trellis reproduce EXPERIMENT TRIAL`: re-runs one trial on this machine from what the store
// holds and says whether it came out the same (coordinator/trial_replay.h decides the plan and
// the verdict). The original store is only read; the re-run's checkpoints go to a scratch
// directory. `reproduce` serves the one worker group itself, over plaintext ZeroMQ on
// loopback, rather than through a Coordinator: the decisions are the recorded ones, so there
// is no searcher or scheduler to ask, and nothing of the re-run enters a store.

#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/checkpoint_path.h"
#include "common/protocol.h"
#include "common/socket_factory.h"
#include "common/sweep_spec.h"
#include "coordinator/cli/command.h"
#include "coordinator/local_launcher.h"
#include "coordinator/trial_replay.h"

namespace trellis::cli {
namespace {

using coordinator::kDiffersUnexplained;
using coordinator::MetricSeries;
using coordinator::ReplayLeg;
using coordinator::ReplayPlan;
using coordinator::ReplayVerdict;

constexpr std::chrono::milliseconds kPoll{100};
constexpr std::chrono::milliseconds kHeartbeat{1000};
// A group that said nothing for this long is gone (the worker's own liveness is 10 s).
constexpr std::chrono::seconds kSilence{120};

struct ReproduceArgs {
  std::string experiment;
  std::int32_t trial = -1;
  std::string scratch;  // empty: a fresh directory under $TMPDIR, removed afterwards
  std::string mpirun = "mpirun";
  std::vector<std::string> mpirun_args;
};

// Cannot re-run: exit 2, saying why.
int cannot(const Status& s) {
  std::fprintf(stderr, "trellis: cannot reproduce: %s\n", s.message().c_str());
  return kDiffersUnexplained;
}

std::string describe(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

// Serves the plan's legs, in order, to the one group `launcher` starts. Fills `series` with
// what the group reported (a later leg's epochs replace an earlier one's) and `provenance`
// with the last Done's.
Status serve_legs(const ReplayPlan& plan, const SweepSpec& spec, const std::string& checkpoint,
                  zmq::socket_t& socket, coordinator::LocalLauncher& launcher,
                  MetricSeries* series, std::string* provenance) {
  std::map<std::string, std::map<std::int32_t, double>> got;
  std::size_t leg = 0;
  bool assigned = false;
  std::string group;
  auto last_heard = std::chrono::steady_clock::now();
  auto last_beat = last_heard;
  auto send = [&](const Message& m) {
    const std::string frame = encode(m);
    std::array<zmq::const_buffer, 2> parts = {zmq::buffer(group), zmq::buffer(frame)};
    zmq::send_multipart(socket, parts, zmq::send_flags::dontwait);
  };
  auto assign_next = [&] {
    if (leg == plan.legs.size()) {
      send(Shutdown{"the trial is reproduced"});
      return;
    }
    const ReplayLeg& l = plan.legs[leg];
    Assign a;
    a.trial = plan.trial.id;
    a.attempt = static_cast<std::int32_t>(leg) + 1;
    a.experiment = plan.experiment.name;
    a.number = plan.trial.number;
    a.seed = plan.trial.seed;
    a.params = l.params;
    a.dataset = spec.dataset;
    a.checkpoint = checkpoint;
    a.resume = l.resume_epoch > 0;
    a.resume_epoch = l.resume_epoch;
    a.warm_start = l.warm_start;
    a.stop_epoch = l.until_epoch;
    if (spec.scheduler.type == "pbt") a.exploit_snapshots = 3;
    spdlog::info("leg {}/{}: epochs {}..{}{}", leg + 1, plan.legs.size(), l.resume_epoch + 1,
                 l.until_epoch,
                 l.warm_start.empty() ? std::string()
                                      : ", from donor trial " + std::to_string(l.donor_number) +
                                            "'s checkpoint after epoch " +
                                            std::to_string(l.donor_epoch));
    assigned = true;
    send(a);
  };
  while (true) {
    if (pending_signal() != 0) return Status::Error("interrupted");
    if (!launcher.any_running()) {
      std::string why;
      for (const auto& f : launcher.failures()) why += "; " + f;
      if (leg == plan.legs.size()) break;
      return Status::Error("the worker group exited before the re-run ended" + why);
    }
    const auto now = std::chrono::steady_clock::now();
    if (now - last_heard > kSilence)
      return Status::Error("the worker group has been silent for " +
                           std::to_string(kSilence.count()) + " s");
    if (!group.empty() && now - last_beat > kHeartbeat) {
      send(Heartbeat{});
      last_beat = now;
    }
    zmq::pollitem_t item{static_cast<void*>(socket), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, kPoll);
    std::vector<zmq::message_t> parts;
    while (zmq::recv_multipart(socket, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
      if (parts.size() != 2) {
        parts.clear();
        continue;
      }
      group = parts[0].to_string();
      last_heard = std::chrono::steady_clock::now();
      Message m;
      const Status decoded = decode(parts[1].data(), parts[1].size(), &m);
      parts.clear();
      if (!decoded.ok()) {
        spdlog::warn("dropped a frame from the worker: {}", decoded.message());
        continue;
      }
      const auto attempt = static_cast<std::int32_t>(leg) + 1;
      if (std::holds_alternative<Hello>(m) || std::holds_alternative<Request>(m)) {
        // A repeated Hello during a leg asks for the same Assign again.
        assign_next();
      } else if (const auto* r = std::get_if<Report>(&m)) {
        if (r->attempt == attempt) {
          for (const auto& [metric, value] : r->metrics) got[metric][r->epoch] = value;
          spdlog::info("epoch {} of {}", r->epoch, plan.legs.back().until_epoch);
        }
        send(Ack{r->trial, r->attempt, r->epoch});
      } else if (const auto* d = std::get_if<Done>(&m)) {
        send(Ack{d->trial, d->attempt, 0});
        if (d->attempt != attempt || !assigned) continue;  // a resent Done
        if (!d->ok) return Status::Error("the re-run failed in leg " + std::to_string(attempt) +
                                         ": " + d->error);
        if (d->preempted)
          return Status::Error("the worker group was stopped (preempted) in leg " +
                               std::to_string(attempt));
        *provenance = d->provenance;
        assigned = false;
        ++leg;
        assign_next();
      } else if (const auto* refuse = std::get_if<Refuse>(&m)) {
        return Status::Error("the worker refused: " + refuse->reason);
      }
    }
  }
  for (const auto& [metric, points] : got)
    for (const auto& [epoch, value] : points) (*series)[metric].emplace_back(epoch, value);
  return Status::Ok();
}

void print_verdict(const ReplayPlan& plan, const ReplayVerdict& v) {
  std::printf("trial %d of %s: ", plan.trial.number, plan.experiment.name.c_str());
  if (v.identical) {
    std::printf("reproduced: %d epochs, every metric identical (bit for bit)\n",
                v.epochs_compared);
  } else {
    const auto& f = v.first;
    std::printf("differs at epoch %d, metric %s: recorded %s, re-run %s", f.epoch,
                f.metric.c_str(), f.recorded_present ? describe(f.recorded).c_str() : "(none)",
                f.rerun_present ? describe(f.rerun).c_str() : "(none)");
    if (f.recorded_present && f.rerun_present)
      std::printf(", difference %s", describe(f.rerun - f.recorded).c_str());
    std::printf(" (%d epochs identical before it)\n", v.epochs_compared);
  }
  if (v.provenance.empty()) {
    std::printf("provenance: no field differs\n");
  } else {
    std::printf("provenance differs (recorded -> re-run):\n");
    for (const auto& d : v.provenance)
      std::printf("  %s: %s -> %s\n", d.field.c_str(), d.recorded.c_str(), d.rerun.c_str());
  }
  switch (v.exit_code()) {
    case coordinator::kReproduced: break;
    case coordinator::kDiffersExplained:
      std::printf("verdict: differs, explained by the provenance difference\n");
      break;
    default:
      std::printf("verdict: differs, and no provenance field explains it\n");
  }
}

int cmd_reproduce(const CommonArgs& common, const ReproduceArgs& args) {
  std::unique_ptr<coordinator::ExperimentStore> store;
  if (Status s = open_store(common, /*read_only=*/true, &store); !s.ok()) return cannot(s);
  ReplayPlan plan;
  if (Status s = coordinator::plan_replay(*store, args.experiment, args.trial, &plan); !s.ok())
    return cannot(s);
  store.reset();  // everything needed is read
  SweepSpec spec;
  if (Status s = parse_sweep_spec(plan.experiment.spec_yaml, "the spec of experiment '" +
                                  plan.experiment.name + "' in the store", &spec);
      !s.ok())
    return cannot(s);
  for (const ReplayLeg& l : plan.legs) {
    if (l.warm_start.empty() || std::filesystem::exists(l.warm_start)) continue;
    return cannot(Status::Error(
        "trial " + std::to_string(plan.trial.number) + " took donor trial " +
        std::to_string(l.donor_number) + "'s weights after epoch " +
        std::to_string(l.donor_epoch) + " (PBT exploit), and that checkpoint, " + l.warm_start +
        ", is gone"));
  }

  std::string scratch = args.scratch;
  const bool own_scratch = scratch.empty();
  if (own_scratch) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/trellis-reproduce-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr)
      return cannot(Status::Error("cannot make a scratch directory " + pattern));
    scratch = pattern;
  }
  std::error_code ec;
  std::filesystem::create_directories(scratch + "/" + plan.experiment.name, ec);
  scratch = std::filesystem::absolute(scratch).string();
  const std::string checkpoint =
      scratch + "/" + plan.experiment.name + "/trial-" + std::to_string(plan.trial.number) + ".ckpt";

  zmq::context_t context;
  zmq::socket_t socket;
  SocketSecurity plaintext;
  plaintext.curve = false;
  if (Status s = make_coordinator_socket(context, plaintext, &socket); !s.ok()) return cannot(s);
  socket.bind("tcp://127.0.0.1:*");
  coordinator::LaunchOptions launch;
  launch.endpoint = socket.get(zmq::sockopt::last_endpoint);
  launch.ranks_per_group = plan.ranks;
  launch.mpirun = args.mpirun;
  launch.mpirun_args = args.mpirun_args;
  launch.worker_args = {"--insecure"};
  launch.log_level = common.log_level;
  spdlog::info("re-running trial {} of '{}' ({} leg(s), {} rank(s)); checkpoints in {}",
               plan.trial.number, plan.experiment.name, plan.legs.size(), plan.ranks, scratch);
  MetricSeries rerun;
  std::string provenance;
  Status served;
  {
    coordinator::LocalLauncher launcher;
    if (Status s = launcher.Launch(launch); !s.ok()) return cannot(s);
    served = serve_legs(plan, spec, checkpoint, socket, launcher, &rerun, &provenance);
    launcher.Stop(served.ok() ? std::chrono::milliseconds(15000) : std::chrono::milliseconds(0));
  }
  if (own_scratch) std::filesystem::remove_all(scratch, ec);
  if (!served.ok()) return cannot(served);
  const ReplayVerdict verdict =
      coordinator::judge_replay(plan.recorded, rerun, plan.trial.provenance, provenance);
  print_verdict(plan, verdict);
  return verdict.exit_code();
}

}  // namespace

Command add_reproduce_command(CLI::App& app, const CommonArgs& common) {
  auto args = std::make_shared<ReproduceArgs>();
  auto* cmd = app.add_subcommand(
      "reproduce",
      "re-run one trial on this machine (mpirun, the recorded rank count) through its recorded "
      "decisions (pauses, promotions, PBT exploits from the donor's checkpoint) and compare "
      "every epoch's metrics bit for bit, and the worker's provenance, with the store's. "
      "Timing metrics (epoch_s, samples_per_s) are not compared. The store is only read. Exit "
      "0: identical; 1: differs, and a provenance field that can explain it differs "
      "(dataset_*, build.*, blas.*, eigen_threads, rank_layout.*); 2: differs unexplained, or "
      "the trial cannot be re-run (the reason is printed)");
  cmd->add_option("experiment", args->experiment, "experiment name")->required();
  cmd->add_option("trial", args->trial, "trial number (as `trellis trials` lists it)")
      ->required();
  cmd->add_option("--scratch", args->scratch,
                  "directory for the re-run's checkpoints, kept afterwards (default: a fresh "
                  "one under $TMPDIR, removed afterwards)");
  cmd->add_option("--mpirun", args->mpirun, "mpirun executable")->capture_default_str();
  cmd->add_option("--mpirun-arg", args->mpirun_args,
                  "extra argument for mpirun, repeatable; write --mpirun-arg=--oversubscribe "
                  "for arguments that start with a dash")
      ->allow_extra_args(false);
  return {cmd, [&common, args] { return cmd_reproduce(common, *args); }};
}

}  // namespace trellis::cli
