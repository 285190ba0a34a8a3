#include "coordinator/search/searcher.h"

#include "coordinator/search/random_searcher.h"

namespace trellis::coordinator {

// Placeholder until the search branch lands: random only.
const std::vector<std::string>& searcher_names() {
  static const std::vector<std::string> kNames = {"random"};
  return kNames;
}

Status make_searcher(const std::string& algorithm, const std::vector<SearchParam>& space,
                     std::uint64_t seed, std::unique_ptr<Searcher>* out) {
  if (algorithm != "random") return Status::Error("unknown search algorithm '" + algorithm + "'");
  *out = std::make_unique<RandomSearcher>(space, seed);
  return Status::Ok();
}

}  // namespace trellis::coordinator
