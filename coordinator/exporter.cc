#include "coordinator/exporter.h"

#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "coordinator/params_codec.h"

namespace trellis::coordinator {

namespace {

using nlohmann::json;

struct Snapshot {
  ExperimentRecord experiment;
  std::vector<TrialRecord> trials;  // number order
  std::map<std::int64_t, MetricSeries> series;  // by trial id
  std::vector<LineageRecord> lineage;            // by trial id, then epoch
  std::vector<EventRecord> events;               // in order
};

Status load(ExperimentStore& store, const std::string& name, Snapshot* out) {
  if (name.empty()) return Status::Error("export: no experiment name given");
  Status s = resolve_experiment(store, name, &out->experiment);
  if (!s.ok()) return s;
  if (s = store.list_trials(out->experiment.id, &out->trials); !s.ok()) return s;
  if (s = store.list_lineage(out->experiment.id, &out->lineage); !s.ok()) return s;
  if (s = store.list_events(out->experiment.id, 0, &out->events); !s.ok()) return s;
  return store.experiment_metrics(out->experiment.id, &out->series);
}

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// What ran the latest attempt, as the coordinator recorded it; {} for a trial never started.
json provenance_json(const std::string& text) {
  if (text.empty()) return json::object();
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return parsed.is_discarded() ? json(text) : parsed;
}

// Each trial's lineage entries, oldest first, donors by number; grouped in one pass, since an
// export of 100,000 PBT trials must not scan the lineage once per trial.
std::map<std::int64_t, json> lineage_by_trial(const std::vector<LineageRecord>& lineage,
                                              const std::map<std::int64_t, std::int32_t>& number_of) {
  std::map<std::int64_t, json> out;
  for (const LineageRecord& l : lineage) {
    const auto donor = number_of.find(l.donor_id);
    json& entries = out[l.trial_id];
    if (entries.is_null()) entries = json::array();
    entries.push_back({{"epoch", l.epoch},
                       {"donor", donor != number_of.end() ? json(donor->second) : json(nullptr)},
                       {"donor_epoch", l.donor_epoch},
                       {"params_before", params_object(l.params_before)},
                       {"params_after", params_object(l.params_after)},
                       {"reason", l.reason}});
  }
  return out;
}

json lineage_of(const std::map<std::int64_t, json>& lineage, std::int64_t trial_id) {
  const auto it = lineage.find(trial_id);
  return it != lineage.end() ? it->second : json::array();
}

json trial_json(const TrialRecord& t, const MetricSeries* series, json lineage) {
  json metrics = json::object();
  if (series != nullptr) {
    for (const auto& [name, points] : *series) {
      json list = json::array();
      for (const auto& [epoch, value] : points) list.push_back({epoch, number_or_null(value)});
      metrics[name] = std::move(list);
    }
  }
  json finals = json::object();
  for (const auto& [name, value] : t.final_metrics) finals[name] = number_or_null(value);
  return {{"id", t.number},
          {"state", to_string(t.state)},
          {"params", params_object(t.params)},
          {"metrics", std::move(metrics)},
          {"final", std::move(finals)},
          {"attempt", t.attempt},
          {"seed", t.seed},
          {"group", t.group},
          {"error", t.error},
          {"started_at", t.started_at},
          {"finished_at", t.finished_at},
          {"checkpoint_epoch", t.checkpoint_epoch},
          {"target_epoch", t.target_epoch},
          {"lineage", std::move(lineage)},
          {"provenance", provenance_json(t.provenance)}};
}

// The error for a trial number the experiment does not have, with the numbers it does have.
Status missing_trial(ExperimentStore& store, const ExperimentRecord& experiment,
                     std::int32_t number) {
  std::pair<std::int32_t, std::int32_t> range;
  std::int64_t count = 0;
  if (Status s = store.trial_number_range(experiment.id, &range, &count); !s.ok()) return s;
  return Status::Error("experiment '" + experiment.name + "' has no trial " +
                       std::to_string(number) +
                       (count == 0 ? std::string(" (it has no trials yet)")
                                   : " (its trials are numbered " + std::to_string(range.first) +
                                         " to " + std::to_string(range.second) + ")"));
}

std::map<std::int64_t, std::int32_t> numbers_by_id(const std::vector<TrialRecord>& trials) {
  std::map<std::int64_t, std::int32_t> number_of;
  for (const TrialRecord& t : trials) number_of[t.id] = t.number;
  return number_of;
}

Status write_json(const Snapshot& snap, std::ostream& out) {
  const ExperimentRecord& e = snap.experiment;
  json doc;
  doc["format_version"] = kExportFormatVersion;
  doc["experiment"] = {{"name", e.name},           {"id", e.id},
                       {"metric", e.metric},       {"mode", e.mode},
                       {"seed", e.seed},           {"state", e.state},
                       {"created_at", e.created_at}, {"spec_hash", e.spec_hash},
                       {"spec", e.spec_yaml}};
  const std::map<std::int64_t, std::int32_t> number_of = numbers_by_id(snap.trials);
  const std::map<std::int64_t, json> lineage = lineage_by_trial(snap.lineage, number_of);
  json trials = json::array();
  for (const TrialRecord& t : snap.trials) {
    const auto series = snap.series.find(t.id);
    trials.push_back(trial_json(t, series != snap.series.end() ? &series->second : nullptr,
                                lineage_of(lineage, t.id)));
  }
  doc["trials"] = std::move(trials);
  json events = json::array();
  for (const EventRecord& ev : snap.events) {
    json data = json::parse(ev.body, nullptr, /*allow_exceptions=*/false);
    const auto number = number_of.find(ev.trial_id);
    events.push_back({{"seq", ev.seq},
                      {"kind", ev.kind},
                      {"trial", number != number_of.end() ? json(number->second) : json(nullptr)},
                      {"group", ev.group},
                      {"at", ev.created_at},
                      {"after_report", ev.after_report},
                      {"data", data.is_discarded() ? json(ev.body) : data}});
  }
  doc["events"] = std::move(events);
  // replace: a stray non-UTF-8 byte in a spec or error text must not make the export fail.
  out << doc.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
  return Status::Ok();
}

std::string param_text(const ParamValue& value) {
  if (const auto* d = std::get_if<double>(&value)) return format_number(*d);
  return trellis::to_string(value);
}

void write_row(const std::vector<std::string>& fields, std::ostream& out) {
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i) out << ',';
    out << csv_field(fields[i]);
  }
  out << '\n';
}

