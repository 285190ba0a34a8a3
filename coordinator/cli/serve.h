#pragma once
// What `run`, `serve` and `submit` share: the coordinator's options on the command line, and
// starting a coordinator of a spec on the store.

#include <memory>
#include <string>

#include "common/status.h"
#include "common/sweep_spec.h"
#include "coordinator/cli/command.h"
#include "coordinator/coordinator.h"
#include "coordinator/experiment_store.h"

namespace trellis::cli {

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

// The spec and the options every serving command takes: --liveness, --stall,
// --walltime-margin, --checkpoints and --keys (`keys_help` says where the keys come from).
void add_serve_options(CLI::App* command, ServeArgs* args, const std::string& keys_help);

// Opens the store and starts a coordinator of `spec` (loaded by the command, which may check
// it before anything starts) bound to `args.bind`.
[[nodiscard]] Status start_coordinator(const CommonArgs& common, const ServeArgs& args,
                                       const SweepSpec& spec,
                                       std::unique_ptr<coordinator::ExperimentStore>* store,
                                       std::unique_ptr<coordinator::Coordinator>* coordinator);

}  // namespace trellis::cli
