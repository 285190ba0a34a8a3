#include "coordinator/search/searcher.h"

#include "common/search_grid.h"
#include "common/sweep_spec.h"
#include "coordinator/search/grid_searcher.h"
#include "coordinator/search/random_searcher.h"
#include "coordinator/search/sobol_searcher.h"
#include "coordinator/search/tpe_searcher.h"

namespace trellis::coordinator {

const std::vector<std::string>& searcher_names() { return search_algorithms(); }

Status make_searcher(const std::string& algorithm, const std::vector<SearchParam>& space,
                     std::uint64_t seed, std::unique_ptr<Searcher>* out) {
  if (Status s = check_space(space); !s.ok()) return s;
  if (algorithm == "random") {
    *out = std::make_unique<RandomSearcher>(space, seed);
  } else if (algorithm == "grid") {
    SearchGrid grid;
    if (Status s = SearchGrid::Build(space, &grid); !s.ok()) return s;
    *out = std::make_unique<GridSearcher>(std::move(grid));
  } else if (algorithm == "sobol") {
    if (space.size() > SobolSearcher::kMaxDimensions)
      return Status::Error("parameter '" + space[SobolSearcher::kMaxDimensions].name +
                           "': sobol search draws at most " +
                           std::to_string(SobolSearcher::kMaxDimensions) + " parameters");
    *out = std::make_unique<SobolSearcher>(space, seed);
  } else if (algorithm == "tpe") {
    *out = std::make_unique<TpeSearcher>(space, seed);
  } else {
    return Status::Error("unknown search algorithm '" + algorithm + "'");
  }
  return Status::Ok();
}

}  // namespace trellis::coordinator
