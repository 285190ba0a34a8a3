#include "coordinator/search/grid_searcher.h"

namespace trellis::coordinator {

std::optional<ParamMap> GridSearcher::propose(std::int32_t number) {
  if (number < 0 || number >= grid_.size()) return std::nullopt;
  return grid_.point(number);
}

}  // namespace trellis::coordinator
