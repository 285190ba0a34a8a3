#pragma once
// Hyperparameters as the store keeps them: one JSON object, integers as JSON integers and
// floats as JSON floats, so a value's kind survives the round trip (1 and 1.0 stay apart).

#include <string>

#include "common/param_value.h"
#include "common/status.h"

namespace trellis::coordinator {

// Fails on a non-finite float (JSON has none) or text that is not UTF-8.
[[nodiscard]] Status params_to_json(const ParamMap& params, std::string* out);
[[nodiscard]] Status params_from_json(const std::string& text, ParamMap* out);

}  // namespace trellis::coordinator
