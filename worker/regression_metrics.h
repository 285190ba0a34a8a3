#pragma once
// What a regression trial reports about a split, from the sums the ranks reduce: the model
// trains on the standardised target (worker/data/dataset.h), and every number here is in the
// target's own units, so a researcher reads them as they read the data.

#include <cstdint>
#include <string>

#include "common/param_value.h"

namespace trellis::worker {

// Over a split's rows, in standardised units (target and prediction both divided by the
// training split's target std).
struct RegressionSums {
  std::int64_t rows = 0;
  double squared_error = 0;  // sum of (prediction - target)^2
  double abs_error = 0;      // sum of |prediction - target|
  double target_sum = 0;
  double target_sq_sum = 0;
};

// Adds PREFIX_loss (mean squared error), PREFIX_rmse, PREFIX_mae and PREFIX_r2 to `out`, the
// first three multiplied back by `target_std` (squared for the loss). r2 is 1 - SSE/SST, which
// a rescaling of the target leaves alone; on rows whose targets are all equal it is 1 for an
// exact prediction and 0 otherwise (scikit-learn's convention).
void regression_metrics(const RegressionSums& sums, double target_std, const std::string& prefix,
                        MetricMap* out);

}  // namespace trellis::worker
