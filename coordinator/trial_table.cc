#include "coordinator/trial_table.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

namespace trellis::coordinator {

namespace {

// Shown next to the sort metric when the trials report them; what researchers compare first.
constexpr const char* kContextMetrics[] = {"test_acc", "val_acc", "val_loss"};
constexpr const char* kMissing = "-";
constexpr int kSignificantDigits = 4;

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::optional<double> metric_value(const TrialRecord& trial, const MetricSeries* series,
                                   const std::string& metric) {
  std::optional<double> value;
  if (auto f = trial.final_metrics.find(metric); f != trial.final_metrics.end()) {
    value = f->second;
  } else if (series) {
    if (auto s = series->find(metric); s != series->end() && !s->second.empty()) {
      value = s->second.back().second;  // series are in epoch order
    }
  }
  // NaN has no place in an order; a diverged trial ranks with the unvalued ones.
  if (value && std::isnan(*value)) value.reset();
  return value;
}

struct Loaded {
  std::vector<RankedTrial> ranked;
  std::map<std::int64_t, MetricSeries> series;  // by trial id
};

Status load_ranked(ExperimentStore& store, const ExperimentRecord& experiment,
                   const std::string& metric, Loaded* out) {
  std::vector<TrialRecord> trials;
  Status s = store.list_trials(experiment.id, &trials);
  if (!s.ok()) return s;
  if (s = store.experiment_metrics(experiment.id, &out->series); !s.ok()) return s;

  out->ranked.clear();
  for (auto& trial : trials) {
    auto it = out->series.find(trial.id);
    const MetricSeries* series = it == out->series.end() ? nullptr : &it->second;
    std::optional<double> value = metric_value(trial, series, metric);
    out->ranked.push_back({std::move(trial), value});
  }
  const bool higher = higher_is_better(experiment, metric);
  std::stable_sort(out->ranked.begin(), out->ranked.end(),
                   [higher](const RankedTrial& a, const RankedTrial& b) {
                     if (a.value.has_value() != b.value.has_value()) return a.value.has_value();
                     if (a.value && *a.value != *b.value) {
                       return higher ? *a.value > *b.value : *a.value < *b.value;
                     }
                     return a.trial.number < b.trial.number;
                   });
  return Status::Ok();
}

// Four significant digits in fixed notation (0.9234, 0.01234, 12346), scientific only when a
// value is so small that fixed would hide it.
std::string format_value(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return "0";
  const int magnitude = static_cast<int>(std::floor(std::log10(std::fabs(v))));
  char buf[64];
  if (magnitude < -4) {
    std::snprintf(buf, sizeof buf, "%.*g", kSignificantDigits, v);
  } else {
    std::snprintf(buf, sizeof buf, "%.*f", std::max(0, kSignificantDigits - 1 - magnitude), v);
  }
  return buf;
}

std::string format_optional(const std::optional<double>& v) {
  return v ? format_value(*v) : kMissing;
}

std::string state_counts(const std::vector<RankedTrial>& ranked) {
  static constexpr TrialState kOrder[] = {TrialState::kCompleted, TrialState::kRunning,
                                          TrialState::kPaused,
                                          TrialState::kPending, TrialState::kPruned,
                                          TrialState::kFailed};
  std::map<TrialState, int> counts;
  for (const auto& r : ranked) ++counts[r.trial.state];
  std::string text = std::to_string(ranked.size()) + (ranked.size() == 1 ? " trial" : " trials");
  std::string parts;
  for (TrialState state : kOrder) {
    if (counts[state] == 0) continue;
    parts += (parts.empty() ? "" : ", ") + std::to_string(counts[state]) + " " + to_string(state);
  }
  return parts.empty() ? text : text + " (" + parts + ")";
}

// Left-aligned text columns, right-aligned numeric ones, two spaces apart.
void print_table(const std::vector<std::string>& header, const std::vector<bool>& right_align,
                 const std::vector<std::vector<std::string>>& rows, std::ostream& out) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      if (c) line += "  ";
      line += right_align[c] ? pad + row[c] : row[c] + pad;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

}  // namespace

bool higher_is_better(const ExperimentRecord& experiment, const std::string& metric) {
  if (metric == experiment.metric) return experiment.mode != "min";
  // "_s" marks a duration (epoch_s), but "_per_s" a rate (samples_per_s), which goes up.
  const bool duration = ends_with(metric, "_s") && !ends_with(metric, "_per_s");
  const bool lower = metric.find("loss") != std::string::npos ||
                     metric.find("err") != std::string::npos || duration;
  return !lower;
}

Status rank_trials(ExperimentStore& store, const ExperimentRecord& experiment,
                   const std::string& metric, std::vector<RankedTrial>* out) {
  Loaded loaded;
  Status s = load_ranked(store, experiment, metric, &loaded);
  if (!s.ok()) return s.With("ranking trials of '" + experiment.name + "' by " + metric);
  *out = std::move(loaded.ranked);
  return Status::Ok();
}

Status print_trials(ExperimentStore& store, const TrialTableOptions& options,
                    std::ostream& out) {
  ExperimentRecord experiment;
  Status s = resolve_experiment(store, options.experiment, &experiment);
  if (!s.ok()) return s;
  const std::string metric = options.sort_metric.empty() ? experiment.metric : options.sort_metric;
  if (metric.empty()) {
    return Status::Error("experiment '" + experiment.name + "' has no metric; pass --sort METRIC");
  }
  Loaded loaded;
  if (s = load_ranked(store, experiment, metric, &loaded); !s.ok()) {
    return s.With("trials of '" + experiment.name + "'");
  }

  std::set<std::string> reported;  // every metric name any trial has
  std::set<std::string> param_names;
  for (const auto& r : loaded.ranked) {
    for (const auto& [name, v] : r.trial.final_metrics) reported.insert(name);
    for (const auto& [name, v] : r.trial.params) param_names.insert(name);
  }
  // A parameter with one value in every trial (fixed in the spec) is said once, above the
  // table, so the columns show only what the search varied.
  ParamMap same_everywhere;
  if (loaded.ranked.size() > 1) {
    for (const auto& name : param_names) {
      const auto first = loaded.ranked.front().trial.params.find(name);
      const bool constant =
          first != loaded.ranked.front().trial.params.end() &&
          std::all_of(loaded.ranked.begin(), loaded.ranked.end(), [&](const RankedTrial& r) {
            const auto p = r.trial.params.find(name);
            return p != r.trial.params.end() && p->second == first->second;
          });
      if (constant) same_everywhere[name] = first->second;
    }
    for (const auto& [name, v] : same_everywhere) param_names.erase(name);
  }
  for (const auto& [id, series] : loaded.series) {
    for (const auto& [name, points] : series) reported.insert(name);
  }
  std::vector<std::string> context;
  for (const char* name : kContextMetrics) {
    if (name != metric && reported.count(name)) context.push_back(name);
  }

  const bool higher = higher_is_better(experiment, metric);
  out << "experiment " << experiment.name << " (" << experiment.state
      << "): " << state_counts(loaded.ranked) << "; sorted by " << metric << " ("
      << (higher ? "max, higher is better" : "min, lower is better") << ")\n";
  if (loaded.ranked.empty()) return Status::Ok();
  if (!same_everywhere.empty()) {
    out << "same in every trial:";
    for (const auto& [name, v] : same_everywhere) out << " " << name << "=" << trellis::to_string(v);
    out << "\n";
  }

  std::vector<std::string> header = {"rank", "trial", "state", metric};
  std::vector<bool> right = {true, true, false, true};
  for (const auto& name : context) {
    header.push_back(name);
    right.push_back(true);
  }
  header.push_back("epochs_run");
  right.push_back(true);
  for (const auto& name : param_names) {
    header.push_back(name);
    right.push_back(false);
  }

  const std::size_t shown =
      options.limit > 0 ? std::min<std::size_t>(options.limit, loaded.ranked.size())
                        : loaded.ranked.size();
  std::vector<std::vector<std::string>> rows;
  for (std::size_t i = 0; i < shown; ++i) {
    const RankedTrial& r = loaded.ranked[i];
    auto it = loaded.series.find(r.trial.id);
    const MetricSeries* series = it == loaded.series.end() ? nullptr : &it->second;
    // Unvalued trials are listed but not ranked.
    std::vector<std::string> row = {r.value ? std::to_string(i + 1) : kMissing,
                                    std::to_string(r.trial.number), to_string(r.trial.state),
                                    format_optional(r.value)};
    for (const auto& name : context) {
      row.push_back(format_optional(metric_value(r.trial, series, name)));
    }
    // Epochs are 1-based, so the last one reported is how many the latest attempt reached.
    std::int32_t epochs = 0;
    if (series) {
      for (const auto& [name, points] : *series) {
        if (!points.empty()) epochs = std::max(epochs, points.back().first);
      }
    }
    row.push_back(std::to_string(epochs));
    for (const auto& name : param_names) {
      auto p = r.trial.params.find(name);
      row.push_back(p == r.trial.params.end() ? kMissing : trellis::to_string(p->second));
    }
    rows.push_back(std::move(row));
  }
  print_table(header, right, rows, out);
  if (shown < loaded.ranked.size()) {
    out << "(" << loaded.ranked.size() - shown << " more; --limit 0 shows all)\n";
  }
  return Status::Ok();
}

}  // namespace trellis::coordinator
