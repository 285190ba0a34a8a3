#pragma once
// TrialTable: ranks an experiment's trials by one metric and prints the best of them as an
// aligned text table, for `trellis trials [EXPERIMENT] --sort METRIC` and the summary at the
// end of `trellis run`.
//
// A trial's value for a metric is its final value if it has one, else the value of the last
// epoch its lineage reported. Trials without a value (or with NaN) rank after all others; ties
// and unvalued trials go in trial-number order. The table reads one summary per trial
// (ExperimentStore::trial_summaries), never the metric series, so 100,000 trials take well
// under a second; it prints the best `limit` of them (a researcher wants the top of a big
// sweep, not 100,000 lines) with a line saying how the rest are spread.

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/experiment_store.h"

namespace trellis::coordinator {

struct RankedTrial {
  TrialSummary trial;
  std::optional<double> value;  // of the metric ranked by
};

// The experiment's own metric follows its mode; any other metric is guessed from its name:
// losses, errors and durations ("loss", "err", "..._rmse", "..._mae", "..._s" but not the rate
// "..._per_s") go down, everything else (accuracy, r2) goes up.
bool higher_is_better(const ExperimentRecord& experiment, const std::string& metric);

// All trials of `experiment`, best first by `metric`.
[[nodiscard]] Status rank_trials(ExperimentStore& store, const ExperimentRecord& experiment,
                                 const std::string& metric, std::vector<RankedTrial>* out);

// Rows `trellis trials` and `trellis run` print unless told otherwise.
inline constexpr int kDefaultTrialRows = 20;

struct TrialTableOptions {
  std::string experiment;   // empty: the latest experiment
  std::string sort_metric;  // empty: the experiment's metric
  int limit = kDefaultTrialRows;  // rows to print; 0: all
};

// A header line (experiment, state, trial counts by state, sort metric and direction), the
// params every trial shares, then rank, trial, state, the sort metric, test_acc/val_acc
// (classification) or test_rmse/val_rmse/val_mae/val_r2 (regression) and val_loss where
// present, epochs, and each param that varies. When rows are left out, a last line says
// how many and how the sort metric is spread over all trials (best, median, worst). Fails
// clearly when the store has no experiment or the name is unknown.
[[nodiscard]] Status print_trials(ExperimentStore& store, const TrialTableOptions& options,
                                  std::ostream& out);

}  // namespace trellis::coordinator
