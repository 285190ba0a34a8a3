// bench_scaling: data-parallel efficiency of training. The same trial (fixed hyperparameters,
// Fashion-MNIST MLP) is trained by a group of 1 rank, then by a group of 2, through the public
// binaries only (`trellis run SPEC --groups 1`, then `trellis export --format json`), so the
// figure measures what users run and stays valid as the trainer changes.
//
// efficiency = samples/s with N ranks (--ranks, default 2) / (N x samples/s with 1 rank);
// samples/s is the trainer's own `samples_per_s` of the last epoch (the first one pays for warm-up). 1.0 = perfect scaling.
// Strong scaling: both runs train the same global batch. --repetitions R pairs of runs,
// interleaved (1 rank first in even pairs, 2 ranks first in odd ones) so drift in machine load
// hits both; the figure is the median of the pairs' efficiencies, with their min and max.
// Inside a two-node Slurm allocation (scripts/bench scaling --nodes 2) `trellis run` starts
// its groups with srun, so the 2-rank group has one rank on each node; scripts/bench then runs
// --ranks 4 in an allocation of two ranks per node and reports it beside (no goal: on a 2-core
// machine 2 ranks per node measure the scheduler as much as the trainer).
//
// Prints a table, then as its last line one JSON object:
//   {"benchmark": "scaling", "efficiency": 0.8, "efficiency_min": ..., "efficiency_max": ...,
//    "repetitions": 5, "runs": [{"repetition": 0, "ranks": 1, "samples_per_s": ...,
//    "samples_per_s_by_epoch": [...], "test_acc": ..., "wall_s": ...}, ...]}
// Never asserts on time. Exit 1 when a run fails (its log is printed).

#include <stdlib.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include "bench/sweep_run.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr const char* kDefaultDataset = "/usr/share/datasets/fashion-mnist";
constexpr int kDefaultEpochs = 2;

struct Args {
  std::string bin = TRELLIS_BIN_DIR;
  std::string dataset = kDefaultDataset;
  int epochs = kDefaultEpochs;
  int hidden_units = 128;
  int batch_size = 128;
  int repetitions = 5;
  int ranks = 2;
  bool keep = false;
};

struct Run {
  int ranks = 0;
  std::vector<double> samples_per_s;  // by epoch
  double test_acc = 0;
  double wall_s = 0;
};

// Exits with CLI11's message (and 0 for --help) when the arguments are not usable.
int parse_args(int argc, char** argv, Args* args) {
  CLI::App app{"bench_scaling: 2 ranks against 1 on the same trial"};
  app.add_option("--epochs", args->epochs, "epochs of the trial")->check(CLI::Range(1, 1 << 30));
  app.add_option("--hidden-units", args->hidden_units, "hidden units of the MLP")->check(CLI::Range(1, 1 << 30));
  app.add_option("--batch-size", args->batch_size, "global batch size (split over the ranks)")->check(CLI::Range(2, 1 << 20));
  app.add_option("--repetitions", args->repetitions, "interleaved pairs of runs")->check(CLI::Range(1, 1 << 30));
  app.add_option("--ranks", args->ranks, "ranks of the group measured against 1 rank")->check(CLI::Range(2, 1 << 10));
  app.add_option("--dataset", args->dataset, "Fashion-MNIST directory");
  app.add_option("--bin", args->bin, "directory of trellis and trellis-worker");
  app.add_flag("--keep", args->keep, "keep the sweep's directory");
  CLI11_PARSE(app, argc, argv);
  return -1;
}

std::string experiment_name(int ranks) { return "bench-scaling-r" + std::to_string(ranks); }

std::string spec_text(const Args& args, int ranks) {
  std::ostringstream out;
  out << "name: " << experiment_name(ranks) << "\n"
      << "dataset:\n"
      << "  name: fashion-mnist\n"
      << "  format: idx\n"
      << "  path: " << args.dataset << "\n"
      << "  validation_fraction: 0.1\n"
      << "metric: {name: val_acc, mode: max}\n"
      << "search: {algorithm: random, seed: 1, trials: 1}\n"
      << "train:\n"
      << "  model: mlp\n"
      << "  hidden_layers: 1\n"
      << "  hidden_units: " << args.hidden_units << "\n"
      << "  activation: relu\n"
      << "  optimizer: adam\n"
      << "  lr: 0.001\n"
      << "  batch_size: " << args.batch_size << "\n"
      << "  epochs: " << args.epochs << "\n"
      << "resources:\n"
      << "  ranks_per_trial: " << ranks << "\n";
  return out.str();
}

