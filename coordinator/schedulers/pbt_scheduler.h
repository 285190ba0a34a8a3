#pragma once
// PbtScheduler: population based training (Jaderberg et al. 2017), asynchronous.
//
// The population is the sweep's trials. Each trains `interval` epochs at a time and pauses.
// A free group first starts the population's missing members, then continues the paused trial
// that is furthest behind (so the population stays roughly in step). On continuing a trial
// paused after epoch B, PBT ranks every trial that reported epoch B: one in the bottom
// `quantile` exploits, taking the weights and optimizer state of a trial drawn from the top
// `quantile` (its checkpoint after B) and that trial's hyperparameters, then explores: each
// searched hyperparameter is resampled with `resample_probability`, else perturbed (x0.8 or
// x1.2 within its bounds; a neighbouring value of a categorical). Those that define the
// weights (model, layer sizes, activation, optimizer) stay the donor's: the weights fit them. The coordinator records
// each exploit in the store's lineage. Draws derive from (seed, trial, B): a replay decides
// the same.

#include <cstdint>
#include <map>
#include <unordered_map>

#include "coordinator/schedulers/scheduler.h"

namespace trellis::coordinator {

class PbtScheduler : public Scheduler {
 public:
  explicit PbtScheduler(SchedulerOptions options);
  Job next(bool may_start_new) const override;
  void on_assigned(std::int64_t trial, const Job& job, const ParamMap& params) override;
  std::string on_report(std::int64_t trial, std::int32_t epoch, double loss) override;
  void on_paused(std::int64_t trial, std::int32_t epoch) override;
  void on_ended(std::int64_t trial) override;
  std::string paused_reason(std::int64_t trial) const override;

  // Explore step alone, for tests: the donor's parameters resampled or perturbed.
  ParamMap explore(const ParamMap& donor, std::uint64_t seed) const;

 private:
  struct Trial {
    std::int32_t target = 0;
    std::int32_t paused_at = 0;  // 0 unless paused
    bool active = false;
    ParamMap params;
    std::map<std::int32_t, double> loss;  // epoch -> objective
  };
  Job decide(std::int64_t trial, const Trial& t) const;

  SchedulerOptions options_;
  std::vector<SearchParam> ordered_space_;  // parents before the parameters they condition
  std::unordered_map<std::int64_t, Trial> trials_;
  int active_ = 0;
};

}  // namespace trellis::coordinator
