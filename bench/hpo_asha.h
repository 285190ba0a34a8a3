#pragma once
// The ASHA half of bench_hpo_quality: the Fashion-MNIST MLP sweep, random search against ASHA
// at equal total budgets of epochs, through `trellis run` like a user would.
//
// Random search trains `random_trials` configurations for R epochs each (B = trials x R
// epochs). ASHA (r = 1, eta = 3, R) then runs the same space with epoch budgets B/9, B/6,
// B/3, B/2 and B, stopping at the first whose pick reaches random search's. Both sides pick
// as a researcher would, the trial with the best val_acc, and are compared on that trial's
// test_acc. asha_epoch_fraction = epochs ASHA trained in that run / B (goal <= 1/3); above 1
// when even budget B did not reach it.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace trellis::bench {

struct AshaBenchOptions {
  std::string bin;      // where trellis and trellis-worker are
  std::string dataset;  // Fashion-MNIST IDX directory
  int random_trials = 16;
  int max_epochs = 9;
  int groups = 2;
  std::uint64_t seed = 7;
};

// Prints its table to stdout; returns {"asha_epoch_fraction", ...} or null on failure.
nlohmann::json asha_vs_random(const AshaBenchOptions& options);

}  // namespace trellis::bench
