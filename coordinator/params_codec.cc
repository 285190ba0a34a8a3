#include "coordinator/params_codec.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace trellis::coordinator {

Status params_to_json(const ParamMap& params, std::string* out) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : params) {
    if (const auto* i = std::get_if<std::int64_t>(&value)) {
      j[name] = *i;
    } else if (const auto* d = std::get_if<double>(&value)) {
      // JSON has no NaN/inf; storing null would lose the kind silently.
      if (!std::isfinite(*d)) return Status::Error("param '" + name + "' is not finite");
      j[name] = *d;
    } else {
      j[name] = std::get<std::string>(value);
    }
  }
  try {
    *out = j.dump();
  } catch (const nlohmann::json::exception& e) {
    return Status::Error(std::string("params are not valid UTF-8: ") + e.what());
  }
  return Status::Ok();
}

Status params_from_json(const std::string& text, ParamMap* out) {
  out->clear();
  try {
    const auto j = nlohmann::json::parse(text);
    if (!j.is_object()) return Status::Error("params are not a JSON object: " + text);
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
  } catch (const nlohmann::json::exception& e) {
    return Status::Error(std::string("params are not valid JSON: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace trellis::coordinator