Status write_csv(const Snapshot& snap, std::ostream& out) {
  std::set<std::string> param_names, metric_names, final_names;
  for (const TrialRecord& t : snap.trials) {
    for (const auto& [name, value] : t.params) param_names.insert(name);
    for (const auto& [name, value] : t.final_metrics) final_names.insert(name);
  }
  for (const auto& [id, series] : snap.series) {
    for (const auto& [name, points] : series) metric_names.insert(name);
  }

  std::vector<std::string> header = {"trial", "state"};
  header.insert(header.end(), param_names.begin(), param_names.end());
  header.push_back("epoch");
  header.insert(header.end(), metric_names.begin(), metric_names.end());
  for (const auto& name : final_names) header.push_back("final_" + name);
  write_row(header, out);

  static const MetricSeries kNoSeries;
  for (const TrialRecord& t : snap.trials) {
    auto it = snap.series.find(t.id);
    const MetricSeries& series = it == snap.series.end() ? kNoSeries : it->second;
    // epoch -> metric -> value, so metrics reported at different epochs still line up.
    std::map<std::int32_t, std::map<std::string, double>> by_epoch;
    for (const auto& [name, points] : series) {
      for (const auto& [epoch, value] : points) by_epoch[epoch][name] = value;
    }

    std::vector<std::string> prefix = {std::to_string(t.number), to_string(t.state)};
    for (const auto& name : param_names) {
      auto p = t.params.find(name);
      prefix.push_back(p == t.params.end() ? "" : param_text(p->second));
    }
    std::vector<std::string> suffix;
    for (const auto& name : final_names) {
      auto f = t.final_metrics.find(name);
      suffix.push_back(f == t.final_metrics.end() ? "" : format_number(f->second));
    }

    auto emit = [&](const std::string& epoch, const std::map<std::string, double>* values) {
      std::vector<std::string> row = prefix;
      row.push_back(epoch);
      for (const auto& name : metric_names) {
        std::string cell;
        if (values) {
          if (auto v = values->find(name); v != values->end()) cell = format_number(v->second);
        }
        row.push_back(std::move(cell));
      }
      row.insert(row.end(), suffix.begin(), suffix.end());
      write_row(row, out);
    };
    if (by_epoch.empty()) {
      emit("", nullptr);
    } else {
      for (const auto& [epoch, values] : by_epoch) emit(std::to_string(epoch), &values);
    }
  }
  return Status::Ok();
}

}  // namespace

