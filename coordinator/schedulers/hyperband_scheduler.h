#pragma once
// HyperbandScheduler: Hyperband (Li et al., JMLR 2018) as brackets of successive halving.
//
// With R the most epochs a trial gets, r the fewest and eta the reduction factor, s_max =
// floor(log_eta(R/r)). Bracket s (s_max down to 0) starts n = ceil((s_max+1)/(s+1) * eta^s)
// trials at R*eta^-s epochs; rung i of it keeps floor(n*eta^-i) trials at R*eta^(i-s) epochs.
// For R=81, r=1, eta=3 that is the paper's table: (81,1)(27,3)(9,9)(3,27)(1,81),
// (34,3)(11,9)(3,27)(1,81), (15,9)(5,27)(1,81), (8,27)(2,81), (5,81).
//
// Each bracket halves synchronously: rung i+1 is chosen once every trial of rung i has
// reported (or ended). Brackets overlap, though: a free group takes a promotion from any
// bracket, else a new trial for the first bracket not yet full, so groups wait only when every
// started bracket waits on running trials. When a sweep's trial budget outlasts one round of
// brackets, the brackets repeat.

#include <cstdint>
#include <map>
#include <unordered_map>
#include <vector>

#include "coordinator/schedulers/scheduler.h"

namespace trellis::coordinator {

struct HyperbandRung {
  std::int32_t trials = 0;
  std::int32_t epochs = 0;
};

struct HyperbandBracket {
  int s = 0;
  std::vector<HyperbandRung> rungs;  // rungs[0] holds every trial of the bracket
};

std::vector<HyperbandBracket> hyperband_brackets(int max_epochs, int min_epochs,
                                                 int reduction_factor);

class HyperbandScheduler : public Scheduler {
 public:
  explicit HyperbandScheduler(SchedulerOptions options);
  Job next(bool may_start_new) const override;
  void on_assigned(std::int64_t trial, const Job& job, const ParamMap& params) override;
  std::string on_report(std::int64_t trial, std::int32_t epoch, double loss) override;
  void on_paused(std::int64_t trial, std::int32_t epoch) override;
  void on_ended(std::int64_t trial) override;
  std::string paused_reason(std::int64_t trial) const override;

 private:
  struct Trial {
    std::size_t bracket = 0;  // index into brackets_ of the round it joined
    std::int32_t target = 0;
    bool active = false;
    bool paused = false;
    bool ended = false;
    std::map<std::int32_t, double> loss;  // epoch -> objective
  };
  struct Running {  // one bracket of one round
    std::vector<std::int64_t> members;
  };
  const HyperbandBracket& shape(std::size_t bracket) const;
  // The trial to promote from `bracket`'s rung `i`, or -1; needs the rung complete.
  std::int64_t promotion(std::size_t bracket, std::size_t i, bool closed, double* loss,
                         std::size_t* rank) const;
  // The first bracket whose rung 0 is not full.
  std::size_t open_bracket() const;

  SchedulerOptions options_;
  std::vector<HyperbandBracket> shapes_;
  std::vector<Running> brackets_;
  std::unordered_map<std::int64_t, Trial> trials_;
  int active_ = 0;
};

}  // namespace trellis::coordinator
