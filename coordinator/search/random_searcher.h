#pragma once
// RandomSearcher: independent uniform draws from each domain.
//
// Trial n's parameters depend only on the sweep seed and n, never on the order results came
// back in, so a restarted sweep proposes the same trial n again.

#include <cstdint>
#include <vector>

#include "coordinator/search/searcher.h"

namespace trellis::coordinator {

class RandomSearcher : public Searcher {
 public:
  RandomSearcher(std::vector<SearchParam> space, std::uint64_t seed);
  std::optional<ParamMap> propose(std::int32_t trial_number) override;

 private:
  std::vector<SearchParam> space_;
  std::uint64_t seed_;
};

}  // namespace trellis::coordinator
