#include "coordinator/params_codec.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace trellis::coordinator {

nlohmann::json params_object(const ParamMap& params) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : params) {
    if (const auto* i = std::get_if<std::int64_t>(&value)) {
      j[name] = *i;
    } else if (const auto* d = std::get_if<double>(&value)) {
      j[name] = std::isfinite(*d) ? nlohmann::json(*d) : nlohmann::json(nullptr);
    } else {
      j[name] = std::get<std::string>(value);
    }
  }
  return j;
}

Status params_to_json(const ParamMap& params, std::string* out) {
  for (const auto& [name, value] : params) {
    // JSON has no NaN/inf; storing null would lose the kind silently.
    if (const auto* d = std::get_if<double>(&value); d && !std::isfinite(*d))
      return Status::Error("param '" + name + "' is not finite");
  }
  try {
    *out = params_object(params).dump();
  } catch (const nlohmann::json::exception& e) {
    return Status::Error(std::string("params are not valid UTF-8: ") + e.what());
  }
  return Status::Ok();
}

Status params_from_object(const nlohmann::json& j, ParamMap* out) {
  out->clear();
  if (!j.is_object()) return Status::Error("params are not a JSON object: " + j.dump());
  for (const auto& [name, value] : j.items()) {
    // nlohmann keeps 1.0 as number_float and 1 as number_integer; that is what preserves
    // the kind across the store.
    if (value.is_number_integer()) {
      (*out)[name] = value.get<std::int64_t>();
    } else if (value.is_number_float()) {
      (*out)[name] = value.get<double>();
    } else if (value.is_string()) {
      (*out)[name] = value.get<std::string>();
    } else {
      return Status::Error("param '" + name + "' has unsupported JSON type: " + value.dump());
    }
  }
  return Status::Ok();
}

Status params_from_json(const std::string& text, ParamMap* out) {
  out->clear();
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Error("params are not valid JSON: " + text);
  return params_from_object(j, out);
}

}  // namespace trellis::coordinator
