// The commands that read the store (`trellis trials`, `export`, `events`) and `upgrade`, the one
// that rewrites an old one. The readers open the store read-only, so they work while a
// coordinator writes it.

#include <fstream>
#include <iostream>
#include <map>

#include "coordinator/cli/command.h"
#include "coordinator/exporter.h"
#include "coordinator/store_schema.h"
#include "coordinator/trial_table.h"

namespace trellis::cli {
namespace {

using coordinator::EventRecord;
using coordinator::ExperimentRecord;
using coordinator::ExperimentStore;
using coordinator::ExportFormat;
using coordinator::TrialRecord;

// Runs `body` on the store opened read-only.

int cmd_events(ExperimentStore& store, const std::string& name, std::int64_t after) {
  ExperimentRecord experiment;
  if (Status s = coordinator::resolve_experiment(store, name, &experiment); !s.ok()) return fail(s);
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

struct ExportArgs {
  std::string experiment;
  std::string format = "json";
  std::string output;
};

int cmd_export(ExperimentStore& store, const ExportArgs& args) {
  ExportFormat format;
  if (Status s = coordinator::parse_export_format(args.format, &format); !s.ok()) return fail(s);
  std::ofstream file;
  if (!args.output.empty()) {
    file.open(args.output);
    if (!file) return fail(Status::Error("cannot write '" + args.output + "'"));
  }
  std::ostream& out = args.output.empty() ? std::cout : file;
  if (Status s = coordinator::export_experiment(store, args.experiment, format, out); !s.ok())
    return fail(s);
  return 0;
}

}  // namespace

std::vector<Command> add_store_commands(CLI::App& app, const CommonArgs& common) {
  struct TrialsArgs {
    coordinator::TrialTableOptions table;
    bool all = false;
  };
  auto trials = std::make_shared<TrialsArgs>();
  auto* trials_cmd = app.add_subcommand("trials", "list an experiment's trials, best first");
  trials_cmd->add_option("experiment", trials->table.experiment,
                         "experiment name (default: the latest)");
  trials_cmd->add_option("--sort", trials->table.sort_metric,
                         "metric to rank by (default: the experiment's metric)");
  trials_cmd->add_option("--limit", trials->table.limit, "show the best N trials (0: all)")
      ->capture_default_str();
  trials_cmd->add_flag("--all", trials->all, "show every trial (as --limit 0)");

  auto exported = std::make_shared<ExportArgs>();
  auto* export_cmd = app.add_subcommand(
      "export", "print an experiment's trials, parameters and every epoch's metrics");
  export_cmd->add_option("experiment", exported->experiment, "experiment name")->required();
  export_cmd->add_option("--format", exported->format, "json|csv")->capture_default_str();
  export_cmd->add_option("--output,-o", exported->output, "write to this file instead of stdout");

  struct EventsArgs {
    std::string experiment;
    std::int64_t after = 0;
  };
  auto events = std::make_shared<EventsArgs>();
  auto* events_cmd = app.add_subcommand(
      "events", "print an experiment's story: proposals, attempts, pauses, promotions, "
                "exploits, requeues, ends, groups joining and lost (one line each, in order)");
  events_cmd->add_option("experiment", events->experiment, "experiment name (default: the latest)");
  events_cmd->add_option("--after", events->after, "only events after this sequence number");

  auto* upgrade_cmd = app.add_subcommand(
      "upgrade", "upgrade a store written by an older trellis to this version's schema, in place");

  return {
      add_rm_command(app, common),
      {trials_cmd,
       [&common, trials] {
         return with_store(common, [&](ExperimentStore& store) {
           coordinator::TrialTableOptions table = trials->table;
           if (trials->all) table.limit = 0;
           if (Status s = coordinator::print_trials(store, table, std::cout); !s.ok())
             return fail(s);
           return 0;
         });
       }},
      {export_cmd,
       [&common, exported] {
         return with_store(common, [&](ExperimentStore& store) { return cmd_export(store, *exported); });
       }},
      {events_cmd,
       [&common, events] {
         return with_store(common, [&](ExperimentStore& store) {
           return cmd_events(store, events->experiment, events->after);
         });
       }},
      {upgrade_cmd, [&common] {
         // Opening for writing migrates; a store that is current is left as it is.
         std::unique_ptr<ExperimentStore> store;
         if (Status s = open_store(common, /*read_only=*/false, &store); !s.ok()) return fail(s);
         std::cout << common.store << ": schema version " << coordinator::kSchemaVersion << "\n";
         return 0;
       }}};
}

}  // namespace trellis::cli
