#include "common/search_grid.h"

#include <cmath>
#include <string>

namespace trellis {

std::vector<ParamValue> grid_values(const Domain& d) {
  std::vector<ParamValue> values;
  switch (d.kind) {
    case Domain::Kind::kCategorical: return d.choices;
    case Domain::Kind::kInt:
      for (auto i = static_cast<std::int64_t>(d.low); i <= static_cast<std::int64_t>(d.high); ++i)
        values.emplace_back(i);
      return values;
    case Domain::Kind::kFloat:
    case Domain::Kind::kLogFloat: {
      const bool log = d.kind == Domain::Kind::kLogFloat;
      const double lo = log ? std::log(d.low) : d.low, hi = log ? std::log(d.high) : d.high;
      for (int i = 0; i < d.grid_points; ++i) {
        // The ends are set exactly: exp(log(x)) and the interpolation may round past them.
        if (i == 0) values.emplace_back(d.low);
        else if (i == d.grid_points - 1) values.emplace_back(d.high);
        else {
          const double x = lo + (hi - lo) * i / (d.grid_points - 1);
          values.emplace_back(log ? std::exp(x) : x);
        }
      }
      return values;
    }
  }
  return values;
}

Status SearchGrid::Build(const std::vector<SearchParam>& space, SearchGrid* out) {
  if (Status s = check_space(space); !s.ok()) return s;
  SearchGrid grid;
  grid.space_ = order_by_conditions(space);
  for (const SearchParam& p : grid.space_) {
    const Domain& d = p.domain;
    const std::string name = "parameter '" + p.name + "': ";
    double count = d.grid_points;
    if (d.kind == Domain::Kind::kInt) count = d.high - d.low + 1;
    if (d.kind == Domain::Kind::kCategorical) count = static_cast<double>(d.choices.size());
    if (count > kMaxPoints)
      return Status::Error(name + "more than " + std::to_string(kMaxPoints) + " grid values");
    grid.values_.push_back(grid_values(d));
    if (grid.values_.back().empty())
      return Status::Error(name + "grid search needs 'points' for a " + to_string(d.kind));
  }
  // Depth first over the parameters in condition order: an inactive parameter is skipped, not
  // branched on, so each distinct point comes out once.
  const std::size_t width = grid.space_.size();
  std::vector<std::int32_t> row(width);
  ParamMap chosen;
  const auto walk = [&](const auto& self, std::size_t depth) -> bool {
    if (depth == width) {
      if (grid.rows_ == kMaxPoints) return false;
      ++grid.rows_;
      grid.cells_.insert(grid.cells_.end(), row.begin(), row.end());
      return true;
    }
    const SearchParam& p = grid.space_[depth];
    if (!is_active(p, chosen)) {
      row[depth] = -1;
      return self(self, depth + 1);
    }
    for (std::size_t i = 0; i < grid.values_[depth].size(); ++i) {
      chosen[p.name] = grid.values_[depth][i];
      row[depth] = static_cast<std::int32_t>(i);
      if (!self(self, depth + 1)) return false;
    }
    chosen.erase(p.name);
    return true;
  };
  if (!walk(walk, 0))
    return Status::Error("the grid has more than " + std::to_string(kMaxPoints) + " points");
  *out = std::move(grid);
  return Status::Ok();
}

ParamMap SearchGrid::point(std::int64_t n) const {
  ParamMap params;
  const std::size_t width = space_.size();
  for (std::size_t j = 0; j < width; ++j) {
    const std::int32_t cell = cells_[static_cast<std::size_t>(n) * width + j];
    if (cell >= 0) params[space_[j].name] = values_[j][static_cast<std::size_t>(cell)];
  }
  return params;
}

}  // namespace trellis
