#pragma once
// Parameter importance by fANOVA (Hutter, Hoos, Leyton-Brown 2014), as Optuna's default
// FanovaImportanceEvaluator computes it, so a researcher who knows Optuna reads the same thing.
//
// Why fANOVA: it is what Optuna reports by default and what W&B's importance approximates
// (a forest's view of the objective), it needs no assumption about the objective's shape, and
// it says how much of the objective's variance over the whole search space each parameter
// explains on its own. PED-ANOVA (Optuna's dashboard) is cheaper but asks the user for a
// quantile and judges only the top trials; for the few thousand trials a sweep here has, the
// forest costs well under a second.
//
// The algorithm:
//   1. Each completed trial with the objective is a row: numeric parameters as they are (no
//      log transform, as Optuna), a categorical one one-hot; each column bounded by its
//      search-space domain (observed range if the spec has none). Only parameters every row has
//      take part (a conditional parameter absent in some trials is left out, as Optuna does).
//   2. A random forest of regression trees (kTrees bootstrapped trees, every feature tried at
//      every split, split at midpoints between distinct values, leaves down to one row: scikit-
//      learn's RandomForestRegressor as Optuna configures it) fits the objective.
//   3. Per tree: every leaf is a box of the search space with a value; the tree's variance over
//      the space weighs each leaf by its box's share of the space. A parameter's marginal: cut
//      its columns at every threshold the tree uses on them, and for each cell average the tree
//      over all other columns; the variance of those marginals (weighted by cell size) over the
//      tree's variance is the fraction it explains alone.
//   4. The fractions are averaged over the trees and normalised to sum 1.
// Seeded (the experiment's seed) so the same trials always give the same numbers.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/param_value.h"
#include "common/search_space.h"
#include "common/status.h"
#include "coordinator/experiment_store.h"

namespace trellis::dashboard {

struct FanovaOptions {
  int trees = 64;
  int max_depth = 64;
  std::uint64_t seed = 0;
};

// Importances of the parameters in `space` (those every row has) for `values`, highest first,
// summing to 1 (all 0 when the objective does not vary). Rows and values pair up by index.
[[nodiscard]] Status fanova_importance(const std::vector<SearchParam>& space,
                                       const std::vector<ParamMap>& rows,
                                       const std::vector<double>& values,
                                       const FanovaOptions& options,
                                       std::vector<std::pair<std::string, double>>* out);

struct ImportanceResult {
  std::vector<std::pair<std::string, double>> importances;  // highest first
  std::int64_t trials_used = 0;
};

// More trials than this are thinned, evenly by trial number, before the forest is grown: the
// ranking of a few parameters settles long before, and the dashboard answers in well under a
// second.
inline constexpr std::size_t kMaxImportanceTrials = 2000;

// For an experiment: its completed trials' objective (final value, else last reported) over
// the space its spec searched. Fails with a reason when there is nothing to rank (fewer than
// two completed trials, no searched parameter).
[[nodiscard]] Status parameter_importance(const coordinator::ExperimentRecord& experiment,
                                          const std::vector<coordinator::TrialSummary>& trials,
                                          ImportanceResult* out);

}  // namespace trellis::dashboard
