// The Parzen estimator's kernel widths: Optuna's magic clip as documented, range / min(100, n+2)
// for n observations, no scale of its own, checked against the mixture density written out.

#include "coordinator/search/parzen_estimator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace trellis::coordinator {
namespace {

// A Gaussian with centre mu and width sigma truncated to [0, 1], at x.
double truncated_normal(double x, double mu, double sigma) {
  const auto cdf = [](double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); };
  const double z = (x - mu) / sigma;
  const double pdf = std::exp(-0.5 * z * z) / (sigma * std::sqrt(2 * M_PI));
  return pdf / (cdf((1 - mu) / sigma) - cdf((0 - mu) / sigma));
}

// n observations all at the prior's centre: every gap to a neighbour is 0, so each
// observation's kernel is exactly as wide as the clip's floor, and the prior is range wide.
double expected_density(int n, double x) {
  const double floor = 1.0 / (n + 2);
  return (n * truncated_normal(x, 0.5, floor) + truncated_normal(x, 0.5, 1.0)) / (n + 1);
}

TEST(ParzenEstimator, KernelsAreClippedToOptunasMagicClipRangeOverNPlusTwo) {
  const std::vector<ParzenDim> dims = {{ParzenDim::Kind::kContinuous, 0, 1}};
  for (const int n : {1, 4, 10}) {
    const std::vector<std::vector<double>> points(static_cast<std::size_t>(n), {0.5});
    const ParzenEstimator estimator(dims, points, ParzenOptions{});
    for (const double x : {0.5, 0.6, 0.9, 0.02}) {
      EXPECT_NEAR(estimator.log_pdf({x}), std::log(expected_density(n, x)), 1e-9)
          << n << " observations, at x = " << x;
    }
  }
}

}  // namespace
}  // namespace trellis::coordinator
