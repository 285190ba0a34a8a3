#pragma once
// TargetRule: what a row's target may be, checked while parsing so a bad label is reported
// with its file and line. Shared by the text formats; header-only because it is tiny.

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

namespace trellis::worker {

// Above any real class count; stops a stray large label from sizing the output layer.
inline constexpr int kMaxClasses = 1 << 16;

struct TargetRule {
  bool classification = true;
  int classes = 0;  // declared count; 0 = inferred by the group after reading
};

// Parses a whole field as a finite float (no surrounding text, no inf or nan).
inline bool parse_float(std::string_view field, float* out) {
  while (!field.empty() && (field.front() == ' ' || field.front() == '\t')) field.remove_prefix(1);
  while (!field.empty() && (field.back() == ' ' || field.back() == '\t')) field.remove_suffix(1);
  if (!field.empty() && field.front() == '+') field.remove_prefix(1);
  if (field.empty()) return false;
  const char* end = field.data() + field.size();
  const auto [ptr, ec] = std::from_chars(field.data(), end, *out);
  return ec == std::errc() && ptr == end && std::isfinite(*out);
}

inline std::string format_float(float v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(v));
  return buf;
}

// Empty when `value` is a valid target under `rule`, else what is wrong with it.
inline std::string check_target(const TargetRule& rule, float value) {
  if (!rule.classification) return {};
  if (value != std::floor(value) || value < 0)
    return "label " + format_float(value) +
           " is not a class id (classification labels are integers in [0, classes))";
  const int limit = rule.classes > 0 ? rule.classes : kMaxClasses;
  if (value >= static_cast<float>(limit))
    return "label " + std::to_string(static_cast<long long>(value)) + " out of range (" +
           std::to_string(limit) + (rule.classes > 0 ? " classes declared)" : " classes at most)");
  return {};
}

}  // namespace trellis::worker
