#include "bench/hpo_asha.h"

#include <cstdio>
#include <sstream>

#include "bench/sweep_run.h"

namespace trellis::bench {
namespace {

std::string spec_text(const AshaBenchOptions& o, const std::string& name, int trials,
                      const std::string& scheduler, long budget_epochs) {
  std::ostringstream out;
  out << "name: " << name << "\n"
      << "dataset: {name: fashion-mnist, format: idx, path: " << o.dataset
      << ", validation_fraction: 0.1}\n"
      << "metric: {name: val_acc, mode: max}\n"
      << "search:\n"
      << "  algorithm: random\n"
      << "  seed: " << o.seed << "\n"
      << "  trials: " << trials << "\n";
  if (budget_epochs > 0) out << "  budget_epochs: " << budget_epochs << "\n";
  // Wide on purpose, as a first sweep is: many configurations are poor, which early
  // stopping should notice after an epoch instead of training them through.
  out << "  space:\n"
      << "    lr: {type: log_float, low: 1.0e-5, high: 1.0e-1}\n"
      << "    hidden_units: {type: int, low: 16, high: 512}\n"
      << "    hidden_layers: {type: int, low: 1, high: 3}\n"
      << "    activation: {type: categorical, values: [relu, tanh]}\n"
      << "    batch_size: {type: categorical, values: [64, 128, 256]}\n"
      << "    dropout: {type: float, low: 0.0, high: 0.5}\n"
      << "train: {model: mlp, optimizer: adam, epochs: " << o.max_epochs << "}\n"
      << "scheduler: " << scheduler << "\n"
      << "resources: {ranks_per_trial: 1}\n";
  return out.str();
}

struct Outcome {
  double test_acc = -1;  // of the trial with the best val_acc
  double val_acc = -1;
  int trial = -1;
  long epochs = 0;  // trained, summed over trials
  int trials = 0;
};

Outcome outcome_of(const nlohmann::json& exported) {
  Outcome o;
  for (const auto& t : exported["trials"]) {
    ++o.trials;
    if (t["metrics"].contains("val_acc")) o.epochs += static_cast<long>(t["metrics"]["val_acc"].size());
    const auto& f = t["final"];
    if (!f.contains("val_acc") || !f.contains("test_acc") || f["val_acc"].is_null()) continue;
    if (f["val_acc"].get<double>() > o.val_acc) {
      o.val_acc = f["val_acc"];
      o.test_acc = f["test_acc"];
      o.trial = t["id"];
    }
  }
  return o;
}

}  // namespace

nlohmann::json asha_vs_random(const AshaBenchOptions& options) {
  const std::string dir = make_temp_dir("hpo-asha");
  if (dir.empty()) return nullptr;
  const std::vector<std::string> args = {"--groups", std::to_string(options.groups)};
  SweepRun run;
  if (!run_sweep(options.bin, dir, "random", spec_text(options, "random", options.random_trials, "fifo", 0), args, &run))
    return nullptr;
  const Outcome random = outcome_of(run.exported);
  std::printf("\nASHA vs random search, Fashion-MNIST MLP, %d groups (files in %s)\n",
              options.groups, dir.c_str());
  std::printf("%-22s %7s %7s %9s %9s %8s\n", "run", "trials", "epochs", "val_acc", "test_acc", "wall_s");
  std::printf("%-22s %7d %7ld %9.4f %9.4f %8.1f\n", "random, FIFO", random.trials, random.epochs,
              random.val_acc, random.test_acc, run.wall_s);
  std::fflush(stdout);

  const long budget = random.epochs;
  nlohmann::json result = {{"random_epochs", budget},
                           {"random_test_acc", random.test_acc},
                           {"random_trials", random.trials}};
  const std::string asha = "{type: asha, min_epochs: 1, reduction_factor: 3}";
  for (const int divisor : {9, 6, 3, 2, 1}) {
    const long asha_budget = budget / divisor;
    const std::string name = "asha-b" + std::to_string(asha_budget);
    // Enough trials that the budget, not the trial count, ends the sweep.
    if (!run_sweep(options.bin, dir, name, spec_text(options, name, static_cast<int>(asha_budget), asha, asha_budget),
                   args, &run))
      return nullptr;
    const Outcome o = outcome_of(run.exported);
    std::printf("%-22s %7d %7ld %9.4f %9.4f %8.1f\n", ("ASHA, budget B/" + std::to_string(divisor)).c_str(),
                o.trials, o.epochs, o.val_acc, o.test_acc, run.wall_s);
    std::fflush(stdout);
    if (o.test_acc >= random.test_acc) {
      result["asha_epoch_fraction"] = static_cast<double>(o.epochs) / static_cast<double>(budget);
      result["asha_epochs"] = o.epochs;
      result["asha_test_acc"] = o.test_acc;
      result["asha_trials"] = o.trials;
      return result;
    }
  }
  // Not reached even at an equal budget: say so with a fraction above 1.
  result["asha_epoch_fraction"] = nullptr;
  result["asha_reached"] = false;
  return result;
}

}  // namespace trellis::bench
