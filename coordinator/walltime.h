#pragma once
// Walltime: how much work fits before a worker group's batch job reaches its time limit.
//
// A group in a Slurm job says when the job's limit ends (Hello.job_ends_at). The coordinator
// learns how long epochs take from the reports (`epoch_s`) and how long an attempt takes to
// start (its first report's arrival after the Assign, less that epoch), keeping the slowest of
// each: trials differ, and an overrun costs more than an early stop. Before the limit, minus a
// margin for Slurm's timers, a group is given only whole epochs that fit: the job as it is if
// it fits (the next ASHA rung, say), else as many epochs as fit, ending on a checkpoint, after
// which the trial continues in another group; and nothing when not even one epoch fits, so the
// group leaves and its job ends early, returning its hours. Until the first report nothing is
// known, and the first attempts run uncut.

namespace trellis::coordinator {

class EpochClock {
 public:
  // Slack on the slowest epoch: the next one may be a little slower still.
  static constexpr double kSafety = 1.1;

  // An epoch of some trial took `seconds`.
  void epoch_took(double seconds);
  // An attempt's first report came `seconds` after its Assign; its epoch took `epoch_seconds`.
  void first_report_after(double seconds, double epoch_seconds);
  bool known() const { return epoch_ > 0; }
  double epoch_seconds() const { return epoch_; }
  double startup_seconds() const { return startup_; }
  // Whole epochs that fit in `seconds` after a start-up and `margin`; 0 when none does (and
  // when nothing is known yet: ask known() first).
  int epochs_fitting(double seconds, double margin) const;

 private:
  double epoch_ = 0;    // the slowest epoch seen
  double startup_ = 0;  // the slowest start seen
};

}  // namespace trellis::coordinator
