#pragma once
// AshaScheduler: asynchronous successive halving (Li et al., MLSys 2020, Algorithm 2).
//
// Rungs sit at r, r*eta, r*eta^2, ... epochs below R, and R itself. A free group gets, first,
// a promotion: scanning rungs from the top down, a paused trial that is among the best
// floor(n/eta) of the n trials that reached its rung so far, and was not promoted from it yet,
// continues from its checkpoint to the next rung. Failing that, a new trial starts at rung 0.
// No group ever waits for a rung to fill: a decision only uses the results already in, which
// is what makes ASHA scale to many workers (a trial can be promoted that a later result would
// have kept back; the paper shows this costs little).

#include <cstdint>
#include <map>
#include <unordered_map>
#include <vector>

#include "coordinator/schedulers/scheduler.h"

namespace trellis::coordinator {

// r*eta^k below `max_epochs`, then max_epochs.
std::vector<std::int32_t> asha_rungs(int min_epochs, int reduction_factor, int max_epochs);

class AshaScheduler : public Scheduler {
 public:
  explicit AshaScheduler(SchedulerOptions options);
  Job next(bool may_start_new) const override;
  void on_assigned(std::int64_t trial, const Job& job, const ParamMap& params) override;
  std::string on_report(std::int64_t trial, std::int32_t epoch, double loss) override;
  void on_paused(std::int64_t trial, std::int32_t epoch) override;
  void on_ended(std::int64_t trial) override;
  std::string paused_reason(std::int64_t trial) const override;

  const std::vector<std::int32_t>& rungs() const { return rungs_; }

 private:
  struct Trial {
    std::int32_t target = 0;
    bool active = false;
    bool paused = false;
  };
  // The best floor(n/eta) of rung k's results, best first.
  std::vector<std::pair<double, std::int64_t>> top_of(std::size_t k) const;

  SchedulerOptions options_;
  std::vector<std::int32_t> rungs_;
  std::vector<std::map<std::int64_t, double>> results_;  // per rung below the last: trial -> loss
  std::unordered_map<std::int64_t, Trial> trials_;
  int active_ = 0;
};

}  // namespace trellis::coordinator
