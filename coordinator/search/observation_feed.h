#pragma once
// ObservationFeed: what a searcher knows when it proposes trial k, made a function of the spec
// and the seed alone, whatever the timing and however many groups train in parallel.
//
// Proposal k sees exactly the first result of every trial numbered below k - lag, and nothing
// else. A trial's first result is its objective the first time it stopped: paused by its
// scheduler (ASHA and Hyperband at their first rung, PBT at its first interval) or ended (its
// last objective; none when it failed). Training is deterministic and a trial's first stop is
// where its first job ended, so that value does not depend on timing; a later one does (which
// ASHA trial is promoted first, and so when its higher rung comes in, depends on who finished
// when), and is not shown to the searcher. The exception is the median rule, which prunes a
// trial mid-job at an epoch that depends on which other trials had reported it.
//
// When trial k is due while a trial below k - lag has not stopped once yet, proposal k waits
// for it: ready(k) is false and the group asking for work is told to wait. With G groups of
// similar trials, lag >= G - 1 makes that wait rare; the coordinator measures it
// (GroupTable::idle_for_results_seconds).
//
// A proposal that does not use results (random, grid and Sobol search, TPE's startup trials)
// never waits. The feed is
// driven by the same calls on the live path and on a restart's replay, so a restarted sweep's
// searcher sees the same results for the same proposals.

#include <cstdint>
#include <map>
#include <optional>
#include <set>

#include "common/param_value.h"
#include "coordinator/search/searcher.h"

namespace trellis::coordinator {

class ObservationFeed {
 public:
  explicit ObservationFeed(std::int32_t lag) : lag_(lag) {}

  // Trial `number` stopped, with `loss` (nullopt: failed, or without the objective). Only the
  // first call for a number counts.
  void stopped(std::int32_t number, const ParamMap& params, std::optional<double> loss);

  // Whether `searcher`'s proposal `number` may be made now.
  [[nodiscard]] bool ready(std::int32_t number, const Searcher& searcher) const;

  // The lowest trial number that has not stopped yet.
  std::int32_t first_unstopped() const { return stopped_below_; }

  // Shows `searcher` the results proposal `number` sees that it has not been shown yet; called
  // before each proposal, once ready().
  void release(std::int32_t number, Searcher* searcher);

  std::int32_t lag() const { return lag_; }

 private:
  struct Result {
    ParamMap params;
    std::optional<double> loss;
  };
  // The numbers of proposals before `number` that it may see: [0, number - lag).
  std::int32_t visible_below(std::int32_t number) const;

  const std::int32_t lag_;
  std::int32_t stopped_below_ = 0;             // every trial below this number has stopped
  std::map<std::int32_t, Result> unreleased_;  // stopped, not yet shown
  std::set<std::int32_t> stopped_above_;       // stopped, numbered above stopped_below_
  std::int32_t released_below_ = 0;
};

}  // namespace trellis::coordinator
