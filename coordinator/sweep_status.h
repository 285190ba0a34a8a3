#pragma once
// SweepStatus: where one experiment stands, read from the store alone (read-only, so while its
// coordinator writes; `trellis status`).
//
// - Trials by state, and how many the spec plans.
// - Who serves it (coordinator_presence.h) and, while one does, its worker groups and what
//   each runs: the coordinator records each group's story as events (group_joined,
//   group_readopted, attempt_started, trial_paused / trial_ended from its Done,
//   trial_requeued, group_lost, group_released, sweep_finished / sweep_stopped), and the
//   groups are those events replayed since the newest coordinator_started. A group's epoch is
//   the newest its attempt has reported, or the one it resumed from before its first report.
// - Epochs done: each trial's highest epoch, summed. The budget is the most the sweep can
//   still take: each ended trial's epochs, each other trial's full `epochs`, and `epochs` for
//   every trial the spec still plans, capped by search.budget_epochs. For fifo and PBT (every
//   trial trains all its epochs) that is exact. For median, ASHA and Hyperband it is an upper
//   bound: those stop trials early, and the bound falls to the epochs done as they do. Once
//   the sweep has finished, the budget is the epochs done.
// - The best trial so far, by the experiment's metric (final value, else the last reported).
// - Time left: (budget - done) / the epochs per second observed since the coordinator
//   started (its reports over its time up). Unknown before its first report or when none
//   serves; for median, ASHA and Hyperband an upper bound, like the budget.

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/coordinator_presence.h"
#include "coordinator/experiment_store.h"

namespace trellis::coordinator {

struct GroupActivity {
  std::string group;         // host:pid
  std::int64_t trial = -1;   // store id, -1: idle
  std::int32_t number = -1;  // within the experiment
  std::int32_t attempt = 0;
  std::int32_t epoch = 0;  // the newest epoch the attempt reported, else the one it resumed from
  std::int32_t until_epoch = 0;  // the epoch the attempt trains through
  std::string since;             // when it joined, or started its attempt
};

struct SweepStatus {
  ExperimentRecord experiment;
  std::string scheduler;  // the spec's scheduler type
  int planned = 0;        // the spec's trials
  int trials = 0;         // in the store
  std::map<std::string, int> by_state;
  CoordinatorPresence coordinator;
  std::vector<GroupActivity> groups;  // while a coordinator serves it
  std::int64_t epochs_done = 0;
  std::int64_t epochs_budget = 0;
  bool budget_is_bound = false;  // median, ASHA, Hyperband: an upper bound (see above)
  std::optional<std::int32_t> best_trial;
  double best_value = 0;
  double epochs_per_second = 0;  // 0: not observed yet
  std::optional<double> seconds_left;
  std::string stopped_reason;  // a sweep stopped on its dataset: why
};

[[nodiscard]] Status sweep_status(ExperimentStore& store, const ExperimentRecord& experiment,
                                  SweepStatus* out);

// The experiment at a glance, several lines.
void print_sweep_status(const SweepStatus& status, std::ostream& out);
// One line: name, state, trials by state, epochs, best, who serves it.
void print_sweep_line(const SweepStatus& status, std::ostream& out);

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

}  // namespace trellis::coordinator
