#pragma once
// Exporter: one experiment of the store as JSON or CSV, for notebooks and other tools.
//
// The JSON layout is a public contract; change it only with a version bump in the output:
//   {"format_version": kExportFormatVersion,
//    "experiment": {"name", "id", "metric", "mode", "seed", "state", "created_at",
//                   "spec_hash", "spec"},
//    "trials": [{"id" (number within the experiment, 0-based), "state", "params",
//                "metrics": {NAME: [[EPOCH, VALUE], ...]}, "final": {NAME: VALUE},
//                "attempt", "seed", "group", "error", "started_at", "finished_at",
//                "checkpoint_epoch", "target_epoch" (the epoch the scheduler let it train
//                through; 0: all), "lineage": [{"epoch", "donor" (trial id), "donor_epoch",
//                "params_before", "params_after", "reason"}] (PBT exploits, oldest first),
//                "provenance": {group, host, ranks, topology, versions, spec_hash, dataset,
//                split; from the worker's Done: dataset_hash, build, blas, rank_layout...}},
//                ...],
//    "events": [{"seq", "kind", "trial" (number, or null), "group", "at", "after_report",
//                "data": {...}}, ...]}
// "events" is the sweep's story in order (docs/ARCHITECTURE.md, "Events"); a trial or donor in
// "data" is a number within the experiment.
// "error" holds why a trial failed, was pruned, or is paused.
// Trials are in number order; params keep their kind (integer, float, string); metrics are
// those of each trial's lineage (see ExperimentStore::metric_series); a non-finite value is
// null. Unset strings are "".
//
// CSV: a header, then one row per (trial, epoch), a trial without epochs getting one row with
// an empty epoch. Columns: trial, state, one per param name (sorted), epoch, one per epoch
// metric (sorted), final_NAME per final metric (sorted; repeated on each row of the trial).
// Fields are quoted per RFC 4180; lines end with "\n"; numbers round-trip exactly.

#include <nlohmann/json.hpp>

#include <ostream>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/experiment_store.h"

namespace trellis::coordinator {

enum class ExportFormat { kJson, kCsv };

// The JSON export's "format_version". It goes up when a key is removed, renamed or changes
// meaning, not when one is added (readers ignore keys they do not know). 1 is the layout every
// export wrote before the key existed, so a reader that finds no key reads version 1; 2 is
// that layout, the first to say which it is.
inline constexpr int kExportFormatVersion = 2;

// Shortest text that reads back to the same double ("0.1", "1e-05").
std::string format_number(double v);
// A JSON value as a cell reads: strings bare, floats by format_number, null empty, the rest
// (integers, booleans, objects) as JSON.
std::string cell_text(const nlohmann::json& value);
// `text` as one CSV field (RFC 4180: quoted when it holds a comma, quote or line break).
std::string csv_field(const std::string& text);

// "json" | "csv".
[[nodiscard]] Status parse_export_format(const std::string& text, ExportFormat* out);

// Unknown experiment: an error listing the experiments that exist.
[[nodiscard]] Status export_experiment(ExperimentStore& store, const std::string& experiment_name,
                                       ExportFormat format, std::ostream& out);

// The document the JSON export holds under "trials" for each trial numbered in `numbers`, in
// that order (`trellis show`, `trellis compare`). A number the experiment does not have is an
// error naming its range of trial numbers.
[[nodiscard]] Status trial_documents(ExperimentStore& store, const ExperimentRecord& experiment,
                                     const std::vector<std::int32_t>& numbers,
                                     std::vector<nlohmann::json>* out);

}  // namespace trellis::coordinator
