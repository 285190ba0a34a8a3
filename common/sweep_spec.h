#pragma once
// SweepSpec: a sweep as the researcher wrote it in YAML, checked before anything starts.
//
//   name: fashion-mlp                  # the experiment's name in the store
//   dataset: {name: fashion-mnist, format: idx, path: DIR, validation_fraction: 0.1}
//                                      # csv/libsvm one file: test_fraction: 0.2 (no `test:`)
//   metric: {name: val_acc, mode: max} # or just `metric: val_acc`; default: val_acc, or
//                                      # val_rmse for task: regression
//   search:
//     algorithm: random                # random | grid | sobol | tpe
//     seed: 7
//     trials: 8                        # grid: optional, the grid's size by default
//     budget_epochs: 40                # optional cap on epochs summed over trials
//     lag: 4                           # trial k learns from the trials numbered below k - lag
//     space:
//       lr: {type: log_float, low: 1.0e-4, high: 3.0e-3}
//       hidden_units: {type: int, low: 64, high: 256}
//       activation: {type: categorical, values: [relu, tanh]}
//       optimizer: {type: categorical, values: [sgd, adam]}
//       momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: sgd}}
//       # grid search: a float or log_float also needs `points: N`, N values from low to high
//   train: {batch_size: 128, epochs: 4}   # fixed hyperparameters
//   resources: {ranks_per_trial: 2}
//   keep_models: 5                     # the best trials' final models kept beside the store
//
// Every error names the file, the line and column, and the field ("spec.yaml:7:5: search.trials:
// must be an integer >= 1, got 'eight'"), and an unknown key gets a did-you-mean.

#include <cstdint>
#include <string>
#include <vector>

#include "common/dataset_ref.h"
#include "common/param_value.h"
#include "common/search_space.h"
#include "common/status.h"

namespace trellis {

// `scheduler:` in the spec: what runs, how far, and what stops early.
struct SchedulerSpec {
  std::string type = "fifo";     // fifo | median | asha | hyperband | pbt
  int min_epochs = 1;            // asha/hyperband: r, the first rung; median: grace period
  int reduction_factor = 3;      // asha/hyperband: eta
  int max_epochs = 0;            // R, the most epochs a trial gets (0: the `epochs` hyperparameter)
  int min_trials = 3;            // median: trials reported at an epoch before it prunes there
  int interval = 2;              // pbt: epochs between exploit/explore decisions
  double quantile = 0.25;        // pbt: bottom quantile exploits the top quantile
  double resample_probability = 0.25;  // pbt explore: resample instead of perturbing
};

struct SweepSpec {
  std::string source;  // file path, or a label for text parsed from memory
  std::string text;    // the YAML as given, kept for reproduction
  std::string name;
  DatasetRef dataset;
  std::string metric = "val_acc";
  std::string mode = "max";  // "max" | "min"
  std::string algorithm = "random";
  std::uint64_t seed = 0;
  int trials = 1;                // budget in trials (grid: at most the grid's size)
  std::int64_t budget_epochs = 0;  // budget in epochs summed over trials (0: unlimited)
  // Trial k's parameters depend on the results of trials numbered below k - lag, whatever
  // finished first (coordinator/search/observation_feed.h). Set it to at least the number
  // of groups minus one, or groups wait for results.
  static constexpr int kDefaultLag = 4;
  int lag = kDefaultLag;
  std::vector<SearchParam> space;
  ParamMap fixed;  // hyperparameters set in `train:`
  int ranks_per_trial = 1;
  int max_concurrent_trials = 0;  // 0: as many as there are groups
  SchedulerSpec scheduler;
  // The final models of this many best completed trials are kept beside the store
  // (coordinator/model_shelf.h); 0: none.
  static constexpr int kDefaultKeepModels = 5;
  int keep_models = kDefaultKeepModels;

  // 16 hex digits identifying the spec text (FNV-1a 64), for provenance and resume checks.
  std::string hash() const;
};

// The metric names workers report; a sweep optimises one of them.
const std::vector<std::string>& known_metrics();
// Those a dataset of `task` ("classification" or "regression") reports: accuracy for
// classification; rmse, mae and r2 (in the target's units) for regression; losses for both. A
// spec whose metric is not among its task's is refused.
const std::vector<std::string>& task_metrics(const std::string& task);
// The metric of a spec that names none: val_acc for classification, val_rmse for regression.
std::string default_metric(const std::string& task);

// The values of search.algorithm: "random", "grid", "sobol", "tpe". The coordinator has a
// searcher for each (coordinator/search/searcher.h) and takes its names from here.
const std::vector<std::string>& search_algorithms();

// An experiment's name becomes a directory (checkpoints go to DIR/NAME/trial-N.ckpt), so it
// is 1 to kMaxExperimentName characters of [A-Za-z0-9._-], starting with a letter or digit and
// without "..": no '/', no leading dot, nothing a path could climb out of. Returns what is
// wrong with `name`, or "" when it is safe.
constexpr std::size_t kMaxExperimentName = 128;
std::string experiment_name_problem(const std::string& name);

// Where the dataset's files are checked: here (the directory and its files must exist), or
// only by the workers (`trellis submit` on a login node that does not mount the compute
// nodes' scratch; each trial then fails with the missing file named).
enum class DatasetCheck { kHere, kOnTheWorkers };

[[nodiscard]] Status load_sweep_spec(const std::string& path, SweepSpec* out,
                                     DatasetCheck dataset = DatasetCheck::kHere);
[[nodiscard]] Status parse_sweep_spec(const std::string& text, const std::string& source,
                                      SweepSpec* out, DatasetCheck dataset = DatasetCheck::kHere);

}  // namespace trellis
