#include "coordinator/schedulers/scheduler.h"

#include <cstdio>

#include "coordinator/schedulers/asha_scheduler.h"
#include "coordinator/schedulers/fifo_scheduler.h"
#include "coordinator/schedulers/hyperband_scheduler.h"
#include "coordinator/schedulers/pbt_scheduler.h"

namespace trellis::coordinator {

const std::vector<std::string>& scheduler_names() {
  static const std::vector<std::string> kNames = {"fifo", "median", "asha", "hyperband", "pbt"};
  return kNames;
}

Status make_scheduler(const SchedulerOptions& options, std::unique_ptr<Scheduler>* out) {
  const std::string& type = options.spec.type;
  if (options.max_epochs < 1) return Status::Error("scheduler " + type + ": max_epochs must be >= 1");
  if (type == "fifo") {
    *out = std::make_unique<FifoScheduler>(options);
  } else if (type == "median") {
    *out = std::make_unique<MedianStoppingScheduler>(options);
  } else if (type == "asha") {
    *out = std::make_unique<AshaScheduler>(options);
  } else if (type == "hyperband") {
    *out = std::make_unique<HyperbandScheduler>(options);
  } else if (type == "pbt") {
    *out = std::make_unique<PbtScheduler>(options);
  } else {
    return Status::Error("unknown scheduler '" + type + "'");
  }
  return Status::Ok();
}

std::string describe_objective(const SchedulerOptions& options, double loss) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g", options.maximize ? -loss : loss);
  return options.metric + " " + buf;
}

}  // namespace trellis::coordinator
