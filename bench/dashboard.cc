// scripts/bench dashboard [--trials N] [--epochs E] [--reps R]: the dashboard over a store of
// 100,000 trials, measured in headless Chromium (bench/dashboard_browser.py): navigation to the
// trials table's first rows, a sort by a column, 1,000 learning curves overlaid. The store is
// built here directly through ExperimentStore (not through a sweep): N completed trials of a
// 5-parameter space with E epochs of three metrics each, the shape a long TPE or random sweep
// leaves.

#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>

#include "coordinator/experiment_store.h"

namespace {

using trellis::Status;
using trellis::coordinator::ExperimentRecord;
using trellis::coordinator::ExperimentStore;
using trellis::coordinator::TrialRecord;
using trellis::coordinator::TrialState;

constexpr const char* kSpec =
    "name: bench-100k\n"
    "dataset: {name: fashion-mnist, path: /usr/share/datasets/fashion-mnist}\n"
    "metric: {name: val_acc, mode: max}\n"
    "search:\n  algorithm: random\n  trials: 100000\n  space:\n"
    "    lr: {type: log_float, low: 1.0e-4, high: 1.0e-1}\n"
    "    hidden_units: {type: int, low: 32, high: 512}\n"
    "    dropout: {type: float, low: 0.0, high: 0.5}\n"
    "    optimizer: {type: categorical, values: [sgd, adam]}\n"
    "    weight_decay: {type: log_float, low: 1.0e-6, high: 1.0e-2}\n";

int fail(const Status& s) {
  std::cerr << "bench_dashboard: " << s.message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"the dashboard over a store of 100,000 trials, in headless Chromium"};
  int trials = 100000, epochs = 10, reps = 5;
  std::string dir = "/tmp/trellis-bench-dashboard";
  app.add_option("--trials", trials)->capture_default_str();
  app.add_option("--epochs", epochs)->capture_default_str();
  app.add_option("--reps", reps, "repetitions of each measurement, interleaved")->capture_default_str();
  app.add_option("--dir", dir, "where the store is built (reused when it already has the trials)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::filesystem::create_directories(dir);
  const std::string path = dir + "/store-" + std::to_string(trials) + "x" + std::to_string(epochs) + ".db";
  if (!std::filesystem::exists(path)) {
    const auto start = std::chrono::steady_clock::now();
    std::unique_ptr<ExperimentStore> store;
    if (Status s = ExperimentStore::Open(path + ".tmp", false, &store); !s.ok()) return fail(s);
    ExperimentRecord e;
    e.name = "bench-100k";
    e.spec_yaml = kSpec;
    e.metric = "val_acc";
    e.mode = "max";
    e.seed = 1;
    e.state = "completed";
    if (Status s = store->create_experiment(&e); !s.ok()) return fail(s);
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> u(0, 1);
    constexpr int kBatch = 2000;
    for (int n = 0; n < trials; ++n) {
      if (n % kBatch == 0) {
        if (n > 0)
          if (Status s = store->commit_batch(); !s.ok()) return fail(s);
        if (Status s = store->begin_batch(); !s.ok()) return fail(s);
      }
      TrialRecord t;
      t.experiment_id = e.id;
      t.number = n;
      const double lr = std::pow(10.0, -4 + 3 * u(rng));
      t.params = {{"lr", lr},
                  {"hidden_units", static_cast<std::int64_t>(32 + u(rng) * 480)},
                  {"dropout", 0.5 * u(rng)},
                  {"optimizer", std::string(u(rng) < 0.5 ? "sgd" : "adam")},
                  {"weight_decay", std::pow(10.0, -6 + 4 * u(rng))}};
      t.seed = n;
      if (Status s = store->add_trial(&t); !s.ok()) return fail(s);
      std::int32_t attempt = 0;
      if (Status s = store->start_trial(t.id, "group-" + std::to_string(n % 64), &attempt); !s.ok())
        return fail(s);
      // A learning curve that rises towards a ceiling set by the learning rate.
      const double ceiling = 0.9 - 0.1 * std::fabs(std::log10(lr) + 2.5) + 0.02 * u(rng);
      double acc = 0;
      for (int epoch = 1; epoch <= epochs; ++epoch) {
        acc = ceiling * (1 - std::exp(-0.6 * epoch)) + 0.005 * u(rng);
        if (Status s = store->append_report(t.id, attempt, epoch,
                                            {{"val_acc", acc},
                                             {"val_loss", 2.3 * (1 - acc)},
                                             {"train_loss", 2.2 * (1 - acc)}});
            !s.ok())
          return fail(s);
      }
      if (Status s = store->finish_trial(t.id, attempt, TrialState::kCompleted, "",
                                         {{"val_acc", acc}, {"test_acc", acc - 0.01 * u(rng)}});
          !s.ok())
        return fail(s);
    }
    if (Status s = store->commit_batch(); !s.ok()) return fail(s);
    store.reset();
    for (const char* suffix : {"", "-wal", "-shm"})
      if (std::filesystem::exists(path + ".tmp" + suffix))
        std::filesystem::rename(path + ".tmp" + suffix, path + suffix);
    std::cerr << "built " << path << ": " << trials << " trials x " << epochs << " epochs in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
              << " s\n";
  }
  const std::string cmd = std::string("/usr/bin/python3 " TRELLIS_SOURCE_DIR "/bench/dashboard_browser.py") +
                          " --trellis " TRELLIS_BIN_DIR "/trellis --store " + path +
                          " --experiment bench-100k --reps " + std::to_string(reps);
  const int code = std::system(cmd.c_str());
  return code == 0 ? 0 : 1;
}
