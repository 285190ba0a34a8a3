// `trellis show EXPERIMENT TRIAL` (everything about one trial) and `trellis compare EXPERIMENT
// TRIAL TRIAL...` (trials side by side, only what differs unless --all). Both read the store
// read-only, so they work while the coordinator writes it.

#include <algorithm>
#include <iostream>
#include <set>

#include "coordinator/cli/command.h"
#include "coordinator/exporter.h"
#include "coordinator/model_shelf.h"
#include "coordinator/trial_comparison.h"

namespace trellis::cli {
namespace {

using coordinator::ExperimentRecord;
using coordinator::ExperimentStore;
using nlohmann::json;

// A cell, "-" when missing.
std::string text_of(const json& v) { return v.is_null() ? "-" : coordinator::cell_text(v); }

// "a=1 b=relu", in name order.
std::string assignments(const json& object) {
  std::string out;
  for (const auto& [name, value] : object.items())
    out += (out.empty() ? "" : "  ") + name + "=" + text_of(value);
  return out.empty() ? "-" : out;
}

// Where trial `number`'s model is on the shelf, or why it is not there.
std::string model_line(const std::string& store, const ExperimentRecord& experiment,
                       std::int32_t number) {
  coordinator::ShelfIndex shelf;
  if (Status s = coordinator::read_shelf_index(model_dir(store) + "/" + experiment.name, &shelf);
      !s.ok())
    return "none kept: " + s.message();
  for (const coordinator::KeptModel& m : shelf.models) {
    if (m.number != number) continue;
    const std::string place = "rank " + std::to_string(m.rank) + " of the " +
                              std::to_string(shelf.keep) + " best";
    if (m.path.empty()) return "not kept: it ranks " + place + ", but its model did not arrive";
    return m.path + " (" + place + ")";
  }
  return "not kept: only the best " + std::to_string(shelf.keep) +
         " completed trials' models are (keep_models in the spec)";
}

void print_trial(const ExperimentRecord& experiment, const json& t, const std::string& model,
                 std::ostream& out) {
  std::set<std::int64_t> epochs;
  for (const auto& [name, points] : t["metrics"].items())
    for (const json& p : points) epochs.insert(p[0].get<std::int64_t>());
  out << "trial " << t["id"] << " of '" << experiment.name << "': " << t["state"].get<std::string>()
      << ", " << epochs.size() << " epoch(s), attempt " << t["attempt"] << ", seed " << t["seed"]
      << "\n";
  if (!t["error"].get<std::string>().empty()) out << "why:        " << t["error"].get<std::string>() << "\n";
  out << "params:     " << assignments(t["params"]) << "\n"
      << "final:      " << assignments(t["final"]) << "\n"
      << "checkpoint: after epoch " << t["checkpoint_epoch"] << "\n"
      << "model:      " << model << "\n"
      << "started:    " << text_of(t["started_at"]) << ", finished: " << text_of(t["finished_at"])
      << "\n";
  if (!epochs.empty()) {
    std::vector<std::vector<std::string>> table = {{"epoch"}};
    std::vector<std::string> names;
    for (const auto& [name, points] : t["metrics"].items()) {
      names.push_back(name);
      table[0].push_back(name);
    }
    for (const std::int64_t e : epochs) {
      std::vector<std::string> row = {std::to_string(e)};
      for (const std::string& name : names) {
        std::string cell = "-";
        for (const json& p : t["metrics"][name])
          if (p[0].get<std::int64_t>() == e) cell = p[1].is_null() ? "null" : text_of(p[1]);
        row.push_back(cell);
      }
      table.push_back(std::move(row));
    }
    std::vector<std::size_t> width(table[0].size(), 0);
    for (const auto& row : table)
      for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
    out << "\n";
    for (const auto& row : table) {
      for (std::size_t c = 0; c < row.size(); ++c)
        out << row[c] << (c + 1 < row.size() ? std::string(width[c] - row[c].size() + 2, ' ') : "");
      out << "\n";
    }
  }
  if (!t["lineage"].empty()) {
    out << "\nlineage (PBT exploits, oldest first):\n";
    for (const json& l : t["lineage"])
      out << "  after epoch " << l["epoch"] << ": took trial " << l["donor"] << "'s state after epoch "
          << l["donor_epoch"] << "; params " << assignments(l["params_after"]) << " ("
          << l["reason"].get<std::string>() << ")\n";
  }
  if (t["provenance"].is_object() && !t["provenance"].empty()) {
    out << "\nprovenance of the latest attempt:\n";
    for (const auto& [key, value] : t["provenance"].items()) {
      std::string text = text_of(value);
      for (std::size_t at = 0; (at = text.find('\n', at)) != std::string::npos; at += 3)
        text.replace(at, 1, "\n   ");
      out << "  " << key << ": " << text << "\n";
    }
  }
}

struct ShowArgs {
  std::string experiment;
  std::int32_t trial = 0;
  std::string format = "text";
};

int cmd_show(const CommonArgs& common, ExperimentStore& store, const ShowArgs& args) {
  if (args.format != "text" && args.format != "json")
    return fail(Status::Error("--format '" + args.format + "': expected text or json"));
  ExperimentRecord experiment;
  if (Status s = coordinator::resolve_experiment(store, args.experiment, &experiment); !s.ok())
    return fail(s);
  std::vector<json> documents;
  if (Status s = coordinator::trial_documents(store, experiment, {args.trial}, &documents); !s.ok())
    return fail(s);
  const std::string model = model_line(common.store, experiment, args.trial);
  if (args.format == "json") {
    json doc = documents[0];
    doc["model"] = model;
    std::cout << doc.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    print_trial(experiment, documents[0], model, std::cout);
  }
  return 0;
}

struct CompareArgs {
  std::string experiment;
  std::vector<std::int32_t> trials;
  bool all = false;
  std::string format = "table";
};

int cmd_compare(ExperimentStore& store, const CompareArgs& args) {
  coordinator::CompareFormat format;
  if (Status s = coordinator::parse_compare_format(args.format, &format); !s.ok()) return fail(s);
  if (args.trials.size() < 2)
    return fail(Status::Error("compare needs at least two trial numbers"));
  ExperimentRecord experiment;
  if (Status s = coordinator::resolve_experiment(store, args.experiment, &experiment); !s.ok())
    return fail(s);
  std::vector<json> documents;
  if (Status s = coordinator::trial_documents(store, experiment, args.trials, &documents); !s.ok())
    return fail(s);
  coordinator::write_comparison(args.trials, coordinator::compare_trials(documents), args.all,
                                format, std::cout);
  return 0;
}


}  // namespace

std::vector<Command> add_trial_commands(CLI::App& app, const CommonArgs& common) {
  auto show = std::make_shared<ShowArgs>();
  auto* show_cmd = app.add_subcommand(
      "show", "everything about one trial: state and why, parameters, every epoch's metrics, "
              "final metrics, PBT lineage, provenance, and where its model is kept");
  show_cmd->add_option("experiment", show->experiment, "experiment name")->required();
  show_cmd->add_option("trial", show->trial, "trial number (as `trellis trials` lists it)")
      ->required();
  show_cmd->add_option("--format", show->format, "text|json")->capture_default_str();

  auto compare = std::make_shared<CompareArgs>();
  auto* compare_cmd = app.add_subcommand(
      "compare", "trials side by side: state, parameters, final metrics and provenance; only "
                 "the rows that differ unless --all");
  compare_cmd->add_option("experiment", compare->experiment, "experiment name")->required();
  compare_cmd->add_option("trials", compare->trials, "two or more trial numbers")->required();
  compare_cmd->add_flag("--all", compare->all, "every row, also those where all trials agree");
  compare_cmd->add_option("--format", compare->format, "table|csv|json")->capture_default_str();

  return {{show_cmd,
           [&common, show] {
             return with_store(common, [&](ExperimentStore& s) { return cmd_show(common, s, *show); });
           }},
          {compare_cmd, [&common, compare] {
             return with_store(common, [&](ExperimentStore& s) { return cmd_compare(s, *compare); });
           }}};
}

}  // namespace trellis::cli
