#include "coordinator/walltime.h"

#include <algorithm>
#include <cmath>

namespace trellis::coordinator {

void EpochClock::epoch_took(std::int64_t trial, double seconds) {
  if (!std::isfinite(seconds) || seconds <= 0) return;
  Mean& m = trials_[trial];
  m.sum += seconds;
  ++m.count;
  epoch_ = std::max(epoch_, m.sum / static_cast<double>(m.count));
}

void EpochClock::first_report_after(double seconds) {
  if (std::isfinite(seconds)) startup_ = std::max(startup_, seconds);
}

int EpochClock::epochs_fitting(double seconds, double margin) const {
  if (!known()) return 0;
  const double usable = seconds - margin - startup_;
  if (usable <= 0) return 0;
  return static_cast<int>(std::floor(usable / (kSafety * epoch_)));
}

}  // namespace trellis::coordinator
