#pragma once
// Hyperparameters as the store keeps them: one JSON object, integers as JSON integers and
// floats as JSON floats, so a value's kind survives the round trip (1 and 1.0 stay apart).

#include <nlohmann/json.hpp>

#include <string>

#include "common/param_value.h"
#include "common/status.h"

namespace trellis::coordinator {

// Fails on a non-finite float (JSON has none) or text that is not UTF-8.
[[nodiscard]] Status params_to_json(const ParamMap& params, std::string* out);
[[nodiscard]] Status params_from_json(const std::string& text, ParamMap* out);

// The same as JSON values, for documents that hold parameters (events, exports): a non-finite
// float becomes null there, since such a document is for reading, not for the round trip.
nlohmann::json params_object(const ParamMap& params);
[[nodiscard]] Status params_from_object(const nlohmann::json& object, ParamMap* out);

}  // namespace trellis::coordinator
