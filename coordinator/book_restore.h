#pragma once
// Restoring a TrialBook from the store, when a coordinator resumes an experiment.
//
// The scheduler and the searcher keep no state on disk. An experiment begun at schema 3 or
// later has a story: its events and reports, in commit order, are applied through the same
// apply_* functions the live coordinator called when they happened, so the book reaches the
// state the last coordinator had (the same proposals, rung order, brackets and donors). Each
// live trial's state, parameters after exploits and target are the story's; a trials row that
// disagrees with its story is refused, the store named. An older experiment has no story: its
// trials are replayed in number order, each as one job through its final target.
//
// Trials are restored in the order the live coordinator would run them: the requeued ones
// first, in their requeue order.

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/experiment_store.h"
#include "coordinator/trial_book.h"

namespace trellis::coordinator {

// A trial the last coordinator left running, with the group and CURVE key its attempt was
// started for.
struct LeftRunning {
  std::int64_t trial = -1;
  std::int32_t attempt = 0;
  std::string group;
  std::string key;  // empty without CURVE
};

// Restores `book` (new, with its searcher and scheduler) from experiment `experiment` in
// `store`; `metric` is the objective's metric. `running`: the trials left running.
[[nodiscard]] Status restore_book(ExperimentStore* store, const ExperimentRecord& experiment,
                                  const std::string& metric, TrialBook* book,
                                  std::vector<LeftRunning>* running);

}  // namespace trellis::coordinator
