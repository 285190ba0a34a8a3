#include "common/param_value.h"

#include <cstdio>

namespace trellis {

std::string to_string(const ParamValue& value) {
  if (const auto* i = std::get_if<std::int64_t>(&value)) return std::to_string(*i);
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", std::get<double>(value));
  return buf;
}

bool as_double(const ParamValue& value, double* out) {
  if (const auto* i = std::get_if<std::int64_t>(&value)) {
    *out = static_cast<double>(*i);
    return true;
  }
  if (const auto* d = std::get_if<double>(&value)) {
    *out = *d;
    return true;
  }
  return false;
}

}  // namespace trellis
