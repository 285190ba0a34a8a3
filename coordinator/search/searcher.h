#pragma once
// Searcher: proposes the hyperparameters of trial n from the search space, the sweep seed and
// the results observed so far.
//
// Determinism: a proposal depends only on the seed, n and the set of observations (kept
// sorted by trial number, so the order results arrived in does not matter). The coordinator
// makes that set a function of n too (observation_feed.h), so trial n's parameters depend on
// the spec and the seed alone, through restarts and with any number of groups.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/param_value.h"
#include "common/search_space.h"
#include "common/status.h"

namespace trellis::coordinator {

class Searcher {
 public:
  virtual ~Searcher() = default;

  // The searched parameters of trial `number` (fixed hyperparameters are not included; a
  // conditional parameter whose condition does not hold is absent), or nullopt when the
  // searcher has nothing left to propose (a fully enumerated grid).
  [[nodiscard]] virtual std::optional<ParamMap> propose(std::int32_t number) = 0;

  // Trial `number` reached `loss` (smaller is better: the coordinator negates metrics it
  // maximises). A later call for the same trial replaces the earlier value.
  virtual void observe(std::int32_t number, const ParamMap& params, double loss) {
    (void)number, (void)params, (void)loss;
  }

  // Whether proposal `number` depends on what was observed; one that does not never waits
  // for results.
  virtual bool uses_observations(std::int32_t number) const {
    (void)number;
    return false;
  }

  // How many distinct proposals there are, when finite (grid).
  virtual std::optional<std::int64_t> size() const { return std::nullopt; }
};

// "random", "grid", "sobol", "tpe".
const std::vector<std::string>& searcher_names();

// Checks the space (check_space) and builds the searcher; errors name the parameter.
[[nodiscard]] Status make_searcher(const std::string& algorithm,
                                   const std::vector<SearchParam>& space, std::uint64_t seed,
                                   std::unique_ptr<Searcher>* out);

}  // namespace trellis::coordinator
