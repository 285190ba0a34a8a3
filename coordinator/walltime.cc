#include "coordinator/walltime.h"

#include <algorithm>
#include <cmath>

namespace trellis::coordinator {

void EpochClock::epoch_took(double seconds) {
  if (std::isfinite(seconds) && seconds > 0) epoch_ = std::max(epoch_, seconds);
}

void EpochClock::first_report_after(double seconds, double epoch_seconds) {
  if (!std::isfinite(seconds) || !std::isfinite(epoch_seconds)) return;
  startup_ = std::max(startup_, seconds - epoch_seconds);
}

int EpochClock::epochs_fitting(double seconds, double margin) const {
  if (!known()) return 0;
  const double usable = seconds - margin - startup_;
  if (usable <= 0) return 0;
  return static_cast<int>(std::floor(usable / (kSafety * epoch_)));
}

}  // namespace trellis::coordinator
