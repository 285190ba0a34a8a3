#pragma once
// Search-space domains: where one hyperparameter's values are drawn from.

#include <cstddef>
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
  // Grid search: how many evenly spaced points a float or log_float domain contributes
  // (`points:` in the spec; 0 = not set, which grid search refuses for floats).
  int grid_points = 0;
};

// `when: {optimizer: [sgd]}`: the parameter exists only when `parent` took one of `values`.
struct Condition {
  std::string parent;
  std::vector<ParamValue> values;
};

struct SearchParam {
  std::string name;
  Domain domain;
  std::vector<Condition> when;  // all must hold; empty: always active
};

// "float", "log_float", "int", "categorical".
const char* to_string(Domain::Kind kind);
bool parse_domain_kind(const std::string& text, Domain::Kind* out);

// Refuses empty or contradictory domains (low >= high, log of a non-positive bound, no choices).
[[nodiscard]] Status check_domain(const Domain& domain);

// Refuses a space a searcher cannot draw from, naming the parameter: a bad domain, a name given
// twice, a condition on an unknown parameter, on itself or on a value its parent can never
// take, a cycle of conditions. On failure `culprit`, if given, is set to the named parameter's
// index, so the spec parser can point at its line.
[[nodiscard]] Status check_space(const std::vector<SearchParam>& space,
                                 std::size_t* culprit = nullptr);

// The space reordered so every parent comes before the parameters conditioned on it (stable
// otherwise). Requires check_space() to pass.
std::vector<SearchParam> order_by_conditions(std::vector<SearchParam> space);

// True when every condition of `param` holds for the values already chosen in `chosen`
// (a condition on a parent that is itself inactive, so absent from `chosen`, does not hold).
bool is_active(const SearchParam& param, const ParamMap& chosen);

// Maps u in [0, 1) onto the domain. Samplers draw u themselves, so the mapping is the same for
// random search and any quasi-random sequence.
ParamValue domain_value(const Domain& domain, double u);

}  // namespace trellis
