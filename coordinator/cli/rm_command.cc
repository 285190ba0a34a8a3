// `trellis rm EXPERIMENT [--yes]`: an experiment out of the store, with its checkpoints and its
// kept models.
//
// Order: the rows go first, in one transaction, then the files. Killed before the commit, the
// store still holds the whole experiment and its files are all there; killed after it, the
// store is consistent without it and only files are left, which name no row: nothing reads
// them (a new experiment of the same name starts its trials from scratch, and its model shelf
// removes files it does not rank). Files first would leave rows whose checkpoints are gone,
// and a resumed sweep would then fail on them.

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iostream>
#include <set>

#include <nlohmann/json.hpp>

#include "coordinator/cli/command.h"
#include "coordinator/coordinator_presence.h"
#include "coordinator/slurm_jobs.h"

namespace trellis::cli {
namespace {

namespace fs = std::filesystem;
using coordinator::CoordinatorPresence;
using coordinator::EventRecord;
using coordinator::ExperimentRecord;
using coordinator::ExperimentStore;

struct RmArgs {
  std::string experiment;
  bool yes = false;
};

// What holds the experiment's files: every checkpoint directory a coordinator of it named
// (each run may have had its own --checkpoints), the default one beside the store, its kept
// models, and the record of a `trellis submit`. Only those that exist.
Status experiment_files(ExperimentStore& store, const CommonArgs& common,
                        const ExperimentRecord& experiment, std::vector<std::string>* out) {
  std::vector<EventRecord> events;
  if (Status s = store.list_events(experiment.id, 0, &events); !s.ok()) return s;
  std::set<std::string> dirs;
  dirs.insert((fs::absolute(common.store).parent_path() / "checkpoints").lexically_normal().string());
  for (const EventRecord& e : events) {
    if (e.kind != "coordinator_started") continue;
    const nlohmann::json body = nlohmann::json::parse(e.body, nullptr, false);
    if (body.is_object()) {
      const std::string dir = body.value("checkpoint_dir", std::string());
      if (!dir.empty()) dirs.insert(dir);
    }
  }
  out->clear();
  std::error_code ec;
  for (const std::string& dir : dirs) {
    const std::string path = (fs::path(dir) / experiment.name).string();
    if (fs::exists(path, ec)) out->push_back(path);
  }
  for (const std::string& path : {(fs::path(model_dir(common.store)) / experiment.name).string(),
                                  coordinator::submission_path(common.store, experiment.name)})
    if (fs::exists(path, ec)) out->push_back(path);
  return Status::Ok();
}

bool confirmed(const std::string& question) {
  std::cerr << question << " [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  std::transform(answer.begin(), answer.end(), answer.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return answer == "y" || answer == "yes";
}

int cmd_rm(const CommonArgs& common, const RmArgs& args) {
  std::error_code ec;
  // Opening for writing would create a store that is not there.
  if (!fs::is_regular_file(common.store, ec))
    return fail(Status::Error("no store at " + common.store + " (--store PATH)"));
  std::unique_ptr<ExperimentStore> store;
  if (Status s = open_store(common, /*read_only=*/false, &store); !s.ok()) return fail(s);
  std::optional<ExperimentRecord> found;
  if (Status s = store->find_experiment(args.experiment, &found); !s.ok()) return fail(s);
  if (!found) {
    ExperimentRecord unused;
    return fail(coordinator::resolve_experiment(*store, args.experiment, &unused));
  }
  const ExperimentRecord& experiment = *found;
  CoordinatorPresence presence;
  if (Status s = coordinator::coordinator_presence(*store, experiment, &presence); !s.ok())
    return fail(s);
  if (presence.state == CoordinatorPresence::State::kServing)
    return fail(Status::Error(
        "experiment '" + experiment.name + "' is being served by coordinator pid " +
        std::to_string(presence.pid) + " (started " + presence.started_at +
        "); nothing was removed: stop it first (Ctrl-C, `kill " + std::to_string(presence.pid) +
        "`, or `trellis cancel " + experiment.name + "` for a `trellis submit` sweep)"));
  if (presence.state == CoordinatorPresence::State::kOtherHost)
    return fail(Status::Error(
        "experiment '" + experiment.name + "' was last served by coordinator pid " +
        std::to_string(presence.pid) + " on " + presence.host + " (started " +
        presence.started_at + "), and this host (" + coordinator::this_host() +
        ") cannot tell whether it still runs; nothing was removed: run `trellis rm` on " +
        presence.host));
  std::vector<coordinator::TrialSummary> trials;
  if (Status s = store->trial_summaries(experiment.id, &trials); !s.ok()) return fail(s);
  std::vector<std::string> files;
  if (Status s = experiment_files(*store, common, experiment, &files); !s.ok()) return fail(s);
  const std::string what = "experiment '" + experiment.name + "' (" + experiment.state + ", " +
                           std::to_string(trials.size()) + " trial(s)) from " + common.store +
                           (files.empty() ? "" : ", and " + joined(files));
  if (!args.yes) {
    if (isatty(STDIN_FILENO) == 0)
      return fail(Status::Error("refusing to delete " + what +
                                " without --yes: stdin is not a terminal to ask on"));
    if (!confirmed("delete " + what + "?")) {
      std::cout << "nothing removed\n";
      return 1;
    }
  }
  coordinator::DeletedRows rows;
  if (Status s = store->delete_experiment(experiment.id, &rows); !s.ok())
    return fail(s.With("nothing was removed"));
  std::string counts;
  for (const auto& [table, n] : rows.tables)
    if (n > 0) counts += (counts.empty() ? "" : ", ") + std::to_string(n) + " " + table;
  std::cout << "removed experiment '" << experiment.name << "' from " << common.store << ": "
            << rows.total() << " row(s) (" << counts << ")\n";
  int code = 0;
  for (const std::string& path : files) {
    const std::uintmax_t n = fs::remove_all(path, ec);
    if (ec) {
      std::cerr << "trellis: cannot remove " << path << ": " << ec.message()
                << " (the store no longer has the experiment; remove it by hand)\n";
      code = 1;
      continue;
    }
    std::cout << "removed " << path << " (" << n << " file(s) and directories)\n";
  }
  return code;
}

}  // namespace

Command add_rm_command(CLI::App& app, const CommonArgs& common) {
  auto args = std::make_shared<RmArgs>();
  auto* cmd = app.add_subcommand(
      "rm", "delete an experiment from the store (every row of it, in one transaction), then its "
            "checkpoints and kept models; asks first unless --yes; refused while a coordinator "
            "serves it");
  cmd->add_option("experiment", args->experiment, "experiment name")->required();
  cmd->add_flag("--yes,-y", args->yes, "do not ask (needed when stdin is not a terminal)");
  return {cmd, [&common, args] { return cmd_rm(common, *args); }};
}

}  // namespace trellis::cli
