#pragma once
// What `trellis reproduce` needs of the store, and how it judges the re-run: the plan (the
// trial's seed, the spec, and its attempts as legs run through the same decisions: paused at
// the same epochs, resumed, PBT exploits warm-started from the donor's recorded checkpoint with
// the recorded new parameters), and the verdict (the first epoch and metric that differ, the
// provenance fields that differ, and the exit code they make).
//
// A leg is one attempt the coordinator started. An attempt that was lost or preempted and
// resumed towards the same target is folded into the one before it: a checkpointed run is the
// same deterministic run however often it was interrupted (docs/ARCHITECTURE.md,
// Determinism), so the re-run trains that stretch once.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/param_value.h"
#include "common/status.h"
#include "coordinator/experiment_store.h"

namespace trellis::coordinator {

struct ReplayLeg {
  ParamMap params;              // as the attempt ran with them (after any exploit)
  std::int32_t resume_epoch = 0;  // continue after this epoch (0: from scratch)
  std::int32_t until_epoch = 0;   // train through this epoch, then stop
  // PBT exploit: the donor's checkpoint the attempt started from, and whose it was.
  std::string warm_start;
  std::int32_t donor_number = -1;
  std::int32_t donor_epoch = 0;
};

struct ReplayPlan {
  ExperimentRecord experiment;
  TrialRecord trial;
  std::vector<ReplayLeg> legs;
  std::int32_t ranks = 1;       // of the last recorded attempt
  MetricSeries recorded;        // the trial's stored series (its lineage)
};

// Reads experiment `name`'s trial `number` into a plan. Errors name what is missing: the
// experiment, the trial, a trial never started.
[[nodiscard]] Status plan_replay(ExperimentStore& store, const std::string& name,
                                 std::int32_t number, ReplayPlan* out);

// Metrics that measure time, not the model, and so are never compared.
bool is_timing_metric(const std::string& metric);

struct MetricDifference {
  std::int32_t epoch = 0;
  std::string metric;
  bool recorded_present = true, rerun_present = true;
  double recorded = 0, rerun = 0;
};

struct ProvenanceDifference {
  std::string field;  // dotted: "blas.threads", "dataset_hash"
  std::string recorded, rerun;  // JSON text; "(none)" when absent
};

// Exit codes of `trellis reproduce`.
inline constexpr int kReproduced = 0;
inline constexpr int kDiffersExplained = 1;
inline constexpr int kDiffersUnexplained = 2;

struct ReplayVerdict {
  bool identical = true;
  MetricDifference first;  // when !identical
  std::int32_t epochs_compared = 0;
  std::vector<ProvenanceDifference> provenance;
  int exit_code() const;
};

// Compares every epoch's every (non-timing) metric bit for bit, in epoch order then metric
// name, and every field of the worker's provenance (`rerun_provenance`, the re-run's Done) with
// the recorded attempt's.
ReplayVerdict judge_replay(const MetricSeries& recorded, const MetricSeries& rerun,
                           const std::string& recorded_provenance,
                           const std::string& rerun_provenance);

// A provenance field that can explain a difference in the last digits (build, compiler, BLAS,
// threads, the gradient buckets' summation order, rank layout) or in anything (the dataset's
// bytes, its split). Not vector_path: every vector path computes the same bits.
bool explains_difference(const std::string& field);

}  // namespace trellis::coordinator
