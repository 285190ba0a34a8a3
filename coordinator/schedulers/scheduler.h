#pragma once
// Scheduler: decides what a free worker group runs next, how far, and which trials stop early.
//
// The coordinator owns trials, groups and the store; a scheduler sees only trial ids, the
// epochs it gave them and the objective they reported (smaller is better: a maximised metric
// arrives negated). Each trial runs in jobs: a job trains it through `until_epoch` and then
// the trial pauses (its checkpoint kept) until the scheduler continues it, or it reaches the
// last epoch and completes.
//
// The coordinator calls, in order: next() when a group is free; on_assigned() once the job it
// chose is started; on_report() for each epoch; on_paused() when a job ended before the last
// epoch; on_ended() when the trial will never run again. After a restart it replays the store
// through the same calls (on_assigned with each trial's target epoch, its reports, its pause),
// so a scheduler keeps no state of its own on disk and next() must be a pure function of what
// it was told.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/param_value.h"
#include "common/search_space.h"
#include "common/status.h"
#include "common/sweep_spec.h"

namespace trellis::coordinator {

struct Job {
  enum class Kind {
    kNew,       // start a new trial from the searcher
    kContinue,  // continue the paused trial `trial` from its checkpoint
    kWait,      // nothing now; running trials may yield work
    kNone,      // nothing now and nothing running will change that
  };
  Kind kind = Kind::kNone;
  std::int64_t trial = -1;
  std::int32_t until_epoch = 0;  // train through this epoch
  // PBT exploit (kContinue): start from `donor`'s weights after `donor_epoch`, with `params`.
  std::int64_t donor = -1;
  std::int32_t donor_epoch = 0;
  ParamMap params;
  std::string reason;  // for the log and the lineage record
};

struct SchedulerOptions {
  SchedulerSpec spec;
  int max_epochs = 1;  // R: the epochs of a trial that runs to the end
  std::string metric = "val_acc";
  bool maximize = true;
  std::vector<SearchParam> space;  // PBT explores it
  std::uint64_t seed = 0;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // `may_start_new`: the budget and the searcher allow another trial.
  [[nodiscard]] virtual Job next(bool may_start_new) const = 0;
  // `job` was started; kNew jobs now have their trial id. `params` are the trial's.
  virtual void on_assigned(std::int64_t trial, const Job& job, const ParamMap& params) = 0;
  // The trial's objective after `epoch`. Returns why to stop it now (pruned), or "".
  virtual std::string on_report(std::int64_t trial, std::int32_t epoch, double loss) = 0;
  // The trial trained through its until_epoch (< max_epochs) and waits.
  virtual void on_paused(std::int64_t trial, std::int32_t epoch) = 0;
  // Completed, pruned or failed: it never runs again.
  virtual void on_ended(std::int64_t trial) = 0;
  // Why a trial still paused when the sweep ends stopped there (it is then marked pruned).
  [[nodiscard]] virtual std::string paused_reason(std::int64_t trial) const = 0;
};

// "fifo", "median", "asha", "hyperband", "pbt".
const std::vector<std::string>& scheduler_names();

[[nodiscard]] Status make_scheduler(const SchedulerOptions& options,
                                    std::unique_ptr<Scheduler>* out);

// "val_acc 0.8123" from an objective, for reasons a researcher reads.
std::string describe_objective(const SchedulerOptions& options, double loss);

}  // namespace trellis::coordinator
