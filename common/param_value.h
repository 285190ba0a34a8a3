#pragma once
// ParamValue: one hyperparameter value as it travels from the spec through the searcher, the
// wire and the store to the trainer. msgpack and JSON both keep the three kinds apart.

#include <cstdint>
#include <map>
#include <string>
#include <variant>

namespace trellis {

using ParamValue = std::variant<std::int64_t, double, std::string>;
using ParamMap = std::map<std::string, ParamValue>;
using MetricMap = std::map<std::string, double>;

// Shortest text that reads back to the same value ("0.001", "128", "adam").
std::string to_string(const ParamValue& value);

// Numeric view: int64 and double convert; a string does not (returns false).
bool as_double(const ParamValue& value, double* out);

}  // namespace trellis
