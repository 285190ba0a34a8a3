#include "coordinator/dashboard/dashboard_api.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "coordinator/dashboard/flat_json.h"
#include "coordinator/dashboard/param_importance.h"
#include "coordinator/exporter.h"
#include "coordinator/model_shelf.h"
#include "coordinator/params_codec.h"

namespace trellis::dashboard {
namespace {

using coordinator::ExperimentRecord;
using coordinator::ExperimentStore;
using coordinator::TrialSummary;
using nlohmann::json;

// The most trials one curves or compare request may name: enough to overlay a thousand
// learning curves, bounded so one request cannot make the server read every series.
constexpr std::size_t kMaxTrialsPerRequest = 5000;

ApiResponse error(int http_status, const std::string& message) {
  return {http_status, json{{"error", message}}.dump()};
}

ApiResponse ok(const json& body) { return {200, body.dump(-1, ' ', false, json::error_handler_t::replace)}; }

json experiment_json(const ExperimentRecord& e) {
  return {{"name", e.name},   {"id", e.id},     {"metric", e.metric},
          {"mode", e.mode},   {"state", e.state}, {"created_at", e.created_at},
          {"seed", e.seed}};
}

// Appends `v` as JSON: shortest round-trip text, null when not finite.
void append_number(double v, std::string* out) {
  if (!std::isfinite(v)) {
    *out += "null";
    return;
  }
  *out += coordinator::format_number(v);
}

// The trials table, written by hand around the store's own JSON text: each value's text goes
// from the store to its column as it is (flat_json.h), since parsing 100,000 trials'
// parameters and metrics only to print them again costs more than the query.
Status trials_table(const ExperimentRecord& experiment,
                    const std::vector<coordinator::TrialListing>& trials, std::string* out) {
  using Members = std::vector<std::pair<std::string_view, std::string_view>>;
  struct Scanned {
    Members params, final_metrics, last_metrics;
  };
  std::vector<Scanned> scanned(trials.size());
  std::set<std::string_view> param_names, metric_names;
  for (std::size_t i = 0; i < trials.size(); ++i) {
    const coordinator::TrialListing& t = trials[i];
    Scanned& m = scanned[i];
    if (!scan_flat_object(t.params, &m.params) ||
        !scan_flat_object(t.final_metrics, &m.final_metrics) ||
        !scan_flat_object(t.last_metrics, &m.last_metrics))
      return Status::Error("trial " + std::to_string(t.number) +
                           " has parameters or metrics that are not a flat JSON object");
    for (const auto& [name, value] : m.params) param_names.insert(name);
    for (const auto& [name, value] : m.final_metrics) metric_names.insert(name);
    for (const auto& [name, value] : m.last_metrics) metric_names.insert(name);
  }
  std::vector<std::string> states;
  std::map<coordinator::TrialState, int> state_index;
  for (const coordinator::TrialListing& t : trials)
    if (state_index.emplace(t.state, static_cast<int>(states.size())).second)
      states.push_back(coordinator::to_string(t.state));
  auto names = [](const std::set<std::string_view>& set) {
    json list = json::array();
    for (std::string_view name : set) list.push_back(std::string(name));
    return list.dump();
  };

  std::string& o = *out;
  o = "{\"experiment\":" + experiment_json(experiment).dump() + ",\"count\":" +
      std::to_string(trials.size()) + ",\"states\":" + json(states).dump() +
      ",\"params\":" + names(param_names) + ",\"metrics\":" + names(metric_names) +
      ",\"columns\":{";
  o.reserve(o.size() + trials.size() * (param_names.size() + metric_names.size() + 3) * 10);
  auto column = [&](const std::string& key, auto&& write_one) {
    if (o.back() != '{') o += ',';
    o += '"';
    o += key;
    o += "\":[";
    for (std::size_t i = 0; i < trials.size(); ++i) {
      if (i) o += ',';
      write_one(i);
    }
    o += ']';
  };
  auto find = [](const Members& members, std::string_view name) -> const std::string_view* {
    for (const auto& [n, value] : members)
      if (n == name) return &value;
    return nullptr;
  };
  column("number", [&](std::size_t i) { o += std::to_string(trials[i].number); });
  column("state", [&](std::size_t i) { o += std::to_string(state_index[trials[i].state]); });
  column("epochs", [&](std::size_t i) { o += std::to_string(trials[i].epochs_run); });
  for (std::string_view name : param_names) {
    column("params." + std::string(name), [&](std::size_t i) {
      const std::string_view* v = find(scanned[i].params, name);
      o += v ? *v : "null";
    });
  }
  for (std::string_view name : metric_names) {
    column("final." + std::string(name), [&](std::size_t i) {
      const std::string_view* v = find(scanned[i].final_metrics, name);
      if (!v) v = find(scanned[i].last_metrics, name);
      o += v ? *v : "null";
    });
  }
  o += "}}";
  return Status::Ok();
}

// "3,1,2" -> {3, 1, 2}; the error names the bad item.
Status parse_numbers(const std::string& text, std::vector<std::int32_t>* out) {
  out->clear();
  std::size_t start = 0;
  while (start <= text.size() && !text.empty()) {
    const std::size_t end = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, end - start);
    char* rest = nullptr;
    const long value = std::strtol(item.c_str(), &rest, 10);
    if (item.empty() || *rest != '\0' || value < 0 || value > INT32_MAX)
      return Status::Error("'" + item + "' in trials=" + text + " is not a trial number");
    out->push_back(static_cast<std::int32_t>(value));
    start = end + 1;
  }
  if (out->empty()) return Status::Error("trials= names no trial");
  if (out->size() > kMaxTrialsPerRequest)
    return Status::Error("trials= names " + std::to_string(out->size()) + " trials; at most " +
                         std::to_string(kMaxTrialsPerRequest) + " per request");
  return Status::Ok();
}

// Where trial `number`'s model is kept ({"file", "rank", "keep"}), or null.
json kept_model(const std::string& model_dir, const ExperimentRecord& experiment,
                std::int32_t number) {
  coordinator::ShelfIndex shelf;
  if (!coordinator::read_shelf_index(model_dir + "/" + experiment.name, &shelf).ok())
    return nullptr;
  for (const coordinator::KeptModel& m : shelf.models) {
    if (m.number != number) continue;
    return {{"file", m.path.empty() ? json(nullptr) : json(m.path)},
            {"rank", m.rank},
            {"keep", shelf.keep}};
  }
  return nullptr;
}

// Rungs from the events: every epoch at which the scheduler paused, promoted or stopped a
// trial, with who; exploits from the lineage.
Status story(ExperimentStore& store, const ExperimentRecord& experiment,
             const std::vector<coordinator::TrialListing>& trials, json* out) {
  std::map<std::int64_t, std::int32_t> number_of, epochs_of;
  for (const coordinator::TrialListing& t : trials) {
    number_of[t.id] = t.number;
    epochs_of[t.id] = t.epochs_run;
  }
  struct Rung {
    std::set<std::int32_t> paused, promoted, stopped;
  };
  std::map<std::int32_t, Rung> rungs;
  std::int64_t after = 0;
  constexpr std::size_t kPage = 10000;
  for (;;) {
    std::vector<coordinator::EventRecord> events;
    if (Status s = store.list_events(experiment.id, after, &events, kPage); !s.ok()) return s;
    for (const coordinator::EventRecord& e : events) {
      after = e.seq;
      const bool paused = e.kind == "trial_paused", promoted = e.kind == "trial_promoted";
      bool stopped = e.kind == "trial_stopped";
      // A paused trial the scheduler then prunes ends without a trial_stopped.
      if (!paused && !promoted && !stopped && e.kind != "trial_ended") continue;
      const auto number = number_of.find(e.trial_id);
      if (number == number_of.end()) continue;
      const json body = json::parse(e.body, nullptr, false);
      if (!body.is_object()) continue;
      if (e.kind == "trial_ended") {
        if (body.value("state", "") != "pruned") continue;
        stopped = true;
      }
      std::int32_t epoch = promoted ? body.value("from_epoch", 0) : body.value("epoch", 0);
      if (e.kind == "trial_ended") epoch = std::max(epoch, epochs_of[e.trial_id]);
      Rung& rung = rungs[epoch];
      (paused ? rung.paused : promoted ? rung.promoted : rung.stopped).insert(number->second);
    }
    if (events.size() < kPage) break;
  }
  json rung_list = json::array();
  for (const auto& [epoch, rung] : rungs) {
    std::int64_t reached = 0;
    for (const coordinator::TrialListing& t : trials) reached += t.epochs_run >= epoch;
    rung_list.push_back({{"epoch", epoch},
                         {"reached", reached},
                         {"paused", rung.paused},
                         {"promoted", rung.promoted},
                         {"stopped", rung.stopped}});
  }
  std::vector<coordinator::LineageRecord> lineage;
  if (Status s = store.list_lineage(experiment.id, &lineage); !s.ok()) return s;
  json exploits = json::array();
  for (const coordinator::LineageRecord& l : lineage) {
    const auto trial = number_of.find(l.trial_id), donor = number_of.find(l.donor_id);
    if (trial == number_of.end() || donor == number_of.end()) continue;
    exploits.push_back({{"trial", trial->second},
                        {"epoch", l.epoch},
                        {"donor", donor->second},
                        {"donor_epoch", l.donor_epoch},
                        {"params_before", coordinator::params_object(l.params_before)},
                        {"params_after", coordinator::params_object(l.params_after)},
                        {"reason", l.reason}});
  }
  *out = {{"rungs", rung_list}, {"exploits", exploits}};
  return Status::Ok();
}

}  // namespace

