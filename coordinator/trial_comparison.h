#pragma once
// TrialComparison: trials side by side, one row per field, for `trellis compare`. Like
// `dvc exp show --only-changed`, only the rows whose values differ are printed unless all are
// asked for: what a researcher wants to see is what set two trials apart.
//
// The rows come from the export's trial documents (exporter.h, trial_documents), in this
// order: state, error, epochs (the highest epoch reported), attempt, seed, checkpoint_epoch,
// exploits (PBT lineage entries); then params.NAME, final.NAME and provenance.KEY, names
// sorted within each part, nested provenance keys joined with '.'. A field one trial lacks is
// null for it, and null differs from any value.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace trellis::coordinator {

struct ComparisonRow {
  std::string field;
  std::vector<nlohmann::json> values;  // one per trial, in the order given
  bool differs = false;
};

std::vector<ComparisonRow> compare_trials(const std::vector<nlohmann::json>& documents);

enum class CompareFormat { kTable, kCsv, kJson };

// "table" | "csv" | "json".
[[nodiscard]] Status parse_compare_format(const std::string& text, CompareFormat* out);

// The rows that differ (all rows when `all`), the trials as columns headed by their numbers.
// table: aligned text, a missing value shown as "-", line breaks inside a value as " / ";
// csv: a header "field,N,M,...", empty for a missing value; json: {"trials": [N, M, ...],
// "rows": [{"field", "values": [...], "differs"}, ...]}. Numbers are printed shortest-exact.
void write_comparison(const std::vector<std::int32_t>& numbers,
                      const std::vector<ComparisonRow>& rows, bool all, CompareFormat format,
                      std::ostream& out);

}  // namespace trellis::coordinator
