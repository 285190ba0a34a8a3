#include "common/search_space.h"

#include <algorithm>
#include <cmath>

namespace trellis {

const char* to_string(Domain::Kind kind) {
  switch (kind) {
    case Domain::Kind::kFloat: return "float";
    case Domain::Kind::kLogFloat: return "log_float";
    case Domain::Kind::kInt: return "int";
    case Domain::Kind::kCategorical: return "categorical";
  }
  return "?";
}

bool parse_domain_kind(const std::string& text, Domain::Kind* out) {
  for (auto k : {Domain::Kind::kFloat, Domain::Kind::kLogFloat, Domain::Kind::kInt,
                 Domain::Kind::kCategorical}) {
    if (text == to_string(k)) {
      *out = k;
      return true;
    }
  }
  return false;
}

Status check_domain(const Domain& d) {
  switch (d.kind) {
    case Domain::Kind::kCategorical:
      return d.choices.empty() ? Status::Error("categorical domain has no values") : Status::Ok();
    case Domain::Kind::kInt:
      if (d.low > d.high) return Status::Error("int domain has low > high");
      return Status::Ok();
    case Domain::Kind::kLogFloat:
      if (d.low <= 0) return Status::Error("log_float domain needs low > 0");
      [[fallthrough]];
    case Domain::Kind::kFloat:
      if (!(d.low < d.high)) return Status::Error(std::string(to_string(d.kind)) +
                                                  " domain needs low < high");
      return Status::Ok();
  }
  return Status::Ok();
}

ParamValue domain_value(const Domain& d, double u) {
  switch (d.kind) {
    case Domain::Kind::kFloat: return d.low + u * (d.high - d.low);
    case Domain::Kind::kLogFloat:
      return std::exp(std::log(d.low) + u * (std::log(d.high) - std::log(d.low)));
    case Domain::Kind::kInt: {
      const double span = d.high - d.low + 1;
      return static_cast<std::int64_t>(d.low + std::min(std::floor(u * span), span - 1));
    }
    case Domain::Kind::kCategorical: {
      const auto n = d.choices.size();
      return d.choices[std::min<std::size_t>(static_cast<std::size_t>(u * n), n - 1)];
    }
  }
  return 0.0;
}

}  // namespace trellis

namespace trellis {

// Interim versions until the search branch lands.
Status check_space(const std::vector<SearchParam>& space) {
  for (const auto& p : space)
    if (Status s = check_domain(p.domain); !s.ok()) return s.With(p.name);
  return Status::Ok();
}

std::vector<SearchParam> order_by_conditions(std::vector<SearchParam> space) { return space; }

bool is_active(const SearchParam& param, const ParamMap& chosen) {
  for (const auto& c : param.when) {
    const auto it = chosen.find(c.parent);
    if (it == chosen.end()) return false;
    if (std::find(c.values.begin(), c.values.end(), it->second) == c.values.end()) return false;
  }
  return true;
}

}  // namespace trellis
