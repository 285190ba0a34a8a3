#pragma once
// TrialBook: the sweep's trial state machine. Events in, decisions out: no store, no socket, no
// clock, so every rule here is unit-tested without a process (tests/coordinator).
//
// It keeps in one place what the coordinator, the searcher and the scheduler must agree on:
// every trial that has not ended (state, parameters, how far its current job trains, latest
// objective, why the scheduler stopped it), the trials waiting for a group, the counters and
// the budgets. The searcher (through ObservationFeed) and the scheduler hear of trials only
// from here.
//
//   pending --started--> running --reported--> (the scheduler may stop it: a stop reason)
//   running --attempt_ended--> paused | completed | pruned | failed
//   running --requeued--> pending (first in line) | failed (lost too often)
//   paused --continued--> pending          paused --paused_trial_ended--> pruned | failed
//
// The coordinator turns a decision into store writes and messages, records the event, and then
// applies the event here, in that order, in the same store batch. A restarted coordinator
// applies the stored events through the same calls (apply_*), so the searcher and the
// scheduler reach the state they had, and restore() then sets each trial's state from the
// store.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/param_value.h"
#include "common/status.h"
#include "common/sweep_spec.h"
#include "coordinator/schedulers/scheduler.h"
#include "coordinator/search/observation_feed.h"
#include "coordinator/search/searcher.h"
#include "coordinator/trial_state.h"

namespace trellis::coordinator {

struct SweepProgress {
  int proposed = 0;
  int running = 0;
  int paused = 0;
  int completed = 0;
  int pruned = 0;
  int failed = 0;
  int total = 0;                     // the trial budget
  std::int64_t epochs_assigned = 0;  // what the epoch budget counts
  int ended() const { return completed + pruned + failed; }
};

// What a free group is to do.
struct Decision {
  enum class Kind {
    kStart,           // start pending trial `trial` (then started())
    kNew,             // store a new trial (`number`, `params`, `seed`, `job`), then proposed()
    kContinue,        // continue paused trial job.trial per `job`, then continued()
    kWait,            // nothing now
    kWaitForResults,  // the next proposal needs a result still to come (ObservationFeed)
    kFinished,        // the sweep is over
  };
  Kind kind = Kind::kWait;
  std::int64_t trial = -1;
  Job job;
  std::int32_t number = 0;
  ParamMap params;  // kNew: the fixed hyperparameters and the searcher's proposal
  std::uint64_t seed = 0;
};

// How an attempt that sent Done ends.
struct AttemptEnd {
  TrialState state = TrialState::kFailed;
  std::string why;          // the error, the scheduler's reason, or why it paused
  std::int32_t epoch = 0;   // through which epoch its job trained
};

class TrialBook {
 public:
  struct Trial {
    std::int32_t number = 0;
    TrialState state = TrialState::kPending;
    ParamMap params;
    std::uint64_t seed = 0;
    std::int32_t target_epoch = 0;  // through which epoch the current job trains
    std::string stop_reason;        // set once the scheduler stopped it
    std::optional<double> loss;     // its latest objective (smaller is better)
  };

  TrialBook(SweepSpec spec, SchedulerOptions options, std::unique_ptr<Searcher> searcher,
            std::unique_ptr<Scheduler> scheduler);

  // --- Decisions ---------------------------------------------------------------------------
  // What a free group does next: a requeued trial first; else, under the concurrency limit
  // and within the budgets, the scheduler's job (a continuation, or a new trial whose
  // parameters this proposes). Marks the sweep finished when nothing runs, waits or is left.
  // An error when the scheduler asks to continue a trial that is not paused.
  [[nodiscard]] Status next(Decision* out);
  // The end of an attempt that reported Done (`ok`: it trained its job through; `error`
  // otherwise).
  [[nodiscard]] AttemptEnd end_of(std::int64_t trial, bool ok, const std::string& error) const;
  // Ends the sweep if nothing runs or waits and the scheduler has nothing left.
  void check_finished();
  bool finished() const { return finished_; }