std::string cell_text(const nlohmann::json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) return format_number(value.get<double>());
  return value.dump();
}

std::string format_number(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::string();
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + '"';
}


Status parse_export_format(const std::string& text, ExportFormat* out) {
  if (text == "json") {
    *out = ExportFormat::kJson;
  } else if (text == "csv") {
    *out = ExportFormat::kCsv;
  } else {
    return Status::Error("unknown export format '" + text + "' (expected json or csv)");
  }
  return Status::Ok();
}

Status export_experiment(ExperimentStore& store, const std::string& experiment_name,
                         ExportFormat format, std::ostream& out) {
  Snapshot snap;
  Status s = load(store, experiment_name, &snap);
  if (!s.ok()) return s.With("export");
  try {
    s = format == ExportFormat::kJson ? write_json(snap, out) : write_csv(snap, out);
  } catch (const nlohmann::json::exception& e) {
    return Status::Error(std::string("export '") + experiment_name + "': " + e.what());
  }
  if (!s.ok()) return s.With("export");
  if (!out) return Status::Error("export '" + experiment_name + "': write failed");
  return Status::Ok();
}

Status trial_documents(ExperimentStore& store, const ExperimentRecord& experiment,
                       const std::vector<std::int32_t>& numbers, std::vector<json>* out) {
  out->clear();
  std::vector<TrialRecord> trials;
  for (const std::int32_t number : numbers) {
    std::optional<TrialRecord> trial;
    if (Status s = store.find_trial(experiment.id, number, &trial); !s.ok()) return s;
    if (!trial) return missing_trial(store, experiment, number);
    trials.push_back(std::move(*trial));
  }
  // Only the asked trials' lineage, and the numbers of only their donors.
  std::vector<LineageRecord> records;
  if (Status s = store.list_lineage(experiment.id, &records); !s.ok()) return s;
  std::map<std::int64_t, std::int32_t> number_of = numbers_by_id(trials);
  std::vector<LineageRecord> theirs;
  for (LineageRecord& l : records) {
    if (!number_of.count(l.trial_id)) continue;
    theirs.push_back(std::move(l));
  }
  for (const LineageRecord& l : theirs) {
    if (number_of.count(l.donor_id)) continue;
    TrialRecord donor;
    if (Status s = store.get_trial(l.donor_id, &donor); !s.ok()) return s;
    number_of[donor.id] = donor.number;
  }
  const std::map<std::int64_t, json> lineage = lineage_by_trial(theirs, number_of);
  for (const TrialRecord& t : trials) {
    MetricSeries series;
    if (Status s = store.metric_series(t.id, &series); !s.ok()) return s;
    out->push_back(trial_json(t, &series, lineage_of(lineage, t.id)));
  }
  return Status::Ok();
}

}  // namespace trellis::coordinator
