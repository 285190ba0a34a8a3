#include "coordinator/sweep_status.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

#include "common/sweep_spec.h"
#include "common/train_config.h"
#include "coordinator/exporter.h"
#include "coordinator/store_rows.h"

namespace trellis::coordinator {
namespace {

using nlohmann::json;

// What the spec says about the budget: how many epochs a trial gets, by its parameters, and
// how many an unproposed trial may get (`epochs` searched: the most it can draw).
struct EpochRule {
  std::int32_t default_epochs = TrainConfig().epochs;
  std::int32_t unproposed = TrainConfig().epochs;
  std::int64_t budget_epochs = 0;

  std::int32_t of(const ParamMap& params) const {
    const auto it = params.find("epochs");
    double epochs = 0;
    if (it != params.end() && as_double(it->second, &epochs)) return static_cast<std::int32_t>(epochs);
    return default_epochs;
  }
};

EpochRule epoch_rule(const SweepSpec& spec) {
  EpochRule rule;
  TrainConfig fixed;
  if (train_config_from_params(spec.fixed, &fixed).ok()) rule.default_epochs = fixed.epochs;
  if (spec.scheduler.max_epochs > 0) rule.default_epochs = spec.scheduler.max_epochs;
  rule.unproposed = rule.of(spec.fixed);
  for (const SearchParam& p : spec.space) {
    if (p.name != "epochs") continue;
    double most = p.domain.high;
    for (const ParamValue& v : p.domain.choices) {
      double d = 0;
      if (as_double(v, &d)) most = std::max(most, d);
    }
    rule.unproposed = static_cast<std::int32_t>(most);
  }
  rule.budget_epochs = spec.budget_epochs;
  return rule;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The groups as the events since the coordinator started tell them.
Status replay_groups(ExperimentStore& store, const SweepStatus& status,
                     const std::map<std::int64_t, std::int32_t>& number_of,
                     std::vector<GroupActivity>* out) {
  std::vector<EventRecord> events;
  if (Status s = store.list_events(status.experiment.id, status.coordinator.seq - 1, &events);
      !s.ok())
    return s;
  std::map<std::string, GroupActivity> groups;
  const auto idle = [&](std::int64_t trial) {
    for (auto& [name, g] : groups)
      if (g.trial == trial) g.trial = -1, g.number = -1, g.attempt = 0, g.epoch = 0, g.until_epoch = 0;
  };
  for (const EventRecord& e : events) {
    const json body = json::parse(e.body, nullptr, false);
    const auto field = [&](const char* key) {
      return body.is_object() ? body.value(key, std::int32_t{0}) : 0;
    };
    if (e.kind == "group_joined" || e.kind == "group_readopted") {
      GroupActivity& g = groups[e.group];
      g.group = e.group;
      g.since = e.created_at;
      if (e.kind == "group_readopted") g.trial = e.trial_id, g.attempt = field("attempt");
    } else if (e.kind == "attempt_started") {
      idle(e.trial_id);
      GroupActivity& g = groups[e.group];
      g.group = e.group;
      g.trial = e.trial_id;
      g.attempt = field("attempt");
      g.until_epoch = field("cut_after_epoch") > 0 ? field("cut_after_epoch") : field("until_epoch");
      g.epoch = field("resume_epoch");  // where it continues, until it reports
      g.since = e.created_at;
    } else if ((e.kind == "trial_ended" || e.kind == "trial_paused") && !e.group.empty()) {
      idle(e.trial_id);
    } else if (e.kind == "trial_requeued") {
      idle(e.trial_id);
    } else if (e.kind == "group_lost" || e.kind == "group_released") {
      groups.erase(e.group);
    } else if (e.kind == "sweep_finished" || e.kind == "sweep_stopped") {
      groups.clear();
    }
  }
  out->clear();
  for (auto& [name, g] : groups) {
    if (g.trial >= 0) {
      if (const auto it = number_of.find(g.trial); it != number_of.end()) g.number = it->second;
      std::int32_t reported = 0;
      if (Status s = store.last_epoch(g.trial, g.attempt, &reported); !s.ok()) return s;
      g.epoch = std::max(g.epoch, reported);
    }
    out->push_back(std::move(g));
  }
  return Status::Ok();
}

std::string trials_by_state(const SweepStatus& st) {
  std::string out;
  for (const char* state : {"completed", "running", "paused", "pending", "pruned", "failed"}) {
    const auto it = st.by_state.find(state);
    if (it != st.by_state.end()) out += ", " + std::to_string(it->second) + " " + state;
  }
  return out;
}

std::string best_text(const SweepStatus& st) {
  if (!st.best_trial) return "none yet";
  return "trial " + std::to_string(*st.best_trial) + ", " + st.experiment.metric + " " +
         format_number(st.best_value);
}

std::string epochs_text(const SweepStatus& st) {
  return std::to_string(st.epochs_done) + " of " + (st.budget_is_bound ? "at most " : "") +
         std::to_string(st.epochs_budget);
}

}  // namespace

std::string format_duration(double seconds) {
  const auto s = static_cast<long long>(std::llround(std::max(0.0, seconds)));
  char buf[64];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s % 3600 / 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

Status sweep_status(ExperimentStore& store, const ExperimentRecord& experiment, SweepStatus* out) {
  *out = SweepStatus();
  out->experiment = experiment;
  SweepSpec spec;
  // The dataset is the workers' business: this may run where its files are not.
  const bool have_spec = parse_sweep_spec(experiment.spec_yaml, experiment.name + " (in the store)",
                                          &spec, DatasetCheck::kOnTheWorkers)
                             .ok();
  const EpochRule rule = have_spec ? epoch_rule(spec) : EpochRule();
  out->scheduler = have_spec ? spec.scheduler.type : "";
  out->budget_is_bound = out->scheduler == "median" || out->scheduler == "asha" ||
                         out->scheduler == "hyperband";
  std::vector<TrialSummary> trials;
  if (Status s = store.trial_summaries(experiment.id, &trials); !s.ok()) return s;
  out->trials = static_cast<int>(trials.size());
  out->planned = have_spec ? std::max(spec.trials, out->trials) : out->trials;
  std::map<std::int64_t, std::int32_t> number_of;
  const bool maximize = experiment.mode == "max";
  for (const TrialSummary& t : trials) {
    number_of[t.id] = t.number;
    ++out->by_state[to_string(t.state)];
    out->epochs_done += t.epochs_run;
    out->epochs_budget += is_terminal(t.state) ? t.epochs_run : std::max(t.epochs_run, rule.of(t.params));
    const MetricMap* source[] = {&t.final_metrics, &t.last_metrics};
    for (const MetricMap* m : source) {
      const auto it = m->find(experiment.metric);
      if (it == m->end() || !std::isfinite(it->second)) continue;
      if (!out->best_trial || (maximize ? it->second > out->best_value : it->second < out->best_value))
        out->best_trial = t.number, out->best_value = it->second;
      break;
    }
  }
  const bool finished = experiment.state == "completed";
  if (!finished)
    out->epochs_budget += static_cast<std::int64_t>(out->planned - out->trials) * rule.unproposed;
  if (rule.budget_epochs > 0)
    out->epochs_budget = std::max(out->epochs_done, std::min(out->epochs_budget, rule.budget_epochs));
  if (finished) out->epochs_budget = out->epochs_done, out->budget_is_bound = false;

  if (Status s = coordinator_presence(store, experiment, &out->coordinator); !s.ok()) return s;
  std::optional<EventRecord> stopped;
  if (Status s = store.last_event(experiment.id, "sweep_stopped", &stopped); !s.ok()) return s;
  if (stopped && experiment.state == "failed") {
    const json body = json::parse(stopped->body, nullptr, false);
    out->stopped_reason = body.is_object() ? body.value("reason", std::string()) : stopped->body;
  }
  if (out->coordinator.state != CoordinatorPresence::State::kServing) return Status::Ok();
  if (Status s = replay_groups(store, *out, number_of, &out->groups); !s.ok()) return s;
  // The rate of this coordinator's run: a sweep resumed after a day off is not slow.
  std::int64_t reports = 0;
  if (Status s = store.count_reports(experiment.id, out->coordinator.after_report, &reports); !s.ok())
    return s;
  double since = 0;
  const double up = parse_store_time(out->coordinator.started_at, &since) ? now_seconds() - since : 0;
  if (reports > 0 && up > 0) {
    out->epochs_per_second = static_cast<double>(reports) / up;
    out->seconds_left =
        static_cast<double>(out->epochs_budget - out->epochs_done) / out->epochs_per_second;
  }
  return Status::Ok();
}

void print_sweep_status(const SweepStatus& st, std::ostream& out) {
  out << "experiment " << st.experiment.name << ": " << st.experiment.state << ", " << st.trials
      << " trial(s) of " << st.planned << " planned" << trials_by_state(st) << "\n";
  if (!st.stopped_reason.empty()) out << "stopped:     " << st.stopped_reason << "\n";
  out << "coordinator: " << st.coordinator.describe() << "\n";
  if (st.coordinator.state == CoordinatorPresence::State::kServing) {
    out << "groups:      " << st.groups.size() << " connected\n";
    for (const GroupActivity& g : st.groups) {
      out << "  " << g.group << "  ";
      if (g.trial < 0) {
        out << "idle\n";
        continue;
      }
      out << "trial " << g.number << " (attempt " << g.attempt << "), epoch " << g.epoch;
      if (g.until_epoch > 0) out << " of " << g.until_epoch;
      out << ", since " << g.since << "\n";
    }
  }
  out << "epochs:      " << epochs_text(st);
  if (st.experiment.state == "completed")
    out << " (the sweep finished: every epoch its trials trained)";
  else if (st.budget_is_bound)
    out << " (" << st.scheduler
        << " stops trials early: the budget counts every unfinished trial's full epochs, and "
           "falls as trials are stopped)";
  else
    out << " (trials x epochs)";
  out << "\n";
  out << "best:        " << best_text(st) << "\n";
  out << "time left:   ";
  if (st.experiment.state == "completed") out << "none: the sweep finished\n";
  else if (st.coordinator.state != CoordinatorPresence::State::kServing)
    out << "unknown: no coordinator is serving it here\n";
  else if (!st.seconds_left) out << "unknown: no epoch reported since the coordinator started\n";
  else {
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.3g", st.epochs_per_second);
    out << (st.budget_is_bound ? "at most about " : "about ") << format_duration(*st.seconds_left)
        << ", at the " << rate << " epochs/s observed since the coordinator started\n";
  }
}

void print_sweep_line(const SweepStatus& st, std::ostream& out) {
  std::string states = trials_by_state(st);
  if (!states.empty()) states = " (" + states.substr(2) + ")";
  out << st.experiment.name << "  " << st.experiment.state << "  " << st.trials << "/" << st.planned
      << " trials" << states << "  epochs " << epochs_text(st) << "  best " << best_text(st)
      << "  "
      << (st.coordinator.state == CoordinatorPresence::State::kServing
              ? "served by pid " + std::to_string(st.coordinator.pid)
              : std::string("not served"))
      << "\n";
}

}  // namespace trellis::coordinator
