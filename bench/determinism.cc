// bench_determinism: what deterministic proposals cost in group time. A TPE sweep of MLPs on
// Fashion-MNIST (the shape: 24 trials, 1 rank each) runs with 2 groups through the
// public binaries (`trellis run --groups 2`, `trellis export`). The coordinator makes a group
// wait when the next proposal needs the first result of a trial below k - search.lag that has
// not come in (coordinator/search/observation_feed.h). It sums that wait and every group's
// time from joining to leaving into the sweep_finished event; this prints their ratio.
//
// idle_fraction = idle_for_results_seconds / group_seconds, both measured by the same
// coordinator in the same sweep. 0 = the determinism costs no group time. The default lag,
// lag 1 and lag 0 alternate run by run, so all see the same machine state; the median and the
// range over the repetitions are reported.
//
// Prints a table, then as its last line one JSON object:
//   {"benchmark": "determinism", "idle_fraction": {"lag_4": {"median": ..., "min": ..., "max":
//    ...}, "lag_1": {...}, "lag_0": {...}}, "runs": [...]}
// Never asserts on time. Exit 1 when a run fails (its log is printed).

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench/sweep_run.h"
#include "common/sweep_spec.h"

namespace {

struct Args {
  std::string bin = TRELLIS_BIN_DIR;
  std::string dataset = "/usr/share/datasets/fashion-mnist";
  int trials = 24;
  int epochs = 2;
  int groups = 2;
  int repetitions = 3;
  bool keep = false;
};

// Exits with CLI11's message (and 0 for --help) when the arguments are not usable.
int parse_args(int argc, char** argv, Args* args) {
  CLI::App app{"bench_determinism: idle group time of reproducible TPE proposals, by search.lag"};
  app.add_option("--trials", args->trials, "trials per sweep")->check(CLI::Range(1, 1 << 30));
  app.add_option("--epochs", args->epochs, "epochs per trial")->check(CLI::Range(1, 1 << 30));
  app.add_option("--groups", args->groups, "worker groups")->check(CLI::Range(1, 1 << 30));
  app.add_option("--repetitions", args->repetitions, "runs per lag, interleaved")->check(CLI::Range(1, 1 << 30));
  app.add_option("--dataset", args->dataset, "Fashion-MNIST directory");
  app.add_option("--bin", args->bin, "directory of trellis and trellis-worker");
  app.add_flag("--keep", args->keep, "keep the sweep's directory");
  CLI11_PARSE(app, argc, argv);
  return -1;
}

std::string spec_text(const Args& args, const std::string& name, int lag) {
  std::ostringstream out;
  out << "name: " << name << "\n"
      << "dataset: {name: fashion-mnist, format: idx, path: " << args.dataset
      << ", validation_fraction: 0.1}\n"
      << "metric: {name: val_acc, mode: max}\n"
      << "search:\n"
      << "  algorithm: tpe\n"
      << "  seed: 7\n"
      << "  trials: " << args.trials << "\n"
      << "  lag: " << lag << "\n"
      << "  space:\n"
      << "    lr: {type: log_float, low: 3.0e-4, high: 3.0e-3}\n"
      << "    hidden_units: {type: int, low: 64, high: 256}\n"
      << "    hidden_layers: {type: int, low: 1, high: 2}\n"
      << "    activation: {type: categorical, values: [relu, tanh]}\n"
      << "    batch_size: {type: categorical, values: [64, 128]}\n"
      << "train: {model: mlp, optimizer: adam, epochs: " << args.epochs << "}\n"
      << "resources: {ranks_per_trial: 1}\n";
  return out.str();
}

struct Run {
  int lag = 0;
  int repetition = 0;
  double idle_s = 0;
  double group_s = 0;
  double wall_s = 0;
  double best_val_acc = 0;
  double fraction() const { return group_s > 0 ? idle_s / group_s : 0; }
};

bool sweep_once(const Args& args, const std::string& dir, int lag, int repetition, Run* run) {
  const std::string name = "det-lag" + std::to_string(lag) + "-r" + std::to_string(repetition);
  trellis::bench::SweepRun sweep;
  if (!trellis::bench::run_sweep(args.bin, dir, name, spec_text(args, name, lag),
                                 {"--groups", std::to_string(args.groups)}, &sweep))
    return false;
  run->lag = lag;
  run->repetition = repetition;
  run->wall_s = sweep.wall_s;
  for (const auto& e : sweep.exported["events"]) {
    if (e["kind"] != "sweep_finished") continue;
    run->idle_s = e["data"].value("idle_for_results_seconds", 0.0);
    run->group_s = e["data"].value("group_seconds", 0.0);
  }
  for (const auto& t : sweep.exported["trials"])
    run->best_val_acc = std::max(run->best_val_acc, t["final"].value("val_acc", 0.0));
  if (run->group_s <= 0) {
    std::cerr << "bench_determinism: no sweep_finished group time in " << dir << "\n";
    return false;
  }
  return true;
}

nlohmann::json spread(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const double median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  return {{"median", median}, {"min", v.front()}, {"max", v.back()}, {"n", v.size()}};
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (const int code = parse_args(argc, argv, &args); code >= 0) return code;
  trellis::bench::prepare_environment();
  const std::string dir = trellis::bench::make_temp_dir("determinism");
  if (dir.empty()) return 1;

  // Lag 0 (every earlier trial first) is the strict sequential reference: it shows what the
  // wait can cost and that the measure sees it.
  const int lags[] = {trellis::SweepSpec::kDefaultLag, 1, 0};
  std::vector<Run> runs;
  for (int r = 0; r < args.repetitions; ++r) {
    for (const int lag : lags) {
      Run run;
      if (!sweep_once(args, dir, lag, r, &run)) return 1;
      std::fprintf(stderr, "lag %d, repetition %d: %.1f of %.1f group-s idle (%.2f%%)\n", lag, r,
                   run.idle_s, run.group_s, 100 * run.fraction());
      runs.push_back(run);
    }
  }

  std::printf("TPE on Fashion-MNIST, %d trials of %d epoch(s), 1 rank, %d groups\n", args.trials,
              args.epochs, args.groups);
  std::printf("%4s %4s %10s %10s %8s %8s %10s\n", "lag", "rep", "idle_s", "group_s", "idle_%",
              "wall_s", "best_acc");
  nlohmann::json runs_json = nlohmann::json::array();
  std::map<int, std::vector<double>> fractions;
  for (const Run& r : runs) {
    std::printf("%4d %4d %10.1f %10.1f %8.2f %8.1f %10.4f\n", r.lag, r.repetition, r.idle_s,
                r.group_s, 100 * r.fraction(), r.wall_s, r.best_val_acc);
    fractions[r.lag].push_back(r.fraction());
    runs_json.push_back({{"lag", r.lag},
                         {"repetition", r.repetition},
                         {"idle_for_results_seconds", r.idle_s},
                         {"group_seconds", r.group_s},
                         {"idle_fraction", r.fraction()},
                         {"wall_s", r.wall_s},
                         {"best_val_acc", r.best_val_acc}});
  }
  nlohmann::json idle = nlohmann::json::object();
  for (const auto& [lag, v] : fractions) idle["lag_" + std::to_string(lag)] = spread(v);
  if (args.keep) {
    std::printf("specs, stores and logs kept in %s\n", dir.c_str());
  } else {
    std::system(("rm -rf " + dir).c_str());
  }
  const nlohmann::json summary = {{"benchmark", "determinism"},
                                  {"default_lag", trellis::SweepSpec::kDefaultLag},
                                  {"groups", args.groups},
                                  {"trials", args.trials},
                                  {"epochs", args.epochs},
                                  {"idle_fraction", idle},
                                  {"runs", runs_json}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}
