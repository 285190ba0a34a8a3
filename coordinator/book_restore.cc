#include "coordinator/book_restore.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <deque>
#include <map>

#include "coordinator/params_codec.h"

namespace trellis::coordinator {
namespace {

// An experiment without a story: its trials in number order, each as one job through its final
// target, with the metric's series as its reports.
Status replay_trials(ExperimentStore* store, std::int64_t experiment_id, const std::string& metric,
                     const std::vector<TrialRecord>& trials, TrialBook* book) {
  if (trials.empty()) return Status::Ok();
  // `series` is null for a trial the store has no series of.
  const auto replay_trial = [&](const TrialRecord& t, const MetricSeries* series) {
    Job job;
    job.kind = Job::Kind::kNew;
    job.until_epoch = t.target_epoch;
    book->apply_assigned(t.id, job, t.params);
    std::optional<double> last;
    if (series != nullptr) {
      if (const auto m = series->find(metric); m != series->end()) {
        for (const auto& [epoch, value] : m->second) {
          const std::optional<double> loss = book->objective({{metric, value}});
          if (!loss) continue;
          last = loss;
          (void)book->apply_report(t.id, epoch, *loss);
        }
      }
    }
    const std::int32_t reached = book->effective_target(t.params, t.target_epoch);
    if (t.state == TrialState::kPaused) book->apply_paused(t.id, t.number, t.params, reached, last);
    if (t.state == TrialState::kCompleted || t.state == TrialState::kPruned ||
        t.state == TrialState::kFailed)
      book->apply_ended(t.id, t.number, t.params, t.state == TrialState::kFailed, last);
    book->add_epochs_assigned(reached);
  };
  // The series stream in trial number order, as `trials` are listed, skipping trials without
  // one: the two are walked together, so only one trial's series is held at a time.
  std::size_t next = 0;
  Status s = store->for_each_series(
      experiment_id, [&](std::int64_t trial_id, MetricSeries&& series) {
        for (; next < trials.size() && trials[next].id != trial_id; ++next)
          replay_trial(trials[next], nullptr);
        if (next == trials.size()) {
          return Status::Error("replay: the store has a series of trial id " +
                               std::to_string(trial_id) +
                               " out of the order of its trials (or of no trial listed)");
        }
        replay_trial(trials[next++], &series);
        return Status::Ok();
      });
  if (!s.ok()) return s;
  for (; next < trials.size(); ++next) replay_trial(trials[next], nullptr);
  return Status::Ok();
}

// The story, a page at a time. `carried`: every trial that has not ended, as its story tells
// it (no seed); `pending`: the requeued ones, in the order the live coordinator would run them.
Status replay_story(ExperimentStore* store, std::int64_t experiment_id,
                    const std::vector<TrialRecord>& trials, TrialBook* book,
                    std::map<std::int64_t, TrialBook::Trial>* carried,
                    std::deque<std::int64_t>* pending) {
  constexpr std::size_t kPage = 8192;
  std::map<std::int32_t, std::int64_t> id_of;  // number -> id, for PBT donors
  for (const TrialRecord& t : trials) id_of[t.number] = t.id;
  struct Replayed {
    TrialBook::Trial trial;
    std::int32_t running_attempt = 0;  // the attempt whose reports the live path heard
  };
  const auto unqueue = [&](std::int64_t id) {
    pending->erase(std::remove(pending->begin(), pending->end(), id), pending->end());
  };
  std::map<std::int64_t, Replayed> live;  // trials that have not ended
  std::vector<ReportRecord> reports;
  std::size_t next_report = 0;
  std::int64_t last_report = 0;
  bool reports_done = false;
  // Applies the reports committed up to `up_to` (all when < 0).
  const auto feed_reports = [&](std::int64_t up_to) -> Status {
    for (;;) {
      if (next_report == reports.size()) {
        if (reports_done) return Status::Ok();
        if (Status s = store->list_reports(experiment_id, last_report, kPage, &reports); !s.ok())
          return s;
        next_report = 0;
        if (reports.size() < kPage) reports_done = true;
        if (reports.empty()) return Status::Ok();
      }
      const ReportRecord& r = reports[next_report];
      if (up_to >= 0 && r.id > up_to) return Status::Ok();
      ++next_report;
      last_report = r.id;
      const auto it = live.find(r.trial_id);
      if (it == live.end() || it->second.running_attempt != r.attempt) continue;
      const std::optional<double> loss = book->objective(r.metrics);
      if (!loss) continue;
      it->second.trial.loss = loss;
      std::string reason = book->apply_report(r.trial_id, r.epoch, *loss);
      if (!reason.empty() && it->second.trial.stop_reason.empty())
        it->second.trial.stop_reason = std::move(reason);
    }
  };
  const auto loss_in = [](const nlohmann::json& data) -> std::optional<double> {
    if (const auto it = data.find("objective"); it != data.end() && it->is_number())
      return it->get<double>();
    return std::nullopt;
  };
  std::vector<EventRecord> events;
  std::int64_t after = 0;
  do {
    if (Status s = store->list_events(experiment_id, after, &events, kPage); !s.ok()) return s;
    for (const EventRecord& e : events) {
      after = e.seq;
      if (Status s = feed_reports(e.after_report); !s.ok()) return s;
      const nlohmann::json data = nlohmann::json::parse(e.body, nullptr, false);
      if (data.is_discarded())
        return Status::Error("event " + std::to_string(e.seq) + " (" + e.kind +
                             ") has a body that is not JSON: " + e.body);
      const auto it = live.find(e.trial_id);
      if (e.kind == "trial_proposed") {
        Replayed& t = live[e.trial_id];
        t.trial.number = data.value("number", 0);
        if (Status s = params_from_object(data.at("params"), &t.trial.params); !s.ok())
          return s.With("event " + std::to_string(e.seq));
        Job job;
        job.kind = Job::Kind::kNew;
        job.until_epoch = data.value("until_epoch", 0);
        t.trial.target_epoch = job.until_epoch;
        book->apply_assigned(e.trial_id, job, t.trial.params);
        book->add_epochs_assigned(book->effective_target(t.trial.params, job.until_epoch));
        continue;
      }
      if (it == live.end()) continue;  // an event of a trial that ended, or of no trial
      Replayed& t = it->second;
      if (e.kind == "attempt_started") {
        t.running_attempt = data.value("attempt", 0);
        t.trial.state = TrialState::kRunning;
        unqueue(e.trial_id);
      } else if (e.kind == "trial_paused") {
        t.running_attempt = 0;
        t.trial.state = TrialState::kPaused;
        book->apply_paused(e.trial_id, t.trial.number, t.trial.params, data.value("epoch", 0), loss_in(data));
      } else if (e.kind == "trial_promoted" || e.kind == "trial_exploited") {
        Job job;
        job.kind = Job::Kind::kContinue;
        job.trial = e.trial_id;
        job.until_epoch = data.value("until_epoch", 0);
        std::int32_t from = data.value("from_epoch", 0);
        if (e.kind == "trial_exploited") {
          from = data.value("epoch", 0);
          const auto donor = id_of.find(data.value("donor", -1));
          job.donor = donor == id_of.end() ? -1 : donor->second;
          job.donor_epoch = data.value("donor_epoch", 0);
          if (Status s = params_from_object(data.at("params"), &job.params); !s.ok())
            return s.With("event " + std::to_string(e.seq));
          t.trial.params = job.params;
        }
        job.reason = data.value("reason", "");
        t.trial.stop_reason.clear();
        t.trial.state = TrialState::kPending;
        t.trial.target_epoch = job.until_epoch;
        book->apply_assigned(e.trial_id, job, t.trial.params);
        book->add_epochs_assigned(book->effective_target(t.trial.params, job.until_epoch) - from);
      } else if (e.kind == "trial_requeued") {
        t.running_attempt = 0;
        if (data.value("failed", false)) {
          book->apply_ended(e.trial_id, t.trial.number, t.trial.params, /*failed=*/true, t.trial.loss);
          live.erase(it);
        } else {
          t.trial.state = TrialState::kPending;
          pending->push_front(e.trial_id);  // as TrialBook::requeued
        }
      } else if (e.kind == "trial_ended") {
        book->apply_ended(e.trial_id, t.trial.number, t.trial.params, data.value("state", "") == "failed",
                           loss_in(data));
        unqueue(e.trial_id);
        live.erase(it);
      }
    }
  } while (events.size() == kPage);
  if (Status s = feed_reports(-1); !s.ok()) return s;
  for (auto& [id, t] : live) (*carried)[id] = std::move(t.trial);
  return Status::Ok();
}

}  // namespace

Status restore_book(ExperimentStore* store, const ExperimentRecord& experiment,
                    const std::string& metric, TrialBook* book, std::vector<LeftRunning>* running) {
  std::vector<TrialRecord> trials;
  if (Status s = store->list_trials(experiment.id, &trials); !s.ok()) return s;
  std::vector<EventRecord> first;
  if (Status s = store->list_events(experiment.id, 0, &first, 1); !s.ok()) return s;
  // An experiment begun before schema 3 has no story of its start: the trials are replayed.
  bool has_story = false;
  if (!first.empty() && first[0].kind == "coordinator_started") {
    const nlohmann::json started = nlohmann::json::parse(first[0].body, nullptr, false);
    has_story = started.is_object() && started.value("resumed", true) == false;
  }
  std::map<std::int64_t, TrialBook::Trial> carried;
  std::deque<std::int64_t> pending;
  if (Status s = has_story ? replay_story(store, experiment.id, trials, book, &carried, &pending)
                          : replay_trials(store, experiment.id, metric, trials, book); !s.ok())
    return s;
  // With a story, each trial's state is the story's; its row must agree (both are written in
  // one batch), and a row that does not is a store to look at, not one to run on.
  if (has_story) {
    for (const TrialRecord& t : trials) {
      const auto c = carried.find(t.id);
      const bool ended = t.state == TrialState::kCompleted || t.state == TrialState::kPruned ||
                         t.state == TrialState::kFailed;
      if (ended ? c == carried.end() : (c != carried.end() && c->second.state == t.state))
        continue;
      return Status::Error(
          "trial " + std::to_string(t.number) + " of experiment '" + experiment.name +
          "' is " + to_string(t.state) + " in the trials table but " +
          (c == carried.end() ? std::string("ended") : to_string(c->second.state)) +
          " in its events: the store " + store->path() + " is inconsistent");
    }
  }
  // Requeued trials first, in the order the live coordinator would have run them.
  std::map<std::int64_t, const TrialRecord*> by_id;
  for (const TrialRecord& t : trials) by_id[t.id] = &t;
  std::vector<const TrialRecord*> order;
  for (const std::int64_t id : pending)
    if (const auto it = by_id.find(id); it != by_id.end()) {
      order.push_back(it->second);
      by_id.erase(it);
    }
  for (const TrialRecord& t : trials)
    if (by_id.count(t.id) != 0) order.push_back(&t);
  for (const TrialRecord* record : order) {
    const TrialRecord& t = *record;
    if (t.state == TrialState::kRunning) {
      const nlohmann::json provenance = nlohmann::json::parse(t.provenance, nullptr, false);
      running->push_back({t.id, t.attempt, t.group,
                          provenance.is_object() ? provenance.value("key", "") : ""});
    }
    TrialBook::Trial live;
    if (const auto c = carried.find(t.id); c != carried.end()) {
      live = std::move(c->second);
    } else {
      live.state = t.state;
      live.params = t.params;
      live.target_epoch = t.target_epoch;
    }
    live.number = t.number;
    live.seed = t.seed;
    book->restore(t.id, std::move(live));
  }
  book->restored();
  return Status::Ok();
}

}  // namespace trellis::coordinator
