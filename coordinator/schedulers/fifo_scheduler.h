#pragma once
// FifoScheduler: every trial runs to its last epoch, in the order the searcher proposes them.
// MedianStoppingScheduler adds the median stopping rule (Golovin et al., Vizier 2017): after
// the grace epochs, a trial whose best objective so far is worse than the median of the other
// trials' best objectives up to the same epoch is stopped, once at least `min_trials` others
// reached that epoch.

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "coordinator/schedulers/scheduler.h"

namespace trellis::coordinator {

class FifoScheduler : public Scheduler {
 public:
  explicit FifoScheduler(SchedulerOptions options) : options_(std::move(options)) {}
  Job next(bool may_start_new) const override;
  void on_assigned(std::int64_t trial, const Job& job, const ParamMap& params) override;
  std::string on_report(std::int64_t trial, std::int32_t epoch, double loss) override;
  void on_paused(std::int64_t trial, std::int32_t epoch) override;
  void on_ended(std::int64_t trial) override;
  std::string paused_reason(std::int64_t trial) const override;

 protected:
  SchedulerOptions options_;
  std::set<std::int64_t> active_;  // assigned, neither paused nor ended
};

class MedianStoppingScheduler : public FifoScheduler {
 public:
  using FifoScheduler::FifoScheduler;
  std::string on_report(std::int64_t trial, std::int32_t epoch, double loss) override;

 private:
  // Best objective so far of each trial after each epoch it reported: epoch -> trial -> best.
  std::map<std::int32_t, std::map<std::int64_t, double>> best_at_;
  std::map<std::int64_t, std::map<std::int32_t, double>> reported_;  // trial -> epoch -> loss
};

}  // namespace trellis::coordinator
