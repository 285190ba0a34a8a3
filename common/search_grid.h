#pragma once
// SearchGrid: every distinct point of a grid over a search space, in one fixed order.
//
// A categorical contributes its values, an int every integer in [low, high], a float or a
// log_float `grid_points` evenly spaced values from low to high, both included (evenly in log
// space for log_float). A conditional parameter varies only where its conditions hold, so no
// two points differ in inactive parameters alone: `momentum` multiplies the grid under
// `optimizer: sgd` and is absent from the other points. The spec parser sizes a grid sweep with
// it, and the grid searcher walks it.

#include <cstdint>
#include <vector>

#include "common/param_value.h"
#include "common/search_space.h"
#include "common/status.h"

namespace trellis {

// A domain's grid values; empty for a float or log_float without grid_points.
std::vector<ParamValue> grid_values(const Domain& domain);

class SearchGrid {
 public:
  // More points than a sweep of trained models could run: refused instead of enumerated.
  static constexpr std::int64_t kMaxPoints = 1'000'000;

  // Refuses, naming the parameter, what check_space refuses and a float or log_float without
  // grid points; refuses a grid of more than kMaxPoints points.
  [[nodiscard]] static Status Build(const std::vector<SearchParam>& space, SearchGrid* out);

  // An empty space has one point, the empty one.
  std::int64_t size() const { return rows_; }

  // Point n, 0 <= n < size(); inactive parameters are absent.
  ParamMap point(std::int64_t n) const;

 private:
  std::vector<SearchParam> space_;               // parents before the parameters they condition
  std::vector<std::vector<ParamValue>> values_;  // grid_values() of each parameter
  std::int64_t rows_ = 0;
  std::vector<std::int32_t> cells_;  // rows_ x space_.size() value indices, -1 where inactive
};

}  // namespace trellis
