#pragma once
// GridSearcher: trial n is point n of the grid (common/search_grid.h); nothing after the last.
// Results do not steer it, and a restarted sweep walks the same grid in the same order.

#include <cstdint>
#include <optional>

#include "common/param_value.h"
#include "common/search_grid.h"
#include "coordinator/search/searcher.h"

namespace trellis::coordinator {

class GridSearcher : public Searcher {
 public:
  explicit GridSearcher(SearchGrid grid) : grid_(std::move(grid)) {}

  [[nodiscard]] std::optional<ParamMap> propose(std::int32_t number) override;
  std::optional<std::int64_t> size() const override { return grid_.size(); }

 private:
  SearchGrid grid_;
};

}  // namespace trellis::coordinator
