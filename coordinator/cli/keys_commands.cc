// `trellis keys init|show|authorize`: the CURVE keys of the coordinator and the workers
// (common/keys.h).

#include <spdlog/spdlog.h>

#include <iostream>

#include "common/keys.h"
#include "coordinator/cli/command.h"

namespace trellis::cli {
namespace {

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

std::vector<Command> add_keys_commands(CLI::App& app) {
  struct KeysArgs {
    std::string dir;
    bool force = false;
    std::string key;
    std::string dir_or_default() const { return dir.empty() ? default_key_dir() : dir; }
  };
  auto args = std::make_shared<KeysArgs>();
  auto* keys_cmd = app.add_subcommand(
      "keys", "CURVE keys of the coordinator and the workers ($TRELLIS_HOME, else ~/.trellis)");
  keys_cmd->require_subcommand(1);
  keys_cmd->add_option("--dir", args->dir,
                       "key directory (default: $TRELLIS_HOME, else ~/.trellis)");
  auto* init_cmd = keys_cmd->add_subcommand(
      "init", "make the coordinator and worker key pairs and authorize the worker key");
  init_cmd->add_flag("--force", args->force,
                     "replace existing keys (workers with the old keys are refused)");
  auto* show_cmd = keys_cmd->add_subcommand("show", "print the public keys and the allow-list");
  auto* authorize_cmd = keys_cmd->add_subcommand(
      "authorize", "add a worker public key (the line of another worker.pub) to the allow-list");
  // Z85 has '-': one key in 85 starts with it, and would read as an option without the `--`.
  authorize_cmd->add_option("key", args->key,
                            "worker public key (40 characters of Z85); write `trellis keys "
                            "authorize -- KEY`, since a key may start with '-'")
      ->required();
  return {{init_cmd,
           [args] {
             const std::string dir = args->dir_or_default();
             if (Status s = init_keys(dir, args->force); !s.ok()) return fail(s);
             return cmd_keys_show(dir);
           }},
          {show_cmd, [args] { return cmd_keys_show(args->dir_or_default()); }},
          {authorize_cmd, [args] {
             const std::string dir = args->dir_or_default();
             if (Status s = authorize_worker(dir, args->key); !s.ok()) return fail(s);
             spdlog::info("authorized worker key {} in {}/{}", args->key, dir,
                          kAuthorizedWorkersFile);
             return 0;
           }}};
}

}  // namespace trellis::cli
