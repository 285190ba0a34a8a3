#pragma once
// What every `trellis` subcommand shares: the global options, how a failure is printed, the
// signal that stops a serving command, and how a subcommand is registered. Each *_commands.cc
// adds its subcommands to the CLI11 app and returns what runs them; main.cc parses the line,
// sets up logging and runs the one that was given.

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/experiment_store.h"

namespace trellis::cli {

// --store and --log-level: accepted before the subcommand and after it.
struct CommonArgs {
  std::string store = "trellis.db";
  std::string log_level = "info";
};

// A subcommand and what runs it once the whole line is parsed; its result is the exit code.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

// Prints "trellis: MESSAGE" to stderr and returns the exit code 1.
int fail(const Status& s);

// SIGINT and SIGTERM are noted, not acted on: serving commands poll pending_signal() and stop
// at the next turn of their loop, so the store is left as of its last commit.
void install_signal_handlers();
int pending_signal();  // 0: none

[[nodiscard]] Status open_store(const CommonArgs& common, bool read_only,
                                std::unique_ptr<coordinator::ExperimentStore>* out);

// Runs `body(store)` on the store opened read-only (so while a coordinator writes it) and
// returns its exit code.
template <class Body>
int with_store(const CommonArgs& common, Body body) {
  std::unique_ptr<coordinator::ExperimentStore> store;
  if (Status s = open_store(common, /*read_only=*/true, &store); !s.ok()) return fail(s);
  return body(*store);
}

// The ranked trials of `experiment`, as `trellis trials` prints them; returns the exit code.
int print_ranking(coordinator::ExperimentStore& store, const std::string& experiment);

// Where the best trials' models of `store` are kept (coordinator/model_shelf.h): they belong
// to the store they rank in, and go where it goes, so STORE.models, absolute.
std::string model_dir(const std::string& store);

std::string joined(const std::vector<std::string>& items, const char* separator = ", ");

// `common` must outlive the commands returned.
std::vector<Command> add_sweep_commands(CLI::App& app, const CommonArgs& common);  // run, serve
std::vector<Command> add_slurm_commands(CLI::App& app, const CommonArgs& common);  // submit, status, cancel
std::vector<Command> add_store_commands(CLI::App& app, const CommonArgs& common);  // trials, export, events, upgrade, rm
Command add_rm_command(CLI::App& app, const CommonArgs& common);
Command add_reproduce_command(CLI::App& app, const CommonArgs& common);  // reproduce
std::vector<Command> add_trial_commands(CLI::App& app, const CommonArgs& common);  // show, compare
std::vector<Command> add_dashboard_commands(CLI::App& app, const CommonArgs& common);  // dashboard, report
std::vector<Command> add_model_commands(CLI::App& app, const CommonArgs& common);  // predict, export-model
std::vector<Command> add_keys_commands(CLI::App& app);

}  // namespace trellis::cli