DashboardApi::DashboardApi(ExperimentStore* store, std::string model_dir)
    : store_(store), model_dir_(std::move(model_dir)) {}

ApiResponse DashboardApi::get(const std::string& path, const Query& query) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::int64_t version = 0;
  if (Status s = store_->data_version(&version); !s.ok()) return error(500, s.message());
  if (path == "/api/changes") return ok({{"version", version}});
  if (version != cached_version_) {
    cache_.clear();
    cached_version_ = version;
  }
  std::string key = path + "?";
  for (const auto& [name, value] : query) key += name + "=" + value + "&";
  if (const auto hit = cache_.find(key); hit != cache_.end()) return hit->second;
  ApiResponse response = answer(path, query);
  if (response.http_status == 200) cache_[key] = response;
  return response;
}

ApiResponse DashboardApi::answer(const std::string& path, const Query& query) {
  if (path == "/api/experiments") {
    std::vector<ExperimentRecord> experiments;
    if (Status s = store_->list_experiments(&experiments); !s.ok()) return error(500, s.message());
    json list = json::array();
    for (const ExperimentRecord& e : experiments) list.push_back(experiment_json(e));
    return ok({{"experiments", list}});
  }
  static const std::set<std::string> kExperimentRoutes = {
      "/api/trials", "/api/curves", "/api/trial", "/api/story", "/api/importance"};
  if (!kExperimentRoutes.count(path)) return error(404, "no route " + path);

  const auto name = query.find("experiment");
  if (name == query.end()) return error(400, path + " needs experiment=NAME");
  std::optional<ExperimentRecord> experiment;
  if (Status s = store_->find_experiment(name->second, &experiment); !s.ok())
    return error(500, s.message());
  if (!experiment) return error(404, "no experiment '" + name->second + "' in the store");

  auto numbers_in = [&](const char* key, std::vector<std::int32_t>* out) {
    const auto it = query.find(key);
    if (it == query.end()) return Status::Error(path + " needs " + key + "=N,N,...");
    return parse_numbers(it->second, out);
  };

  if (path == "/api/trial") {
    std::vector<std::int32_t> numbers;
    if (Status s = numbers_in("trial", &numbers); !s.ok()) return error(400, s.message());
    if (numbers.size() != 1) return error(400, "/api/trial takes one trial=N");
    std::vector<json> documents;
    if (Status s = coordinator::trial_documents(*store_, *experiment, numbers, &documents);
        !s.ok())
      return error(404, s.message());
    json doc = std::move(documents.front());
    doc["model"] = kept_model(model_dir_, *experiment, numbers.front());
    return ok(doc);
  }

  if (path == "/api/importance") {
    std::vector<TrialSummary> trials;
    if (Status s = store_->trial_summaries(experiment->id, &trials); !s.ok())
      return error(500, s.message());
    ImportanceResult result;
    if (Status s = parameter_importance(*experiment, trials, &result); !s.ok())
      return ok({{"method", "fanova"}, {"importances", json::array()}, {"note", s.message()}});
    json list = json::array();
    for (const auto& [param, value] : result.importances)
      list.push_back({{"param", param}, {"importance", value}});
    return ok({{"method", "fanova"}, {"trials_used", result.trials_used}, {"importances", list}});
  }

  std::vector<coordinator::TrialListing> trials;
  if (Status s = store_->trial_listing(experiment->id, &trials); !s.ok())
    return error(500, s.message());
  if (path == "/api/trials") {
    std::string body;
    if (Status s = trials_table(*experiment, trials, &body); !s.ok()) return error(500, s.message());
    return {200, std::move(body)};
  }
  if (path == "/api/story") {
    json body;
    if (Status s = story(*store_, *experiment, trials, &body); !s.ok())
      return error(500, s.message());
    return ok(body);
  }

  // /api/curves
  const auto metric = query.find("metric");
  if (metric == query.end()) return error(400, "/api/curves needs metric=NAME");
  std::vector<std::int32_t> numbers;
  if (Status s = numbers_in("trials", &numbers); !s.ok()) return error(400, s.message());
  std::map<std::int32_t, std::int64_t> id_of;
  for (const coordinator::TrialListing& t : trials) id_of[t.number] = t.id;
  std::string out = "{\"metric\":" + json(metric->second).dump() + ",\"series\":{";
  bool first = true;
  for (const std::int32_t number : numbers) {
    const auto id = id_of.find(number);
    if (id == id_of.end())
      return error(404, "experiment '" + experiment->name + "' has no trial " +
                            std::to_string(number));
    coordinator::MetricSeries series;
    if (Status s = store_->metric_series(id->second, &series); !s.ok())
      return error(500, s.message());
    const auto points = series.find(metric->second);
    if (points == series.end()) continue;
    std::string epochs, values;
    for (const auto& [epoch, value] : points->second) {
      if (!epochs.empty()) epochs += ',', values += ',';
      epochs += std::to_string(epoch);
      append_number(value, &values);
    }
    out += std::string(first ? "" : ",") + "\"" + std::to_string(number) + "\":[[" + epochs +
           "],[" + values + "]]";
    first = false;
  }
  out += "}}";
  return {200, out};
}

}  // namespace trellis::dashboard
