#pragma once
// Walltime: how much work fits before a worker group's batch job reaches its time limit.
//
// A group in a Slurm job says when the job's limit ends (Hello.job_ends_at). The coordinator
// learns from the reports (`epoch_s`) how long epochs take and how long an attempt takes to
// start. An epoch's cost is a trial's mean epoch, and the slowest trial's mean decides: trials
// differ, and a slow trial pays its slowness every epoch, where one slow epoch among hundreds
// (another process on the core, a page fault storm) pays it once, which the margin covers; the
// slowest single epoch made jobs that train short epochs leave with half their time unused.
// The start-up is the time from the Assign to an attempt's first report, that first epoch
// included: it pays for reading the data and for the GEMM library's kernel generation, several
// steady epochs here. Before the limit, minus a margin for Slurm's timers, a group is given only
// whole epochs that fit: the job as it is if it fits (the next ASHA rung, say), else as many
// epochs as fit, ending on a checkpoint, after which the trial continues in another group; and
// nothing when not even one epoch fits, so the group leaves and its job ends early, returning
// its hours. Until an attempt's second report nothing is known, and the first attempts run
// uncut.

#include <cstdint>
#include <unordered_map>

namespace trellis::coordinator {

class EpochClock {
 public:
  // Slack on the slowest trial's mean epoch: the next trial may be a little slower still.
  static constexpr double kSafety = 1.1;

  // An epoch of `trial` after its attempt's first took `seconds`.
  void epoch_took(std::int64_t trial, double seconds);
  // `trial`'s attempt ended: its mean stays in the estimate and the clock forgets the trial, so
  // it holds only the attempts that are training (an attempt lost with its group stays until
  // the trial's next attempt ends).
  void attempt_ended(std::int64_t trial);
  // An attempt's first report came `seconds` after its Assign.
  void first_report_after(double seconds);
  bool known() const { return epoch_seconds() > 0; }
  // The slowest mean epoch of a trial, each live trial's mean as it is now: a spike early in an
  // attempt is diluted as its later epochs come in.
  double epoch_seconds() const;
  double startup_seconds() const { return startup_; }
  // Whole epochs that fit in `seconds` after a start-up and `margin`; 0 when none does (and
  // when nothing is known yet: ask known() first).
  int epochs_fitting(double seconds, double margin) const;

 private:
  struct Mean {
    double sum = 0;
    std::int64_t count = 0;
    double value() const { return sum / static_cast<double>(count); }
  };
  std::unordered_map<std::int64_t, Mean> live_;
  double slowest_ended_ = 0;  // the slowest mean of an attempt that ended
  double startup_ = 0;        // the slowest start seen
};

}  // namespace trellis::coordinator
