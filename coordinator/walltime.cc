#include "coordinator/walltime.h"

#include <algorithm>
#include <cmath>

namespace trellis::coordinator {

void EpochClock::epoch_took(std::int64_t trial, double seconds) {
  if (!std::isfinite(seconds) || seconds <= 0) return;
  Mean& m = live_[trial];
  m.sum += seconds;
  ++m.count;
}

void EpochClock::attempt_ended(std::int64_t trial) {
  const auto it = live_.find(trial);
  if (it == live_.end()) return;
  slowest_ended_ = std::max(slowest_ended_, it->second.value());
  live_.erase(it);
}

double EpochClock::epoch_seconds() const {
  double slowest = slowest_ended_;
  for (const auto& [trial, mean] : live_) slowest = std::max(slowest, mean.value());
  return slowest;
}

void EpochClock::first_report_after(double seconds) {
  if (std::isfinite(seconds)) startup_ = std::max(startup_, seconds);
}

int EpochClock::epochs_fitting(double seconds, double margin) const {
  const double epoch = epoch_seconds();
  if (epoch <= 0) return 0;
  const double usable = seconds - margin - startup_;
  if (usable <= 0) return 0;
  return static_cast<int>(std::floor(usable / (kSafety * epoch)));
}

}  // namespace trellis::coordinator
