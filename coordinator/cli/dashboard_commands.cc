// `trellis dashboard` (the store in a browser, live, read-only) and `trellis report` (the same
// views of one experiment as one HTML file).

#include <fstream>
#include <iostream>
#include <random>

#include "coordinator/cli/command.h"
#include "coordinator/dashboard/dashboard_server.h"
#include "coordinator/dashboard/report.h"

namespace trellis::cli {
namespace {

using coordinator::ExperimentStore;

struct DashboardArgs {
  std::string bind = "127.0.0.1:8080";
  bool allow_remote = false;
  std::string token_file;
};

Status read_token(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return Status::Error("--token-file " + path + ": cannot read it");
  std::getline(in, *out);
  while (!out->empty() && (out->back() == '\r' || out->back() == ' ')) out->pop_back();
  if (out->size() < 16)
    return Status::Error("--token-file " + path + ": the token is shorter than 16 characters");
  return Status::Ok();
}

int cmd_dashboard(const CommonArgs& common, const DashboardArgs& args) {
  dashboard::ServerOptions options;
  if (Status s = dashboard::parse_bind(args.bind, &options); !s.ok()) return fail(s);
  options.allow_remote = args.allow_remote;
  if (!args.token_file.empty()) {
    if (Status s = read_token(args.token_file, &options.token); !s.ok()) return fail(s);
  }
  std::unique_ptr<ExperimentStore> store;
  if (Status s = open_store(common, /*read_only=*/true, &store); !s.ok()) return fail(s);
  dashboard::DashboardApi api(store.get(), model_dir(common.store));
  const Status s = dashboard::serve_dashboard(
      api, options,
      [&](int port) {
        const bool v6 = options.host.find(':') != std::string::npos;
        const std::string url = "http://" + (v6 ? "[" + options.host + "]" : options.host) + ":" +
                                std::to_string(port) + "/";
        std::cout << "trellis dashboard: " << common.store << " at " << url
                  << (options.token.empty() ? "" : "?token=<the token in " + args.token_file + ">")
                  << " (read-only; Ctrl-C stops)" << std::endl;
        if (options.host.rfind("127.", 0) == 0 || options.host == "localhost")
          std::cout << "  from a laptop: ssh -L " << port << ":127.0.0.1:" << port
                    << " THIS-HOST, then open http://127.0.0.1:" << port << "/" << std::endl;
      },
      [] { return pending_signal() != 0; });
  if (!s.ok()) return fail(s);
  return 0;
}

}  // namespace

std::vector<Command> add_dashboard_commands(CLI::App& app, const CommonArgs& common) {
  auto dash = std::make_shared<DashboardArgs>();
  auto* dash_cmd = app.add_subcommand(
      "dashboard", "serve the store as a live, read-only web page: trials, curves, parallel "
                   "coordinates, importance, the scheduler's story, comparisons");
  dash_cmd->add_option("--bind", dash->bind,
                       "HOST:PORT to listen on; port 0 picks a free one. Loopback unless "
                       "--allow-remote")
      ->capture_default_str();
  dash_cmd->add_flag("--allow-remote", dash->allow_remote,
                     "allow a non-loopback --bind (needs --token-file)");
  dash_cmd->add_option("--token-file", dash->token_file,
                       "file whose first line is the token every request must carry "
                       "(Authorization: Bearer, or ?token= on the page's URL)");

  struct ReportArgs {
    std::string experiment;
    std::string output;
  };
  auto report = std::make_shared<ReportArgs>();
  auto* report_cmd = app.add_subcommand(
      "report", "write one experiment's dashboard as a single self-contained HTML file");
  report_cmd->add_option("experiment", report->experiment, "experiment name")->required();
  report_cmd->add_option("--output,-o", report->output, "the HTML file to write")->required();

  return {{dash_cmd, [&common, dash] { return cmd_dashboard(common, *dash); }},
          {report_cmd, [&common, report] {
             return with_store(common, [&](ExperimentStore& store) {
               dashboard::DashboardApi api(&store, model_dir(common.store));
               dashboard::ReportSummary summary;
               if (Status s = dashboard::write_report(api, store, report->experiment,
                                                      report->output, &summary);
                   !s.ok())
                 return fail(s);
               std::cout << report->output << ": " << report->experiment << ", "
                         << summary.trials << " trials";
               if (summary.trial_documents < summary.trials)
                 std::cout << " (curves and details of the best " << summary.trial_documents
                           << ")";
               std::cout << ", " << (summary.bytes + 1023) / 1024 << " KiB" << std::endl;
               return 0;
             });
           }}};
}

}  // namespace trellis::cli
