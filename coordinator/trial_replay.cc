#include "coordinator/trial_replay.h"

#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

namespace trellis::coordinator {
namespace {

using nlohmann::json;

void flatten(const json& value, const std::string& prefix, std::map<std::string, std::string>* out) {
  if (value.is_object() && !value.empty()) {
    for (const auto& [key, item] : value.items())
      flatten(item, prefix.empty() ? key : prefix + "." + key, out);
    return;
  }
  (*out)[prefix] = value.dump();
}

json parse_object(const std::string& text) {
  json j = json::parse(text.empty() ? "{}" : text, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

bool same_bits(double a, double b) {
  std::uint64_t x = 0, y = 0;
  std::memcpy(&x, &a, sizeof x);
  std::memcpy(&y, &b, sizeof y);
  return x == y;
}

// epoch -> metric -> value, without timing metrics.
std::map<std::int32_t, MetricMap> by_epoch(const MetricSeries& series) {
  std::map<std::int32_t, MetricMap> out;
  for (const auto& [metric, points] : series) {
    if (is_timing_metric(metric)) continue;
    for (const auto& [epoch, value] : points) out[epoch][metric] = value;
  }
  return out;
}

}  // namespace

bool is_timing_metric(const std::string& metric) {
  return metric == "epoch_s" || metric == "samples_per_s";
}

bool explains_difference(const std::string& field) {
  for (const char* prefix : {"dataset_", "split.", "build.", "blas.", "eigen_threads",
                             "allreduce_bucket_bytes", "rank_layout."})
    if (field.rfind(prefix, 0) == 0) return true;
  return false;
}

Status plan_replay(ExperimentStore& store, const std::string& name, std::int32_t number,
                   ReplayPlan* out) {
  ReplayPlan plan;
  std::optional<ExperimentRecord> experiment;
  if (Status s = store.find_experiment(name, &experiment); !s.ok()) return s;
  if (!experiment) return Status::Error("no experiment '" + name + "' in store " + store.path());
  plan.experiment = *experiment;
  std::vector<TrialRecord> trials;
  if (Status s = store.list_trials(experiment->id, &trials); !s.ok()) return s;
  std::map<std::int64_t, std::int32_t> number_of;
  for (const TrialRecord& t : trials) {
    number_of[t.id] = t.number;
    if (t.number == number) plan.trial = t;
  }
  if (plan.trial.id == 0)
    return Status::Error("experiment '" + name + "' has no trial " + std::to_string(number) +
                         " (it has " + std::to_string(trials.size()) + ", numbered from 0)");

  std::vector<LineageRecord> lineage;
  if (Status s = store.list_lineage(experiment->id, &lineage); !s.ok()) return s;
  std::vector<const LineageRecord*> exploits;
  for (const LineageRecord& l : lineage)
    if (l.trial_id == plan.trial.id) exploits.push_back(&l);
  ParamMap params = exploits.empty() ? plan.trial.params : exploits.front()->params_before;
  std::size_t next_exploit = 0;

  std::vector<EventRecord> events;
  if (Status s = store.list_events(experiment->id, 0, &events); !s.ok()) return s;
  for (const EventRecord& e : events) {
    if (e.trial_id != plan.trial.id || e.kind != "attempt_started") continue;
    const json body = parse_object(e.body);
    ReplayLeg leg;
    leg.resume_epoch = body.value("resume_epoch", 0);
    leg.until_epoch = body.value("until_epoch", 0);
    leg.warm_start = body.value("warm_start", std::string());
    if (!leg.warm_start.empty()) {
      if (next_exploit >= exploits.size())
        return Status::Error("trial " + std::to_string(number) + " started from " +
                             leg.warm_start + " but the store records no exploit for it");
      const LineageRecord& x = *exploits[next_exploit++];
      params = x.params_after;
      leg.donor_number = number_of.count(x.donor_id) ? number_of[x.donor_id] : -1;
      leg.donor_epoch = x.donor_epoch;
    } else if (!plan.legs.empty() && plan.legs.back().until_epoch == leg.until_epoch) {
      continue;  // lost or preempted, resumed towards the same target: one stretch
    }
    leg.params = params;
    plan.legs.push_back(std::move(leg));
  }
  if (plan.legs.empty())
    return Status::Error("trial " + std::to_string(number) + " of '" + name +
                         "' was never started (state " + to_string(plan.trial.state) +
                         "): there is nothing to reproduce");
  const json provenance = parse_object(plan.trial.provenance);
  plan.ranks = provenance.value("ranks", 1);
  if (Status s = store.metric_series(plan.trial.id, &plan.recorded); !s.ok()) return s;
  *out = std::move(plan);
  return Status::Ok();
}

int ReplayVerdict::exit_code() const {
  if (identical) return kReproduced;
  for (const ProvenanceDifference& d : provenance)
    if (explains_difference(d.field)) return kDiffersExplained;
  return kDiffersUnexplained;
}

ReplayVerdict judge_replay(const MetricSeries& recorded, const MetricSeries& rerun,
                           const std::string& recorded_provenance,
                           const std::string& rerun_provenance) {
  ReplayVerdict v;
  const auto want = by_epoch(recorded);
  const auto got = by_epoch(rerun);
  std::set<std::int32_t> epochs;
  for (const auto& [epoch, m] : want) epochs.insert(epoch);
  for (const auto& [epoch, m] : got) epochs.insert(epoch);
  for (const std::int32_t epoch : epochs) {
    static const MetricMap kNone;
    const auto w = want.find(epoch);
    const auto g = got.find(epoch);
    const MetricMap& a = w == want.end() ? kNone : w->second;
    const MetricMap& b = g == got.end() ? kNone : g->second;
    std::set<std::string> metrics;
    for (const auto& [m, x] : a) metrics.insert(m);
    for (const auto& [m, x] : b) metrics.insert(m);
    for (const std::string& m : metrics) {
      const auto x = a.find(m);
      const auto y = b.find(m);
      if (x != a.end() && y != b.end() && same_bits(x->second, y->second)) continue;
      v.identical = false;
      v.first = {epoch, m, x != a.end(), y != b.end(), x != a.end() ? x->second : 0.0,
                 y != b.end() ? y->second : 0.0};
      break;
    }
    if (!v.identical) break;
    ++v.epochs_compared;
  }
  // The worker's own provenance (what its Done carried), field by field; the coordinator's keys
  // (host, group, key, job) name where it ran, which decides no number.
  const json now = parse_object(rerun_provenance);
  const json then = parse_object(recorded_provenance);
  std::map<std::string, std::string> a, b;
  for (const auto& [key, value] : now.items()) {
    flatten(value, key, &b);
    if (then.contains(key)) flatten(then[key], key, &a);
  }
  std::set<std::string> fields;
  for (const auto& [f, x] : a) fields.insert(f);
  for (const auto& [f, x] : b) fields.insert(f);
  for (const std::string& f : fields) {
    const auto x = a.find(f);
    const auto y = b.find(f);
    const std::string old_value = x == a.end() ? "(none)" : x->second;
    const std::string new_value = y == b.end() ? "(none)" : y->second;
    if (old_value != new_value) v.provenance.push_back({f, old_value, new_value});
  }
  return v;
}

}  // namespace trellis::coordinator
