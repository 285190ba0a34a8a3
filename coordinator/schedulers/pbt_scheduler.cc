#include "coordinator/schedulers/pbt_scheduler.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "common/seed.h"
#include "common/train_config.h"

namespace trellis::coordinator {
namespace {

constexpr std::uint64_t kExploitTag = 0x706274;  // "pbt"

double uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

ParamValue perturb(const Domain& d, const ParamValue& value, std::mt19937_64& rng) {
  const double factor = (rng() & 1) ? 1.2 : 0.8;
  double v = 0;
  if (d.kind != Domain::Kind::kCategorical && !as_double(value, &v)) return value;
  switch (d.kind) {
    case Domain::Kind::kFloat:
    case Domain::Kind::kLogFloat:
      return std::clamp(v * factor, d.low, std::nextafter(d.high, d.low));
    case Domain::Kind::kInt: {
      double moved = std::round(v * factor);
      if (moved == v) moved = v + (factor > 1 ? 1 : -1);
      return static_cast<std::int64_t>(std::clamp(moved, d.low, d.high));
    }
    case Domain::Kind::kCategorical: {
      const auto at = std::find(d.choices.begin(), d.choices.end(), value);
      const long i = at == d.choices.end() ? 0 : at - d.choices.begin();
      const long n = static_cast<long>(d.choices.size());
      return d.choices[static_cast<std::size_t>(std::clamp(i + (factor > 1 ? 1 : -1), 0L, n - 1))];
    }
  }
  return value;
}

}  // namespace

PbtScheduler::PbtScheduler(SchedulerOptions options)
    : options_(std::move(options)), ordered_space_(order_by_conditions(options_.space)) {}

ParamMap PbtScheduler::explore(const ParamMap& donor, std::uint64_t seed) const {
  std::mt19937_64 rng(seed);
  ParamMap params = donor;
  ParamMap chosen;  // searched parameters decided so far, for the conditions
  for (const SearchParam& p : ordered_space_) {
    if (!is_active(p, chosen)) {
      params.erase(p.name);
      continue;
    }
    const auto it = donor.find(p.name);
    if (it != donor.end() && defines_trained_state(p.name)) {
      chosen[p.name] = it->second;
      continue;
    }
    const bool resample = it == donor.end() || uniform(rng) < options_.spec.resample_probability;
    ParamValue v = resample ? domain_value(p.domain, uniform(rng)) : perturb(p.domain, it->second, rng);
    chosen[p.name] = v;
    params[p.name] = v;
  }
  return params;
}

Job PbtScheduler::decide(std::int64_t trial, const Trial& t) const {
  Job job;
  job.kind = Job::Kind::kContinue;
  job.trial = trial;
  const std::int32_t epoch = t.paused_at;
  job.until_epoch = std::min(options_.max_epochs, epoch + options_.spec.interval);
  std::vector<std::pair<double, std::int64_t>> ranked;
  for (const auto& [id, other] : trials_)
    if (const auto at = other.loss.find(epoch); at != other.loss.end())
      ranked.emplace_back(at->second, id);
  std::sort(ranked.begin(), ranked.end());
  const std::size_t n = ranked.size();
  const auto cut = static_cast<std::size_t>(std::floor(static_cast<double>(n) * options_.spec.quantile));
  if (n < 2 || cut == 0) return job;
  const auto mine = std::find_if(ranked.begin(), ranked.end(), [&](const auto& r) { return r.second == trial; });
  if (mine == ranked.end() || static_cast<std::size_t>(mine - ranked.begin()) < n - cut) return job;
  std::mt19937_64 rng(derive_seed(options_.seed, {kExploitTag, static_cast<std::uint64_t>(trial),
                                                  static_cast<std::uint64_t>(epoch)}));
  const auto& [donor_loss, donor] = ranked[rng() % cut];
  job.donor = donor;
  job.donor_epoch = epoch;
  job.params = explore(trials_.at(donor).params, rng());
  job.reason = "exploit at epoch " + std::to_string(epoch) + ": " +
               describe_objective(options_, mine->first) + " is in the bottom " +
               std::to_string(cut) + " of " + std::to_string(n) +
               "; took the weights and hyperparameters of a top trial (" +
               describe_objective(options_, donor_loss) + ") and explored them";
  return job;
}

Job PbtScheduler::next(bool may_start_new) const {
  Job job;
  if (may_start_new) {
    job.kind = Job::Kind::kNew;
    job.until_epoch = std::min(options_.max_epochs, options_.spec.interval);
    return job;
  }
  const std::pair<std::int64_t, const Trial*> none{-1, nullptr};
  auto behind = none;
  for (const auto& [id, t] : trials_) {
    if (t.paused_at == 0 || t.paused_at >= options_.max_epochs) continue;
    if (behind.second == nullptr || std::pair(t.paused_at, id) < std::pair(behind.second->paused_at, behind.first))
      behind = {id, &t};
  }
  if (behind.second != nullptr) return decide(behind.first, *behind.second);
  job.kind = active_ > 0 ? Job::Kind::kWait : Job::Kind::kNone;
  return job;
}

void PbtScheduler::on_assigned(std::int64_t trial, const Job& job, const ParamMap& params) {
  Trial& t = trials_[trial];
  if (!t.active) ++active_;
  t.active = true;
  t.paused_at = 0;
  t.target = job.until_epoch;
  t.params = job.donor >= 0 ? job.params : params;
}

std::string PbtScheduler::on_report(std::int64_t trial, std::int32_t epoch, double loss) {
  trials_[trial].loss[epoch] = loss;
  return {};
}

void PbtScheduler::on_paused(std::int64_t trial, std::int32_t epoch) {
  Trial& t = trials_[trial];
  if (t.active) --active_;
  t.active = false;
  t.paused_at = epoch;
}

void PbtScheduler::on_ended(std::int64_t trial) {
  Trial& t = trials_[trial];
  if (t.active) --active_;
  t.active = false;
  t.paused_at = 0;
}

std::string PbtScheduler::paused_reason(std::int64_t trial) const {
  const auto it = trials_.find(trial);
  return "paused after epoch " + std::to_string(it == trials_.end() ? 0 : it->second.paused_at) +
         " when the epoch budget ran out";
}

}  // namespace trellis::coordinator
