#include "common/search_space.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace trellis {
namespace {

// Numbers compare by value, so `when: {hidden_layers: 2}` holds for the int 2 and the float
// 2.0 alike; strings compare by text.
bool same_value(const ParamValue& a, const ParamValue& b) {
  double x = 0, y = 0;
  if (as_double(a, &x) && as_double(b, &y)) return x == y;
  return a == b;
}

// Whether a draw (or a grid point: floats include `high` there) can equal `value`.
bool can_take(const Domain& d, const ParamValue& value) {
  if (d.kind == Domain::Kind::kCategorical)
    return std::any_of(d.choices.begin(), d.choices.end(),
                       [&](const ParamValue& c) { return same_value(c, value); });
  double x = 0;
  if (!as_double(value, &x) || x < d.low || x > d.high) return false;
  return d.kind != Domain::Kind::kInt || x == std::floor(x);
}

}  // namespace

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

Status check_space(const std::vector<SearchParam>& space, std::size_t* culprit) {
  const auto fail = [&](std::size_t i, const std::string& what) {
    if (culprit) *culprit = i;
    return Status::Error("parameter '" + space[i].name + "': " + what);
  };
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < space.size(); ++i) {
    if (Status s = check_domain(space[i].domain); !s.ok()) return fail(i, s.message());
    if (!index.emplace(space[i].name, i).second) return fail(i, "appears twice in the space");
  }
  for (std::size_t i = 0; i < space.size(); ++i) {
    for (const Condition& c : space[i].when) {
      if (c.parent == space[i].name) return fail(i, "is conditioned on itself");
      const auto parent = index.find(c.parent);
      if (parent == index.end())
        return fail(i, "condition on unknown parameter '" + c.parent + "'");
      if (c.values.empty()) return fail(i, "condition on '" + c.parent + "' lists no values");
      for (const ParamValue& v : c.values)
        if (!can_take(space[parent->second].domain, v))
          return fail(i, "condition on '" + c.parent + "' = " + to_string(v) +
                             ", a value '" + c.parent + "' never takes");
    }
  }
  // Depth-first walk from each parameter to its parents; meeting one still on the path closes
  // a cycle, reported from where the walk entered it.
  enum class Mark { kNew, kOnPath, kDone };
  std::vector<Mark> mark(space.size(), Mark::kNew);
  std::vector<std::size_t> path;
  const auto walk = [&](const auto& self, std::size_t i) -> bool {
    mark[i] = Mark::kOnPath;
    path.push_back(i);
    for (const Condition& c : space[i].when) {
      const std::size_t p = index.at(c.parent);
      if (mark[p] == Mark::kOnPath) {
        path.push_back(p);
        return false;
      }
      if (mark[p] == Mark::kNew && !self(self, p)) return false;
    }
    mark[i] = Mark::kDone;
    path.pop_back();
    return true;
  };
  for (std::size_t i = 0; i < space.size(); ++i) {
    if (mark[i] != Mark::kNew || walk(walk, i)) continue;
    std::string cycle;
    for (auto it = std::find(path.begin(), path.end(), path.back()); it != path.end(); ++it)
      cycle += (cycle.empty() ? "" : " -> ") + space[*it].name;
    return fail(path.back(), "its conditions form a cycle: " + cycle);
  }
  return Status::Ok();
}

std::vector<SearchParam> order_by_conditions(std::vector<SearchParam> space) {
  std::vector<SearchParam> ordered;
  ordered.reserve(space.size());
  const auto placed = [&](const std::string& name) {
    return std::any_of(ordered.begin(), ordered.end(),
                       [&](const SearchParam& p) { return p.name == name; });
  };
  while (!space.empty()) {
    const auto ready = std::find_if(space.begin(), space.end(), [&](const SearchParam& p) {
      return std::all_of(p.when.begin(), p.when.end(),
                         [&](const Condition& c) { return placed(c.parent); });
    });
    if (ready == space.end()) break;  // a cycle: check_space refuses such a space
    ordered.push_back(std::move(*ready));
    space.erase(ready);
  }
  return ordered;
}

bool is_active(const SearchParam& param, const ParamMap& chosen) {
  return std::all_of(param.when.begin(), param.when.end(), [&](const Condition& c) {
    const auto it = chosen.find(c.parent);
    return it != chosen.end() &&
           std::any_of(c.values.begin(), c.values.end(),
                       [&](const ParamValue& v) { return same_value(it->second, v); });
  });
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
