#include "coordinator/cli/serve.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "common/keys.h"
#include "common/socket_factory.h"

namespace trellis::cli {
namespace {

using coordinator::Coordinator;
using coordinator::CoordinatorOptions;
using coordinator::Durability;
using coordinator::ExperimentStore;

// Workers resolve paths on their own nodes, so the coordinator hands them absolute ones.
std::string checkpoint_dir(const CommonArgs& common, const ServeArgs& args) {
  namespace fs = std::filesystem;
  if (args.checkpoints == "none") return "";
  const fs::path dir = args.checkpoints.empty()
                           ? fs::absolute(common.store).parent_path() / "checkpoints"
                           : fs::absolute(args.checkpoints);
  return dir.lexically_normal().string();
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

constexpr const char* kStallHelp =
    "seconds without training progress (steps, as the heartbeats report them) after which a "
    "busy worker group that still answers is declared lost and its trial requeued; 0: ten "
    "times the group's slowest observed wait between steps, at least 120 s, and 120 s before "
    "an attempt's first step (data loading)";

}  // namespace

void add_serve_options(CLI::App* command, ServeArgs* args, const std::string& keys_help) {
  command->add_option("spec", args->spec, "sweep spec (YAML)")->required();
  command->add_option("--liveness", args->liveness_s,
                      "seconds of silence after which a busy worker group is declared lost")
      ->capture_default_str();
  command->add_option("--stall", args->stall_s, kStallHelp)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--walltime-margin", args->walltime_margin_s,
                      "seconds kept free before a Slurm job's time limit: a group is given only "
                      "whole epochs that end before it (the job's end comes from the group)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--checkpoints", args->checkpoints,
                      "directory for trial checkpoints, reachable by every worker (default: "
                      "checkpoints/ beside the store; none: no checkpoints)");
  command->add_option("--keys", args->key_dir, keys_help);
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

}  // namespace trellis::cli