  // --- Events, live ------------------------------------------------------------------------
  // Trial `trial` was stored for decision `d` (kNew).
  void proposed(std::int64_t trial, const Decision& d);
  // Paused trial job.trial goes on per `job` (kContinue), with job.params if an exploit.
  void continued(const Job& job);
  void started(std::int64_t trial);
  // A report of the running attempt; returns the scheduler's stop reason when this report
  // stopped the trial (empty otherwise, and on every later report).
  [[nodiscard]] std::string reported(std::int64_t trial, std::int32_t epoch,
                                     std::optional<double> loss);
  // The running attempt ended as `end` said (after end_of), with `final_loss` from its final
  // metrics, used when no report gave an objective.
  void attempt_ended(std::int64_t trial, const AttemptEnd& end, std::optional<double> final_loss);
  // The running attempt's group is gone: first in line again, or failed (`failed`).
  void requeued(std::int64_t trial, bool failed);
  // A paused trial ends without running again: `kPruned` at the end of the sweep, `kFailed`
  // when its checkpoint is missing.
  void paused_trial_ended(std::int64_t trial, TrialState state);
  // The epoch budget leaves no room for the next job: no more work starts.
  void spend_budget() { budget_spent_ = true; }

  // --- Restart -----------------------------------------------------------------------------
  // The searcher and the scheduler hear of a trial's story only through these (live too:
  // the live calls above go through them).
  void apply_assigned(std::int64_t trial, const Job& job, const ParamMap& params);
  [[nodiscard]] std::string apply_report(std::int64_t trial, std::int32_t epoch, double loss);
  void apply_paused(std::int64_t trial, std::int32_t number, const ParamMap& params,
                    std::int32_t epoch, std::optional<double> loss);
  void apply_ended(std::int64_t trial, std::int32_t number, const ParamMap& params, bool failed,
                   std::optional<double> loss);
  void add_epochs_assigned(std::int64_t epochs) { progress_.epochs_assigned += epochs; }
  // After the replay, every trial of the experiment as the store has it, in number order,
  // with what a trial that has not ended carried (latest objective, stop reason). Pending
  // trials queue in that order; running ones count as running until their groups come back or
  // they are requeued.
  void restore(std::int64_t trial, Trial t);
  // After the last restore(): a grid proposed in full has nothing more.
  void restored();

  // --- Reading -----------------------------------------------------------------------------
  const Trial* find(std::int64_t trial) const;
  Trial* find(std::int64_t trial);
  const std::map<std::int64_t, Trial>& trials() const { return trials_; }
  const SweepProgress& progress() const { return progress_; }
  const Scheduler& scheduler() const { return *scheduler_; }
  const ObservationFeed& feed() const { return feed_; }
  // The epochs trial `t` trains in all (its `epochs` hyperparameter).
  std::int32_t epochs_of(const ParamMap& params) const;
  // Through which epoch a job of `until_epoch` trains a trial of `params`.
  std::int32_t effective_target(const ParamMap& params, std::int32_t until_epoch) const;
  // The sweep's objective in `metrics`, negated when maximised (smaller is better).
  std::optional<double> objective(const MetricMap& metrics) const;
  // Whether the budgets and the searcher still allow a new trial.
  bool may_start_new() const;
  const SchedulerOptions& scheduler_options() const { return options_; }

 private:
  // A trial will not run again: the searcher learns its result, the scheduler forgets it.
  void forget(std::int64_t trial, bool failed);

  const SweepSpec spec_;
  const SchedulerOptions options_;
  std::unique_ptr<Searcher> searcher_;
  ObservationFeed feed_;
  std::unique_ptr<Scheduler> scheduler_;
  bool searcher_exhausted_ = false;
  bool budget_spent_ = false;
  bool finished_ = false;
  SweepProgress progress_;
  std::deque<std::int64_t> pending_;  // trial ids waiting for a group; requeued ones first
  // Trials that have not ended, by id. An ended trial is forgotten (the store has it), so
  // memory does not grow with the sweep.
  std::map<std::int64_t, Trial> trials_;
};

}  // namespace trellis::coordinator
