#include "coordinator/trial_book.h"

#include <spdlog/spdlog.h>

#include <cmath>

#include "common/seed.h"

namespace trellis::coordinator {

TrialBook::TrialBook(SweepSpec spec, SchedulerOptions options, std::unique_ptr<Searcher> searcher,
                     std::unique_ptr<Scheduler> scheduler)
    : spec_(std::move(spec)),
      options_(std::move(options)),
      searcher_(std::move(searcher)),
      feed_(spec_.lag),
      scheduler_(std::move(scheduler)) {
  progress_.total = spec_.trials;
}

Status TrialBook::next(Decision* out) {
  *out = Decision{};
  for (;;) {
    check_finished();
    if (finished_) {
      out->kind = Decision::Kind::kFinished;
      return Status::Ok();
    }
    if (!pending_.empty()) {
      out->kind = Decision::Kind::kStart;
      out->trial = pending_.front();
      pending_.pop_front();
      return Status::Ok();
    }
    if (budget_spent_ || (spec_.max_concurrent_trials > 0 &&
                          progress_.running >= spec_.max_concurrent_trials)) {
      out->kind = Decision::Kind::kWait;
      return Status::Ok();
    }
    Job job = scheduler_->next(may_start_new());
    if (job.kind == Job::Kind::kWait || job.kind == Job::Kind::kNone) {
      out->kind = Decision::Kind::kWait;
      return Status::Ok();
    }
    const Trial* continued = nullptr;
    if (job.kind == Job::Kind::kContinue) {
      continued = find(job.trial);
      if (continued == nullptr || continued->state != TrialState::kPaused)
        // Asking the scheduler again would return the same job.
        return Status::Error("the " + spec_.scheduler.type +
                             " scheduler asked to continue trial id " + std::to_string(job.trial) +
                             ", which is not paused");
    }
    if (spec_.budget_epochs > 0) {
      std::int64_t cost = job.until_epoch > 0 ? job.until_epoch : options_.max_epochs;
      if (continued != nullptr)
        cost = effective_target(continued->params, job.until_epoch) -
               effective_target(continued->params, continued->target_epoch);
      if (progress_.epochs_assigned + cost > spec_.budget_epochs) {
        spdlog::info("epoch budget: {} of {} epochs assigned, the next job needs {}; starting "
                     "no more work",
                     progress_.epochs_assigned, spec_.budget_epochs, cost);
        budget_spent_ = true;
        continue;
      }
    }
    if (continued != nullptr) {
      out->kind = Decision::Kind::kContinue;
      out->trial = job.trial;
      out->job = std::move(job);
      return Status::Ok();
    }
    const std::int32_t number = progress_.proposed;
    if (!feed_.ready(number, *searcher_)) {
      out->kind = Decision::Kind::kWaitForResults;
      out->number = number;
      return Status::Ok();
    }
    feed_.release(number, searcher_.get());
    std::optional<ParamMap> proposal = searcher_->propose(number);
    if (!proposal) {
      searcher_exhausted_ = true;
      continue;
    }
    out->kind = Decision::Kind::kNew;
    out->number = number;
    out->params = spec_.fixed;
    for (auto& [name, value] : *proposal) out->params[name] = std::move(value);
    out->seed = derive_seed(spec_.seed, {static_cast<std::uint64_t>(number)});
    out->job = std::move(job);
    return Status::Ok();
  }
}

AttemptEnd TrialBook::end_of(std::int64_t trial, bool ok, const std::string& error) const {
  AttemptEnd end;
  const Trial* t = find(trial);
  if (t == nullptr) {
    end.why = error;
    return end;
  }
  end.epoch = effective_target(t->params, t->target_epoch);
  if (!ok) {
    end.why = error;
  } else if (!t->stop_reason.empty()) {
    end.state = TrialState::kPruned;
    end.why = t->stop_reason;
  } else if (end.epoch < epochs_of(t->params)) {
    end.state = TrialState::kPaused;
    end.why = "paused after epoch " + std::to_string(end.epoch) + " for the " +
              spec_.scheduler.type + " scheduler";
  } else {
    end.state = TrialState::kCompleted;
  }
  return end;
}

void TrialBook::check_finished() {
  if (finished_ || progress_.running > 0 || !pending_.empty()) return;
  if (!budget_spent_) {
    const Job job = scheduler_->next(may_start_new());
    if (job.kind == Job::Kind::kNew || job.kind == Job::Kind::kContinue) return;
    if (job.kind == Job::Kind::kWait)
      spdlog::warn("scheduler waits on trials although none runs; ending the sweep");
  }
  finished_ = true;
}

void TrialBook::proposed(std::int64_t trial, const Decision& d) {
  Trial& t = trials_[trial];
  t.number = d.number;
  t.params = d.params;
  t.seed = d.seed;
  t.target_epoch = d.job.until_epoch;
  ++progress_.proposed;
  progress_.epochs_assigned += effective_target(t.params, d.job.until_epoch);
  apply_assigned(trial, d.job, t.params);
}

void TrialBook::continued(const Job& job) {
  Trial& t = trials_.at(job.trial);
  const std::int32_t paused_at = effective_target(t.params, t.target_epoch);
  if (job.donor >= 0) t.params = job.params;
  progress_.epochs_assigned += effective_target(t.params, job.until_epoch) - paused_at;
  t.target_epoch = job.until_epoch;
  t.state = TrialState::kPending;
  t.stop_reason.clear();
  --progress_.paused;
  apply_assigned(job.trial, job, t.params);
}

void TrialBook::started(std::int64_t trial) {
  trials_.at(trial).state = TrialState::kRunning;
  ++progress_.running;
}

std::string TrialBook::reported(std::int64_t trial, std::int32_t epoch,
                                std::optional<double> loss) {
  Trial* t = find(trial);
  if (t == nullptr || !loss) return {};
  t->loss = loss;
  std::string reason = apply_report(trial, epoch, *loss);
  if (reason.empty() || !t->stop_reason.empty()) return {};
  t->stop_reason = reason;
  return reason;
}

void TrialBook::attempt_ended(std::int64_t trial, const AttemptEnd& end,
                              std::optional<double> final_loss) {
  Trial& t = trials_.at(trial);
  --progress_.running;
  if (final_loss && !t.loss) t.loss = final_loss;
  switch (end.state) {
    case TrialState::kPaused:
      ++progress_.paused;
      t.state = TrialState::kPaused;
      apply_paused(trial, t.number, t.params, end.epoch, t.loss);
      return;
    case TrialState::kCompleted: ++progress_.completed; break;
    case TrialState::kPruned: ++progress_.pruned; break;
    default: ++progress_.failed; break;
  }
  forget(trial, end.state == TrialState::kFailed);
}

void TrialBook::requeued(std::int64_t trial, bool failed) {
  --progress_.running;
  if (failed) {
    ++progress_.failed;
    forget(trial, true);
    return;
  }
  trials_.at(trial).state = TrialState::kPending;
  pending_.push_front(trial);
}

void TrialBook::paused_trial_ended(std::int64_t trial, TrialState state) {
  --progress_.paused;
  if (state == TrialState::kFailed) {
    ++progress_.failed;
  } else {
    ++progress_.pruned;
  }
  forget(trial, state == TrialState::kFailed);
}

void TrialBook::forget(std::int64_t trial, bool failed) {
  const auto it = trials_.find(trial);
  if (it == trials_.end()) return;
  apply_ended(trial, it->second.number, it->second.params, failed, it->second.loss);
  trials_.erase(it);
}

void TrialBook::apply_assigned(std::int64_t trial, const Job& job, const ParamMap& params) {
  scheduler_->on_assigned(trial, job, params);
}

std::string TrialBook::apply_report(std::int64_t trial, std::int32_t epoch, double loss) {
  return scheduler_->on_report(trial, epoch, loss);
}

void TrialBook::apply_paused(std::int64_t trial, std::int32_t number, const ParamMap& params,
                             std::int32_t epoch, std::optional<double> loss) {
  feed_.stopped(number, params, loss);
  scheduler_->on_paused(trial, epoch);
}

void TrialBook::apply_ended(std::int64_t trial, std::int32_t number, const ParamMap& params,
                            bool failed, std::optional<double> loss) {
  // A failed trial's last value says nothing about its parameters.
  feed_.stopped(number, params, failed ? std::nullopt : loss);
  scheduler_->on_ended(trial);
}

void TrialBook::restore(std::int64_t trial, Trial t) {
  ++progress_.proposed;
  switch (t.state) {
    case TrialState::kCompleted: ++progress_.completed; return;
    case TrialState::kPruned: ++progress_.pruned; return;
    case TrialState::kFailed: ++progress_.failed; return;
    case TrialState::kPaused: ++progress_.paused; break;
    case TrialState::kPending: pending_.push_back(trial); break;
    case TrialState::kRunning: ++progress_.running; break;
  }
  trials_[trial] = std::move(t);
}

void TrialBook::restored() {
  if (const auto size = searcher_->size(); size && progress_.proposed >= *size)
    searcher_exhausted_ = true;
}

const TrialBook::Trial* TrialBook::find(std::int64_t trial) const {
  const auto it = trials_.find(trial);
  return it == trials_.end() ? nullptr : &it->second;
}

TrialBook::Trial* TrialBook::find(std::int64_t trial) {
  const auto it = trials_.find(trial);
  return it == trials_.end() ? nullptr : &it->second;
}

std::int32_t TrialBook::epochs_of(const ParamMap& params) const {
  const auto it = params.find("epochs");
  double epochs = 0;
  if (it != params.end() && as_double(it->second, &epochs)) return static_cast<std::int32_t>(epochs);
  return options_.max_epochs;
}

std::int32_t TrialBook::effective_target(const ParamMap& params, std::int32_t until_epoch) const {
  const std::int32_t all = epochs_of(params);
  return until_epoch <= 0 ? all : std::min(until_epoch, all);
}

std::optional<double> TrialBook::objective(const MetricMap& metrics) const {
  const auto it = metrics.find(spec_.metric);
  if (it == metrics.end() || !std::isfinite(it->second)) return std::nullopt;
  return options_.maximize ? -it->second : it->second;
}

bool TrialBook::may_start_new() const {
  if (searcher_exhausted_ || budget_spent_ || progress_.proposed >= spec_.trials) return false;
  return spec_.budget_epochs == 0 || progress_.epochs_assigned < spec_.budget_epochs;
}

}  // namespace trellis::coordinator
