#include "worker/regression_metrics.h"

#include <cmath>

namespace trellis::worker {
namespace {

// A total sum of squares this small next to the sum of squares is the rounding of equal targets.
constexpr double kNoVariance = 1e-12;

}  // namespace

void regression_metrics(const RegressionSums& sums, double target_std, const std::string& prefix,
                        MetricMap* out) {
  const double n = static_cast<double>(sums.rows);
  const double mse = sums.squared_error / n;
  const double sst = sums.target_sq_sum - sums.target_sum * sums.target_sum / n;
  (*out)[prefix + "_loss"] = mse * target_std * target_std;
  (*out)[prefix + "_rmse"] = std::sqrt(mse) * target_std;
  (*out)[prefix + "_mae"] = sums.abs_error / n * target_std;
  const bool varies = sst > kNoVariance * sums.target_sq_sum;
  (*out)[prefix + "_r2"] = varies ? 1.0 - sums.squared_error / sst : (sums.squared_error == 0 ? 1.0 : 0.0);
}

}  // namespace trellis::worker
