#pragma once
// SobolSearcher: trial n is point n of a Sobol sequence, one dimension per parameter, mapped
// onto each domain by domain_value(); a parameter whose conditions do not hold is dropped.
//
// Direction numbers are Joe & Kuo's (new-joe-kuo-6.21201). Scrambled by default as SciPy's
// `Sobol(scramble=True)`: a random lower-triangular binary matrix times each dimension's
// direction numbers (linear matrix scramble), then a random digital shift, both drawn from the
// sweep seed. The scramble keeps the net property (the first 2^k points of one dimension fall
// one in each interval [j/2^k, (j+1)/2^k)) while removing the unscrambled sequence's bias
// towards 0 and its alignment across dimensions.

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/param_value.h"
#include "common/search_space.h"
#include "coordinator/search/searcher.h"

namespace trellis::coordinator {

class SobolSearcher : public Searcher {
 public:
  static constexpr std::size_t kMaxDimensions = 40;  // rows of the embedded Joe & Kuo table
  static constexpr int kBits = 32;                   // 2^32 points, 32-bit coordinates

  // Requires check_space(space) to pass and at most kMaxDimensions parameters. `scramble`
  // false gives the plain sequence, whose first point is all zeros.
  SobolSearcher(std::vector<SearchParam> space, std::uint64_t seed, bool scramble = true);

  [[nodiscard]] std::optional<ParamMap> propose(std::int32_t number) override;

 private:
  std::vector<SearchParam> space_;  // parents before the parameters they condition
  // Per dimension: direction numbers v_1..v_32, the most significant bit first in the binary
  // fraction, and the digital shift XORed into every point.
  std::vector<std::array<std::uint32_t, kBits>> directions_;
  std::vector<std::uint32_t> shifts_;
};

}  // namespace trellis::coordinator
