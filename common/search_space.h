#pragma once
// Search-space domains: where one hyperparameter's values are drawn from.

#include <cstdint>
#include <string>
#include <vector>

#include "common/param_value.h"
#include "common/status.h"

namespace trellis {

struct Domain {
  enum class Kind { kFloat, kLogFloat, kInt, kCategorical };
  Kind kind = Kind::kFloat;
  double low = 0;   // inclusive; kInt: both bounds inclusive
  double high = 1;  // exclusive for floats
  std::vector<ParamValue> choices;  // kCategorical
};

struct SearchParam {
  std::string name;
  Domain domain;
};

// "float", "log_float", "int", "categorical".
const char* to_string(Domain::Kind kind);
bool parse_domain_kind(const std::string& text, Domain::Kind* out);

// Refuses empty or contradictory domains (low >= high, log of a non-positive bound, no choices).
[[nodiscard]] Status check_domain(const Domain& domain);

// Maps u in [0, 1) onto the domain. Samplers draw u themselves, so the mapping is the same for
// random search and any quasi-random sequence.
ParamValue domain_value(const Domain& domain, double u);

}  // namespace trellis