bool train_once(const Args& args, const std::string& dir, int ranks, Run* run) {
  // One core per rank in both runs: with --groups 1 a lone rank would own every core and run
  // that many BLAS threads, which is not the 1-rank baseline. The spec has one trial, so the
  // extra groups of the 1-rank run only idle.
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const int groups = std::max(1, static_cast<int>(cores) / ranks);
  trellis::bench::SweepRun sweep;
  if (!trellis::bench::run_sweep(args.bin, dir, experiment_name(ranks), spec_text(args, ranks),
                                 {"--groups", std::to_string(groups)}, &sweep))
    return false;
  run->wall_s = sweep.wall_s;
  const auto& doc = sweep.exported;
  if (doc["trials"].empty()) {
    std::cerr << "bench_scaling: no trial in " << dir << "\n";
    return false;
  }
  const auto& trial = doc["trials"][0];
  if (trial.value("state", "") != "completed" || !trial["metrics"].contains("samples_per_s")) {
    std::cerr << "bench_scaling: trial not completed or no samples_per_s in " << dir << "\n";
    return false;
  }
  run->ranks = ranks;
  for (const auto& point : trial["metrics"]["samples_per_s"]) {
    run->samples_per_s.push_back(point[1].get<double>());
  }
  run->test_acc = trial["final"].value("test_acc", 0.0);
  return !run->samples_per_s.empty();
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (const int code = parse_args(argc, argv, &args); code >= 0) return code;
  trellis::bench::prepare_environment();
  const std::string dir = trellis::bench::make_temp_dir("scaling");
  if (dir.empty()) return 1;

  std::vector<Run> runs;
  std::vector<double> efficiencies;
  for (int r = 0; r < args.repetitions; ++r) {
    const std::string rep_dir = dir + "/rep-" + std::to_string(r);
    std::system(("mkdir -p " + rep_dir).c_str());
    Run pair[2];  // the lone rank, the group
    const int n = args.ranks;
    for (int ranks : r % 2 == 0 ? std::vector<int>{1, n} : std::vector<int>{n, 1})
      if (!train_once(args, rep_dir, ranks, &pair[ranks == 1 ? 0 : 1])) return 1;
    const double one = pair[0].samples_per_s.back();
    efficiencies.push_back(one > 0 ? pair[1].samples_per_s.back() / (n * one) : 0);
    runs.push_back(pair[0]);
    runs.push_back(pair[1]);
  }
  std::vector<double> sorted = efficiencies;
  std::sort(sorted.begin(), sorted.end());
  const double efficiency = sorted[sorted.size() / 2];

  std::printf("MLP (1 hidden layer of %d, batch %d) on Fashion-MNIST, %d epoch(s); "
              "samples/s of the last epoch\n",
              args.hidden_units, args.batch_size, args.epochs);
  std::printf("%4s %6s %14s %10s %8s\n", "rep", "ranks", "samples/s", "test_acc", "wall_s");
  nlohmann::json runs_json = nlohmann::json::array();
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Run& r = runs[i];
    std::printf("%4zu %6d %14.0f %10.4f %8.1f\n", i / 2, r.ranks, r.samples_per_s.back(),
                r.test_acc, r.wall_s);
    runs_json.push_back({{"repetition", i / 2},
                         {"ranks", r.ranks},
                         {"samples_per_s", r.samples_per_s.back()},
                         {"samples_per_s_by_epoch", r.samples_per_s},
                         {"test_acc", r.test_acc},
                         {"wall_s", r.wall_s}});
  }
  std::printf("efficiency (%d ranks vs %d x 1 rank): median %.3f of %d, min %.3f, max %.3f\n",
              args.ranks, args.ranks, efficiency, args.repetitions, sorted.front(), sorted.back());
  if (args.keep) {
    std::printf("specs, stores and logs kept in %s\n", dir.c_str());
  } else {
    std::system(("rm -rf " + dir).c_str());
  }
  const nlohmann::json summary = {{"benchmark", "scaling"},
                                  {"ranks", args.ranks},
                                  {"efficiency", efficiency},
                                  {"efficiency_min", sorted.front()},
                                  {"efficiency_max", sorted.back()},
                                  {"repetitions", args.repetitions},
                                  {"epochs", args.epochs},
                                  {"runs", runs_json}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}
