#pragma once
// MetricsJson: the metrics of one report (or a trial's latest values) as one JSON object, the
// text the experiment store keeps per report: {"train_loss":0.31,"val_acc":0.9125}.
//
// Contract: decode(encode(m)) == m bit for bit, NaN and infinities included. Names are in map
// order; finite values are the shortest text that reads back to the same double; NaN is null
// and the infinities are 1e999 / -1e999, which JSON readers (SQLite's json_extract among
// them) read as +/-infinity, since JSON has no words for them. Written here rather than with
// nlohmann::json because the coordinator encodes one object per report, 100,000 times a second
// under load, and decodes a million of them for an export.

#include <string>
#include <string_view>

#include "common/param_value.h"
#include "common/status.h"

namespace trellis::coordinator {

std::string encode_metrics(const MetricMap& metrics);

// Reads what encode_metrics wrote (whitespace between tokens is allowed). On failure `out` may
// hold the names read so far.
[[nodiscard]] Status decode_metrics(std::string_view text, MetricMap* out);

}  // namespace trellis::coordinator
