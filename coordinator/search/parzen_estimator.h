#pragma once
// ParzenEstimator: the density TPE fits to a set of observations (Bergstra et al. 2011, built
// as Optuna builds it): a mixture of one kernel per observation plus a prior kernel over the
// whole domain. Multivariate (Falkner et al. 2018): a component is a product of per-dimension
// kernels around one observation, so sampling picks a component and draws every dimension from
// it, and correlations between parameters survive.
//
// A numeric dimension is a Gaussian truncated to [low, high] (a log_float comes in log space);
// an integer one is that Gaussian integrated over [x - 0.5, x + 0.5], its bounds widened by half
// a step so the end values get a full step of mass. A kernel is as wide as the larger gap to its
// neighbours (Optuna's univariate rule, consider_endpoints off), per dimension, clipped below by
// Optuna's "magic clip", range / min(100, n + 2) for n observations, and above by the range;
// the prior kernel sits mid-range, range wide. A
// categorical dimension puts, for each observation, weight 1 on the observed choice plus
// prior_weight / (n + 1) on every choice; the prior is uniform.

#include <cstdint>
#include <random>
#include <vector>

namespace trellis::coordinator {

// Uniform in [0, 1) from 53 bits, the same on every platform (std's distributions are not).
double uniform01(std::mt19937_64& rng);

struct ParzenDim {
  enum class Kind { kContinuous, kInteger, kCategorical };
  Kind kind = Kind::kContinuous;
  double low = 0, high = 1;  // numeric: the kernels' support
  int choices = 0;           // categorical
};

struct ParzenOptions {
  double prior_weight = 1.0;  // the prior component's weight; each observation weighs ~1
};

class ParzenEstimator {
 public:
  // `points[i][d]`: observation i in dimension d (a categorical as its choice's index), oldest
  // first: past 25 observations the older ones weigh less (Optuna's default_weights).
  ParzenEstimator(std::vector<ParzenDim> dims, const std::vector<std::vector<double>>& points,
                  const ParzenOptions& options);

  std::vector<double> sample(std::mt19937_64& rng) const;
  double log_pdf(const std::vector<double>& x) const;

 private:
  std::vector<ParzenDim> dims_;
  std::vector<double> weights_;  // per component, the prior last; sums to 1
  std::vector<double> log_weights_;
  // Per dimension and component: numeric kernels' centre, width and log of the mass inside
  // [low, high]; categorical kernels' log probability of each choice.
  std::vector<std::vector<double>> mus_, sigmas_, log_mass_;
  std::vector<std::vector<std::vector<double>>> log_probs_;
};

}  // namespace trellis::coordinator
