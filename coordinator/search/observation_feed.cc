#include "coordinator/search/observation_feed.h"

#include <algorithm>

namespace trellis::coordinator {

void ObservationFeed::stopped(std::int32_t number, const ParamMap& params,
                              std::optional<double> loss) {
  if (number < stopped_below_ || !stopped_above_.insert(number).second) return;
  while (!stopped_above_.empty() && *stopped_above_.begin() == stopped_below_) {
    stopped_above_.erase(stopped_above_.begin());
    ++stopped_below_;
  }
  if (number >= released_below_) unreleased_.emplace(number, Result{params, loss});
}

std::int32_t ObservationFeed::visible_below(std::int32_t number) const {
  return std::max(0, number - lag_);
}

bool ObservationFeed::ready(std::int32_t number, const Searcher& searcher) const {
  return !searcher.uses_observations(number) || stopped_below_ >= visible_below(number);
}

void ObservationFeed::release(std::int32_t number, Searcher* searcher) {
  // A proposal that waited for nothing (a startup draw) may come before a trial below it
  // stopped: that trial's result, when it comes, is kept for the proposals that use it.
  const std::int32_t below = std::min(visible_below(number), stopped_below_);
  while (!unreleased_.empty() && unreleased_.begin()->first < below) {
    const auto& [n, result] = *unreleased_.begin();
    if (result.loss) searcher->observe(n, result.params, *result.loss);
    unreleased_.erase(unreleased_.begin());
  }
  released_below_ = std::max(released_below_, below);
}

}  // namespace trellis::coordinator
