#pragma once
// RandomSearcher: independent uniform draws from each domain.
//
// Trial n's parameters depend only on the sweep seed and n, never on results or the order they
// came back in, so a restarted sweep proposes the same trial n again. Every parameter gets its
// draw, active or not, so a conditional parameter does not shift the draws of the others.

#include <cstdint>
#include <optional>
#include <vector>

#include "common/param_value.h"
#include "common/search_space.h"
#include "coordinator/search/searcher.h"

namespace trellis::coordinator {

class RandomSearcher : public Searcher {
 public:
  // Requires check_space(space) to pass.
  RandomSearcher(std::vector<SearchParam> space, std::uint64_t seed);

  [[nodiscard]] std::optional<ParamMap> propose(std::int32_t number) override;

 private:
  std::vector<SearchParam> space_;  // parents before the parameters they condition
  std::uint64_t seed_;
};

}  // namespace trellis::coordinator
