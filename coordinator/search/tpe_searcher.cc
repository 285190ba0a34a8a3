#include "coordinator/search/tpe_searcher.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/seed.h"

namespace trellis::coordinator {
namespace {

constexpr double kAbsent = std::numeric_limits<double>::quiet_NaN();

ParzenDim parzen_dim(const Domain& d) {
  switch (d.kind) {
    case Domain::Kind::kFloat: return {ParzenDim::Kind::kContinuous, d.low, d.high};
    case Domain::Kind::kLogFloat:
      return {ParzenDim::Kind::kContinuous, std::log(d.low), std::log(d.high)};
    case Domain::Kind::kInt: return {ParzenDim::Kind::kInteger, d.low - 0.5, d.high + 0.5};
    case Domain::Kind::kCategorical:
      return {ParzenDim::Kind::kCategorical, 0, 0, static_cast<int>(d.choices.size())};
  }
  return {};
}

// A value as the estimator sees it; kAbsent when the domain could not have produced it (a
// result recorded under another space), so it informs nothing.
double internal_value(const Domain& d, const ParamValue& value) {
  if (d.kind == Domain::Kind::kCategorical) {
    const auto it = std::find(d.choices.begin(), d.choices.end(), value);
    return it == d.choices.end() ? kAbsent : static_cast<double>(it - d.choices.begin());
  }
  double x = 0;
  if (!as_double(value, &x) || !(x >= d.low && x <= d.high)) return kAbsent;
  return d.kind == Domain::Kind::kLogFloat ? std::log(x) : x;
}

ParamValue external_value(const Domain& d, double x) {
  // Floats stay below `high`, as domain_value() keeps them.
  const double below_high = std::nextafter(d.high, d.low);
  switch (d.kind) {
    case Domain::Kind::kFloat: return std::clamp(x, d.low, below_high);
    case Domain::Kind::kLogFloat: return std::clamp(std::exp(x), d.low, below_high);
    case Domain::Kind::kInt: return static_cast<std::int64_t>(x);
    case Domain::Kind::kCategorical: return d.choices[static_cast<std::size_t>(x)];
  }
  return 0.0;
}

bool same_conditions(const std::vector<Condition>& a, const std::vector<Condition>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.parent == y.parent && x.values == y.values;
  });
}

}  // namespace

TpeSearcher::TpeSearcher(std::vector<SearchParam> space, std::uint64_t seed, TpeOptions options)
    : space_(order_by_conditions(std::move(space))),
      seed_(seed),
      options_(options),
      startup_(space_, seed) {
  for (std::size_t i = 0; i < space_.size(); ++i) {
    auto group = std::find_if(groups_.begin(), groups_.end(), [&](const Group& g) {
      return same_conditions(space_[g.params.front()].when, space_[i].when);
    });
    if (group == groups_.end()) group = groups_.insert(groups_.end(), Group{});
    group->params.push_back(i);
    group->dims.push_back(parzen_dim(space_[i].domain));
  }
}

void TpeSearcher::observe(std::int32_t number, const ParamMap& params, double loss) {
  Observation o;
  // A trial that produced no number ranks below every one that did.
  o.loss = std::isnan(loss) ? std::numeric_limits<double>::infinity() : loss;
  for (const SearchParam& p : space_) {
    const auto it = params.find(p.name);
    o.x.push_back(it == params.end() ? kAbsent : internal_value(p.domain, it->second));
  }
  observations_[number] = std::move(o);
}

std::optional<ParamMap> TpeSearcher::propose(std::int32_t number) {
  if (observations_.size() < static_cast<std::size_t>(options_.startup_trials))
    return startup_.propose(number);
  std::mt19937_64 rng(
      derive_seed(seed_, {0x747065u /* "tpe" */, static_cast<std::uint64_t>(number)}));
  ParamMap params;
  for (const Group& group : groups_)
    if (is_active(space_[group.params.front()], params)) propose_group(group, rng, &params);
  return params;
}

void TpeSearcher::propose_group(const Group& group, std::mt19937_64& rng, ParamMap* params) const {
  std::vector<const Observation*> seen;  // where the group was active, oldest first
  for (const auto& [number, o] : observations_)
    if (std::none_of(group.params.begin(), group.params.end(),
                     [&](std::size_t p) { return std::isnan(o.x[p]); }))
      seen.push_back(&o);
  std::vector<std::size_t> by_loss(seen.size());
  std::iota(by_loss.begin(), by_loss.end(), 0);
  std::stable_sort(by_loss.begin(), by_loss.end(),
                   [&](std::size_t a, std::size_t b) { return seen[a]->loss < seen[b]->loss; });
  // Optuna's default gamma: the best ceil(n / 10), at most 25, make l(x); the rest g(x).
  const std::size_t n_below = std::min<std::size_t>((seen.size() + 9) / 10, 25);
  std::vector<bool> below(seen.size(), false);
  for (std::size_t r = 0; r < n_below; ++r) below[by_loss[r]] = true;
  std::vector<std::vector<double>> good, bad;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    std::vector<double> x;
    for (std::size_t p : group.params) x.push_back(seen[i]->x[p]);
    (below[i] ? good : bad).push_back(std::move(x));
  }
  const ParzenEstimator l(group.dims, good, options_.parzen);
  const ParzenEstimator g(group.dims, bad, options_.parzen);
  std::vector<double> best;
  double best_score = -std::numeric_limits<double>::infinity();
  for (int c = 0; c < options_.candidates; ++c) {
    std::vector<double> x = l.sample(rng);
    const double score = l.log_pdf(x) - g.log_pdf(x);
    if (best.empty() || score > best_score) best_score = score, best = std::move(x);
  }
  for (std::size_t j = 0; j < group.params.size(); ++j) {
    const SearchParam& p = space_[group.params[j]];
    (*params)[p.name] = external_value(p.domain, best[j]);
  }
}

}  // namespace trellis::coordinator
