#include "coordinator/schedulers/asha_scheduler.h"

#include <algorithm>

namespace trellis::coordinator {

std::vector<std::int32_t> asha_rungs(int min_epochs, int reduction_factor, int max_epochs) {
  std::vector<std::int32_t> rungs;
  for (long e = std::max(1, min_epochs); e < max_epochs; e *= std::max(2, reduction_factor))
    rungs.push_back(static_cast<std::int32_t>(e));
  rungs.push_back(max_epochs);
  return rungs;
}

AshaScheduler::AshaScheduler(SchedulerOptions options)
    : options_(std::move(options)),
      rungs_(asha_rungs(options_.spec.min_epochs, options_.spec.reduction_factor,
                        options_.max_epochs)),
      results_(rungs_.size() - 1) {}

std::vector<std::pair<double, std::int64_t>> AshaScheduler::top_of(std::size_t k) const {
  std::vector<std::pair<double, std::int64_t>> ranked;
  ranked.reserve(results_[k].size());
  for (const auto& [trial, loss] : results_[k]) ranked.emplace_back(loss, trial);
  const std::size_t keep = ranked.size() / static_cast<std::size_t>(options_.spec.reduction_factor);
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<long>(keep), ranked.end());
  ranked.resize(keep);
  return ranked;
}

Job AshaScheduler::next(bool may_start_new) const {
  Job job;
  for (std::size_t k = results_.size(); k-- > 0;) {
    const auto top = top_of(k);
    for (std::size_t i = 0; i < top.size(); ++i) {
      const auto it = trials_.find(top[i].second);
      if (it == trials_.end() || !it->second.paused || it->second.target > rungs_[k]) continue;
      job.kind = Job::Kind::kContinue;
      job.trial = top[i].second;
      job.until_epoch = rungs_[k + 1];
      job.reason = "promoted from epoch " + std::to_string(rungs_[k]) + " to " +
                   std::to_string(rungs_[k + 1]) + ": " + describe_objective(options_, top[i].first) +
                   " ranks " + std::to_string(i + 1) + " of " + std::to_string(results_[k].size()) +
                   " (top 1/" + std::to_string(options_.spec.reduction_factor) + ")";
      return job;
    }
  }
  if (may_start_new) {
    job.kind = Job::Kind::kNew;
    job.until_epoch = rungs_.front();
    return job;
  }
  job.kind = active_ > 0 ? Job::Kind::kWait : Job::Kind::kNone;
  return job;
}

void AshaScheduler::on_assigned(std::int64_t trial, const Job& job, const ParamMap&) {
  Trial& t = trials_[trial];
  if (!t.active) ++active_;
  t.active = true;
  t.paused = false;
  t.target = job.until_epoch;
}

std::string AshaScheduler::on_report(std::int64_t trial, std::int32_t epoch, double loss) {
  for (std::size_t k = 0; k < results_.size(); ++k)
    if (rungs_[k] == epoch) results_[k][trial] = loss;
  return {};
}

void AshaScheduler::on_paused(std::int64_t trial, std::int32_t) {
  Trial& t = trials_[trial];
  if (t.active) --active_;
  t.active = false;
  t.paused = true;
}

void AshaScheduler::on_ended(std::int64_t trial) {
  Trial& t = trials_[trial];
  if (t.active) --active_;
  t.active = false;
  t.paused = false;
}

std::string AshaScheduler::paused_reason(std::int64_t trial) const {
  for (std::size_t k = results_.size(); k-- > 0;) {
    const auto it = results_[k].find(trial);
    if (it == results_[k].end()) continue;
    const auto top = top_of(k);
    std::string reason = "not promoted past epoch " + std::to_string(rungs_[k]) + ": " +
                         describe_objective(options_, it->second) + " is outside the top 1/" +
                         std::to_string(options_.spec.reduction_factor) + " of the " +
                         std::to_string(results_[k].size()) + " trials at that rung";
    if (!top.empty()) reason += " (cutoff " + describe_objective(options_, top.back().first) + ")";
    return reason;
  }
  return "paused before its first rung";
}

}  // namespace trellis::coordinator
