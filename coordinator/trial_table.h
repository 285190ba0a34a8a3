#pragma once
// TrialTable: ranks an experiment's trials by one metric and prints them as an aligned text
// table, for `trellis trials [EXPERIMENT] --sort METRIC` and the summary at the end of
// `trellis run`.
//
// A trial's value for a metric is its final value if it has one, else the value of the last
// epoch its latest attempt reported. Trials without a value (or with NaN) rank after all
// others; ties and unvalued trials go in trial-number order.

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/experiment_store.h"

namespace trellis::coordinator {

struct RankedTrial {
  TrialRecord trial;
  std::optional<double> value;  // of the metric ranked by
};

// The experiment's own metric follows its mode; any other metric is guessed from its name:
// losses, errors and durations ("loss", "err", "..._s" but not the rate "..._per_s") go down,
// everything else goes up.
bool higher_is_better(const ExperimentRecord& experiment, const std::string& metric);

// All trials of `experiment`, best first by `metric`.
[[nodiscard]] Status rank_trials(ExperimentStore& store, const ExperimentRecord& experiment,
                                 const std::string& metric, std::vector<RankedTrial>* out);

struct TrialTableOptions {
  std::string experiment;   // empty: the latest experiment
  std::string sort_metric;  // empty: the experiment's metric
  int limit = 0;            // rows to print; 0: all
};

// A header line (experiment, state, trial counts by state, sort metric and direction), then
// rank, trial, state, the sort metric, test_acc/val_acc/val_loss where present, epochs, and
// each param. Fails clearly when the store has no experiment or the name is unknown.
[[nodiscard]] Status print_trials(ExperimentStore& store, const TrialTableOptions& options,
                                  std::ostream& out);

}  // namespace trellis::coordinator
