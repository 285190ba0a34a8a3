#pragma once
// The early-stopping half of bench_hpo_quality: the Fashion-MNIST MLP sweep through
// `trellis run` like a user would, random search against ASHA, with Hyperband and TPE+ASHA
// beside it, over several seeds.
//
// Setting, small enough that the section runs in well under 30 minutes on this 2-core machine:
// the first `train_rows` (10,000) of Fashion-MNIST's 60,000 training images (10% of them held
// out for validation), the full 10,000-image test set, at most `max_epochs` (9) epochs a trial,
// `groups` (2) trials at a time, one rank each.
//
// The measure, fixed before any run: random search (FIFO) trains `random_trials` (16)
// configurations for the full R epochs, B = trials x R epochs. ASHA (r = 1, eta = 3, R), Hyperband
// (the same r, eta, R) and TPE+ASHA each get search.budget_epochs = B/3, the goal's fraction,
// and no other budget is tried. Every run picks as a researcher would, the trial with the best
// val_acc, and is judged on that trial's test_acc. For seed s every run uses search.seed s (the
// same validation rows). A method reaches random search when its median test_acc over seeds is
// at least random search's median; its epoch fraction is then the median over seeds of the
// epochs it trained / the epochs random search trained (<= 1/3 by the budget), else null.
// asha_epoch_fraction is ASHA's.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace trellis::bench {

struct AshaBenchOptions {
  std::string bin;      // where trellis and trellis-worker are
  std::string dataset;  // Fashion-MNIST IDX directory
  int seeds = 5;
  int train_rows = 10000;
  int random_trials = 16;
  int max_epochs = 9;
  int groups = 2;
};

// Prints its table to stdout; returns {"asha_epoch_fraction", ...} or null on failure.
nlohmann::json asha_vs_random(const AshaBenchOptions& options);

}  // namespace trellis::bench
