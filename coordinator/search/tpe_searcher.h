#pragma once
// TpeSearcher: the Tree-structured Parzen Estimator (Bergstra et al. 2011), multivariate as
// Optuna's `multivariate=True` and BOHB (Falkner et al. 2018).
//
// The first `startup_trials` proposals are random search's draws for the same trial numbers.
// After that, the observations are split into the best gamma(n) = min(ceil(n / 10), 25) and the
// rest; a ParzenEstimator l(x) is fitted to the best and g(x) to the rest, `candidates` points
// are drawn jointly from l, and the one with the largest l(x) / g(x) is proposed.
//
// Conditional parameters: parameters with the same conditions form a group, modelled jointly
// from the observations where the group was active and proposed only where its conditions
// hold, parents first. A log_float is modelled in log space, an int on the integers.
//
// Determinism: observations are kept by trial number, ties in loss go to the older trial, and
// proposal n draws from a generator seeded by (seed, n), so the same seed and the same set of
// observations give the same proposal, whatever order the results arrived in.

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "common/param_value.h"
#include "common/search_space.h"
#include "coordinator/search/parzen_estimator.h"
#include "coordinator/search/random_searcher.h"
#include "coordinator/search/searcher.h"

namespace trellis::coordinator {

struct TpeOptions {
  int startup_trials = 10;
  // Draws from l(x) per proposal; more exploits harder. Optuna's 24 suits its univariate
  // sampler, which picks each parameter from its own 24; one joint draw needs more.
  int candidates = 64;
  ParzenOptions parzen;
};

class TpeSearcher : public Searcher {
 public:
  // Requires check_space(space) to pass.
  TpeSearcher(std::vector<SearchParam> space, std::uint64_t seed, TpeOptions options = {});

  [[nodiscard]] std::optional<ParamMap> propose(std::int32_t number) override;
  void observe(std::int32_t number, const ParamMap& params, double loss) override;
  bool uses_observations(std::int32_t number) const override {
    return number >= options_.startup_trials;
  }

 private:
  struct Group {
    std::vector<std::size_t> params;  // indices into space_
    std::vector<ParzenDim> dims;
  };
  struct Observation {
    std::vector<double> x;  // per parameter of space_, as the estimator sees it; NaN: absent
    double loss = 0;
  };

  // Proposes the values of one group's parameters into `params`.
  void propose_group(const Group& group, std::mt19937_64& rng, ParamMap* params) const;

  std::vector<SearchParam> space_;  // parents before the parameters they condition
  std::uint64_t seed_;
  TpeOptions options_;
  RandomSearcher startup_;
  std::vector<Group> groups_;  // in the order of their first parameter in space_
  std::map<std::int32_t, Observation> observations_;  // by trial number
};

}  // namespace trellis::coordinator
