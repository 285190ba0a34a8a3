// trellis: the researcher's command line. `run`, `serve` and `submit` host the coordinator
// (coordinator/cli/sweep_commands.cc, slurm_commands.cc); `trials`, `export`, `events` and
// `status` only read the store; `predict` and `export-model` use the models kept beside it
// (cli/model_commands.cc); `keys` manages the CURVE keys.

#include <CLI/CLI.hpp>

#include <vector>

#include "common/logging.h"
#include "coordinator/cli/command.h"

int main(int argc, char** argv) {
  using namespace trellis;
  using namespace trellis::cli;
  CLI::App app{"trellis: hyperparameter sweeps on HPC clusters (coordinator and store)"};
  app.require_subcommand(1);
  // Subcommands inherit this: the global options may follow the subcommand too, as in
  // `trellis run spec.yaml --store x.db`.
  app.fallthrough();
  app.footer("Every subcommand takes --store and --log-level, before or after its name.\n");
  CommonArgs common;
  app.add_option("--store", common.store, "experiment store (SQLite file)")
      ->capture_default_str();
  app.add_option("--log-level", common.log_level, "trace|debug|info|warn|error|off")
      ->capture_default_str();

  std::vector<Command> commands;
  for (std::vector<Command> added :
       {add_sweep_commands(app, common), add_slurm_commands(app, common),
        add_store_commands(app, common), add_trial_commands(app, common),
        add_dashboard_commands(app, common), add_model_commands(app, common),
        add_keys_commands(app), std::vector<Command>{add_reproduce_command(app, common)}})
    commands.insert(commands.end(), added.begin(), added.end());

  CLI11_PARSE(app, argc, argv);

  if (Status s = init_logging("trellis", common.log_level); !s.ok()) return fail(s);
  install_signal_handlers();
  for (const Command& command : commands)
    if (*command.app) return command.run();
  return fail(Status::Error("no command given (see --help)"));
}
