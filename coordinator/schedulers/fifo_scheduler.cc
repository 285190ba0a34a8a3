#include "coordinator/schedulers/fifo_scheduler.h"

#include <algorithm>

namespace trellis::coordinator {

Job FifoScheduler::next(bool may_start_new) const {
  Job job;
  if (may_start_new) {
    job.kind = Job::Kind::kNew;
    job.until_epoch = options_.max_epochs;
    return job;
  }
  job.kind = active_.empty() ? Job::Kind::kNone : Job::Kind::kWait;
  return job;
}

void FifoScheduler::on_assigned(std::int64_t trial, const Job&, const ParamMap&) {
  active_.insert(trial);
}

std::string FifoScheduler::on_report(std::int64_t, std::int32_t, double) { return {}; }

void FifoScheduler::on_paused(std::int64_t trial, std::int32_t) { active_.erase(trial); }

void FifoScheduler::on_ended(std::int64_t trial) { active_.erase(trial); }

// FIFO jobs run to the last epoch, so a trial pauses only when it was replayed from a store
// another scheduler wrote.
std::string FifoScheduler::paused_reason(std::int64_t) const {
  return "stopped before its last epoch and never continued";
}

std::string MedianStoppingScheduler::on_report(std::int64_t trial, std::int32_t epoch,
                                               double loss) {
  auto& mine = reported_[trial];
  mine[epoch] = loss;
  // Best over this run's epochs up to `epoch` (a resumed trial may report an epoch again).
  double best = loss;
  for (const auto& [e, l] : mine)
    if (e <= epoch) best = std::min(best, l);
  auto& at = best_at_[epoch];
  at[trial] = best;
  if (epoch < options_.spec.min_epochs) return {};
  std::vector<double> others;
  for (const auto& [t, b] : at)
    if (t != trial) others.push_back(b);
  if (static_cast<int>(others.size()) < options_.spec.min_trials) return {};
  const std::size_t mid = others.size() / 2;
  std::nth_element(others.begin(), others.begin() + static_cast<long>(mid), others.end());
  double median = others[mid];
  if (others.size() % 2 == 0) {
    const double below = *std::max_element(others.begin(), others.begin() + static_cast<long>(mid));
    median = (median + below) / 2;
  }
  if (best <= median) return {};
  return "median stopping rule at epoch " + std::to_string(epoch) + ": best " +
         describe_objective(options_, best) + " is worse than the median " +
         describe_objective(options_, median) + " of " + std::to_string(others.size()) +
         " other trials";
}

}  // namespace trellis::coordinator
