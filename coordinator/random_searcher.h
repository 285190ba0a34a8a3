#pragma once
// RandomSearcher: independent uniform draws from each domain.
//
// Trial n's parameters depend only on the sweep seed and n, never on the order results came
// back in, so a restarted sweep proposes the same trial n again.

#include <cstdint>
#include <vector>

#include "common/param_value.h"
#include "common/search_space.h"

namespace trellis::coordinator {

class RandomSearcher {
 public:
  // `fixed` hyperparameters are copied into every proposal.
  RandomSearcher(std::vector<SearchParam> space, ParamMap fixed, std::uint64_t seed);

  ParamMap propose(std::int32_t trial_number) const;

 private:
  std::vector<SearchParam> space_;
  ParamMap fixed_;
  std::uint64_t seed_;
};

}  // namespace trellis::coordinator
