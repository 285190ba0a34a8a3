// bench_accuracy: trains the one configuration of examples/fashion-cnn.yaml (or --spec FILE,
// e.g. examples/fashion-mlp-accurate.yaml) through the
// public binaries (`trellis run`, then `trellis export --format json`) and reports its test
// accuracy, so the figure is what a user of that spec gets, whatever the trainer becomes.
//
//   bench_accuracy [--spec FILE] [--bin DIR] [--keep]
//
// The store goes to a fresh temporary directory, so every run trains from scratch. Prints the
// trial's parameters, its per-epoch val_acc, the wall time and, last, one JSON line:
//   {"bench": "accuracy", "model": "cnn", "test_acc": 0.9.., "val_acc": ..., "wall_s": ...,
//    "params": {...}}
// Exit 1 when the run fails (its log is printed). Never asserts on accuracy or time.

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "bench/sweep_run.h"

int main(int argc, char** argv) {
  std::string spec = TRELLIS_SOURCE_DIR "/examples/fashion-cnn.yaml";
  std::string bin = TRELLIS_BIN_DIR;
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--keep") keep = true;
    else if (a == "--spec" && i + 1 < argc) spec = argv[++i];
    else if (a == "--bin" && i + 1 < argc) bin = argv[++i];
    else {
      std::cerr << "usage: bench_accuracy [--spec FILE] [--bin DIR] [--keep]\n";
      return 2;
    }
  }
  trellis::bench::prepare_environment();
  const std::string dir = trellis::bench::make_temp_dir("accuracy");
  if (dir.empty()) return 1;
  const std::string text = trellis::bench::read_file(spec);
  // `export` needs the experiment's name: the spec's `name:` line.
  std::string name;
  {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("name:", 0) == 0) {
        name = line.substr(5);
        name.erase(0, name.find_first_not_of(" \t\"'"));
        name.erase(name.find_last_not_of(" \t\"'\r") + 1);
        break;
      }
  }
  if (name.empty()) {
    std::cerr << "bench_accuracy: no top-level 'name:' in " << spec << "\n";
    return 1;
  }
  trellis::bench::SweepRun run;
  if (!trellis::bench::run_sweep(bin, dir, name, text, {}, &run)) return 1;
  const double wall_s = run.wall_s;
  const auto& doc = run.exported;
  if (doc["trials"].empty()) {
    std::cerr << "bench_accuracy: no trial in " << dir << "\n";
    return 1;
  }
  // The spec holds one configuration; should it ever hold more, report the best test_acc.
  nlohmann::json best;
  for (const auto& t : doc["trials"]) {
    if (t.value("state", "") != "completed" || !t["final"].contains("test_acc")) continue;
    if (best.is_null() || t["final"]["test_acc"].get<double>() >
                              best["final"]["test_acc"].get<double>())
      best = t;
  }
  if (best.is_null()) {
    std::cerr << "bench_accuracy: no completed trial; see the run log in " << dir << "\n";
    return 1;
  }
  std::printf("spec %s\nparams %s\n", spec.c_str(), best["params"].dump().c_str());
  if (best["metrics"].contains("val_acc")) {
    std::printf("%6s %8s\n", "epoch", "val_acc");
    for (const auto& point : best["metrics"]["val_acc"])
      std::printf("%6d %8.4f\n", point[0].get<int>(), point[1].get<double>());
  }
  const double test_acc = best["final"]["test_acc"].get<double>();
  std::printf("test_acc %.4f, wall %.1f s\n", test_acc, wall_s);
  if (keep) {
    std::printf("store and logs kept in %s\n", dir.c_str());
  } else {
    std::system(("rm -rf " + dir).c_str());
  }
  const nlohmann::json summary = {{"bench", "accuracy"},
                                  {"model", best["params"].value("model", std::string("mlp"))},
                                  {"test_acc", test_acc},
                                  {"val_acc", best["final"].value("val_acc", 0.0)},
                                  {"wall_s", wall_s},
                                  {"params", best["params"]}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}
