#include "coordinator/search/random_searcher.h"

#include <random>

#include "common/seed.h"

namespace trellis::coordinator {

RandomSearcher::RandomSearcher(std::vector<SearchParam> space, std::uint64_t seed)
    : space_(order_by_conditions(std::move(space))), seed_(seed) {}

std::optional<ParamMap> RandomSearcher::propose(std::int32_t number) {
  ParamMap params;
  std::mt19937_64 rng(derive_seed(seed_, {0x7273u /* "rs" */, static_cast<std::uint64_t>(number)}));
  for (const auto& p : space_) {
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    if (is_active(p, params)) params[p.name] = domain_value(p.domain, u);
  }
  return params;
}

}  // namespace trellis::coordinator
