#include "coordinator/schedulers/hyperband_scheduler.h"

#include <algorithm>
#include <cmath>

namespace trellis::coordinator {

std::vector<HyperbandBracket> hyperband_brackets(int max_epochs, int min_epochs,
                                                 int reduction_factor) {
  const long eta = std::max(2, reduction_factor);
  const long r = std::max(1, min_epochs);
  int s_max = 0;
  for (long e = r * eta; e <= max_epochs; e *= eta) ++s_max;
  std::vector<HyperbandBracket> brackets;
  for (int s = s_max; s >= 0; --s) {
    long eta_s = 1;
    for (int i = 0; i < s; ++i) eta_s *= eta;
    // Integer form of ceil((s_max+1)/(s+1) * eta^s).
    const long n = ((s_max + 1) * eta_s + s) / (s + 1);
    HyperbandBracket b;
    b.s = s;
    long trials = n, scale = 1;
    for (int i = 0; i <= s; ++i) {
      // R*eta^(i-s) epochs, never below r, exact when R = r*eta^s_max.
      const long epochs = std::max<long>(r, std::lround(max_epochs * static_cast<double>(scale) /
                                                        static_cast<double>(eta_s)));
      b.rungs.push_back({static_cast<std::int32_t>(trials), static_cast<std::int32_t>(epochs)});
      trials /= eta;
      scale *= eta;
    }
    brackets.push_back(std::move(b));
  }
  return brackets;
}

HyperbandScheduler::HyperbandScheduler(SchedulerOptions options)
    : options_(std::move(options)),
      shapes_(hyperband_brackets(options_.max_epochs, options_.spec.min_epochs,
                                 options_.spec.reduction_factor)) {}

const HyperbandBracket& HyperbandScheduler::shape(std::size_t bracket) const {
  return shapes_[bracket % shapes_.size()];
}

std::size_t HyperbandScheduler::open_bracket() const {
  for (std::size_t b = 0; b < brackets_.size(); ++b)
    if (static_cast<std::int32_t>(brackets_[b].members.size()) < shape(b).rungs[0].trials) return b;
  return brackets_.size();
}

std::int64_t HyperbandScheduler::promotion(std::size_t bracket, std::size_t i, bool closed,
                                           double* loss, std::size_t* rank) const {
  const HyperbandBracket& b = shape(bracket);
  const std::int32_t epochs = b.rungs[i].epochs;
  std::vector<std::pair<double, std::int64_t>> ranked;
  std::size_t in_rung = 0;
  for (std::int64_t id : brackets_[bracket].members) {
    const Trial& t = trials_.at(id);
    if (t.target < epochs) continue;  // never reached this rung
    ++in_rung;
    const auto at = t.loss.find(epochs);
    if (at != t.loss.end()) {
      ranked.emplace_back(at->second, id);
    } else if (!t.ended) {
      return -1;  // still running towards the rung: synchronous halving waits for it
    }
  }
  // Rung 0 is complete only once the bracket stopped taking trials.
  if (i == 0 && !closed && static_cast<std::int32_t>(in_rung) < b.rungs[0].trials) return -1;
  std::sort(ranked.begin(), ranked.end());
  const auto keep = std::min<std::size_t>(ranked.size(), static_cast<std::size_t>(b.rungs[i + 1].trials));
  for (std::size_t k = 0; k < keep; ++k) {
    const Trial& t = trials_.at(ranked[k].second);
    if (t.paused && t.target == epochs) {
      *loss = ranked[k].first;
      *rank = k + 1;
      return ranked[k].second;
    }
  }
  return -1;
}

Job HyperbandScheduler::next(bool may_start_new) const {
  Job job;
  const std::size_t open = open_bracket();
  for (std::size_t bracket = 0; bracket < brackets_.size(); ++bracket) {
    const HyperbandBracket& b = shape(bracket);
    const bool closed = bracket < open || !may_start_new;
    for (std::size_t i = 0; i + 1 < b.rungs.size(); ++i) {
      double loss = 0;
      std::size_t rank = 0;
      const std::int64_t trial = promotion(bracket, i, closed, &loss, &rank);
      if (trial < 0) continue;
      job.kind = Job::Kind::kContinue;
      job.trial = trial;
      job.until_epoch = b.rungs[i + 1].epochs;
      job.reason = "bracket s=" + std::to_string(b.s) + ": promoted from epoch " +
                   std::to_string(b.rungs[i].epochs) + " to " + std::to_string(job.until_epoch) +
                   ", " + describe_objective(options_, loss) + " ranks " + std::to_string(rank) +
                   " (keeps " + std::to_string(b.rungs[i + 1].trials) + ")";
      return job;
    }
  }
  if (may_start_new) {
    job.kind = Job::Kind::kNew;
    job.until_epoch = shape(open).rungs[0].epochs;
    return job;
  }
  job.kind = active_ > 0 ? Job::Kind::kWait : Job::Kind::kNone;
  return job;
}

void HyperbandScheduler::on_assigned(std::int64_t trial, const Job& job, const ParamMap&) {
  auto [it, inserted] = trials_.try_emplace(trial);
  Trial& t = it->second;
  if (inserted) {
    t.bracket = open_bracket();
    if (t.bracket == brackets_.size()) brackets_.emplace_back();
    brackets_[t.bracket].members.push_back(trial);
  }
  if (!t.active) ++active_;
  t.active = true;
  t.paused = false;
  t.target = std::max(t.target, job.until_epoch);
}

std::string HyperbandScheduler::on_report(std::int64_t trial, std::int32_t epoch, double loss) {
  if (auto it = trials_.find(trial); it != trials_.end()) it->second.loss[epoch] = loss;
  return {};
}

void HyperbandScheduler::on_paused(std::int64_t trial, std::int32_t) {
  Trial& t = trials_.at(trial);
  if (t.active) --active_;
  t.active = false;
  t.paused = true;
}

void HyperbandScheduler::on_ended(std::int64_t trial) {
  auto it = trials_.find(trial);
  if (it == trials_.end()) return;
  Trial& t = it->second;
  if (t.active) --active_;
  t.active = false;
  t.paused = false;
  t.ended = true;
}

std::string HyperbandScheduler::paused_reason(std::int64_t trial) const {
  const auto it = trials_.find(trial);
  if (it == trials_.end()) return "paused";
  const Trial& t = it->second;
  const HyperbandBracket& b = shape(t.bracket);
  for (std::size_t i = 0; i + 1 < b.rungs.size(); ++i) {
    if (b.rungs[i].epochs != t.target) continue;
    return "bracket s=" + std::to_string(b.s) + ": not among the best " +
           std::to_string(b.rungs[i + 1].trials) + " at epoch " +
           std::to_string(b.rungs[i].epochs) + ", so not promoted";
  }
  return "paused at epoch " + std::to_string(t.target);
}

}  // namespace trellis::coordinator
