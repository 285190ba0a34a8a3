#include "coordinator/trial_table.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

namespace trellis::coordinator {

namespace {

// Shown next to the sort metric when the trials report them; what researchers compare first.
// A classification sweep reports the accuracies, a regression sweep the errors and r2, so
// each table shows its task's columns and never the other's.
constexpr const char* kContextMetrics[] = {"test_acc", "val_acc",  "test_rmse", "val_rmse",
                                           "val_mae",  "val_r2",   "val_loss"};
constexpr const char* kMissing = "-";
constexpr int kSignificantDigits = 4;

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::optional<double> metric_value(const TrialSummary& trial, const std::string& metric) {
  std::optional<double> value;
  if (auto f = trial.final_metrics.find(metric); f != trial.final_metrics.end()) {
    value = f->second;
  } else if (auto l = trial.last_metrics.find(metric); l != trial.last_metrics.end()) {
    value = l->second;
  }
  // NaN has no place in an order; a diverged trial ranks with the unvalued ones.
  if (value && std::isnan(*value)) value.reset();
  return value;
}

Status load_ranked(ExperimentStore& store, const ExperimentRecord& experiment,
                   const std::string& metric, std::vector<RankedTrial>* out) {
  std::vector<TrialSummary> trials;
  Status s = store.trial_summaries(experiment.id, &trials);
  if (!s.ok()) return s;
  std::vector<std::optional<double>> values(trials.size());
  std::vector<std::size_t> order(trials.size());
  for (std::size_t i = 0; i < trials.size(); ++i) {
    values[i] = metric_value(trials[i], metric);
    order[i] = i;
  }
  const bool higher = higher_is_better(experiment, metric);
  // Trials come in number order, so a stable sort keeps ties in it. Indices, not summaries,
  // move around: 100,000 of them are sorted in a few milliseconds.
  std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) {
    const auto& a = values[i];
    const auto& b = values[j];
    if (a.has_value() != b.has_value()) return a.has_value();
    if (a && *a != *b) return higher ? *a > *b : *a < *b;
    return false;
  });
  out->clear();
  out->reserve(trials.size());
  for (std::size_t i : order) out->push_back({std::move(trials[i]), values[i]});
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

// How the sort metric is spread over all trials, for when most rows are left out:
// "val_acc over 99,995 trials with a value: best 0.9213, median 0.8120, worst 0.1033".
// `ranked` is best first, unvalued trials last.
std::string spread(const std::vector<RankedTrial>& ranked, const std::string& metric) {
  std::size_t valued = 0;
  while (valued < ranked.size() && ranked[valued].value) ++valued;
  if (valued == 0) return metric + ": no trial has a value";
  return metric + " over " + std::to_string(valued) +
         (valued == 1 ? " trial" : " trials") + " with a value: best " +
         format_value(*ranked.front().value) + ", median " +
         format_value(*ranked[valued / 2].value) + ", worst " +
         format_value(*ranked[valued - 1].value);
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
                     metric.find("err") != std::string::npos || ends_with(metric, "_rmse") ||
                     ends_with(metric, "_mae") || duration;
  return !lower;
}

Status rank_trials(ExperimentStore& store, const ExperimentRecord& experiment,
                   const std::string& metric, std::vector<RankedTrial>* out) {
  Status s = load_ranked(store, experiment, metric, out);
  return s.With("ranking trials of '" + experiment.name + "' by " + metric);
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
  std::vector<RankedTrial> ranked;
  if (s = load_ranked(store, experiment, metric, &ranked); !s.ok()) {
    return s.With("trials of '" + experiment.name + "'");
  }

  std::set<std::string> reported;  // every metric name any trial has
  std::set<std::string> param_names;
  for (const auto& r : ranked) {
    for (const auto& [name, v] : r.trial.final_metrics) reported.insert(name);
    for (const auto& [name, v] : r.trial.last_metrics) reported.insert(name);
    for (const auto& [name, v] : r.trial.params) param_names.insert(name);
  }
  // A parameter with one value in every trial (fixed in the spec) is said once, above the
  // table, so the columns show only what the search varied.
  ParamMap same_everywhere;
  if (ranked.size() > 1) {
    for (const auto& name : param_names) {
      const auto first = ranked.front().trial.params.find(name);
      const bool constant =
          first != ranked.front().trial.params.end() &&
          std::all_of(ranked.begin(), ranked.end(), [&](const RankedTrial& r) {
            const auto p = r.trial.params.find(name);
            return p != r.trial.params.end() && p->second == first->second;
          });
      if (constant) same_everywhere[name] = first->second;
    }
    for (const auto& [name, v] : same_everywhere) param_names.erase(name);
  }
  std::vector<std::string> context;
  for (const char* name : kContextMetrics) {
    if (name != metric && reported.count(name)) context.push_back(name);
  }

  const bool higher = higher_is_better(experiment, metric);
  out << "experiment " << experiment.name << " (" << experiment.state
      << "): " << state_counts(ranked) << "; sorted by " << metric << " ("
      << (higher ? "max, higher is better" : "min, lower is better") << ")\n";
  if (ranked.empty()) return Status::Ok();
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

  const std::size_t shown = options.limit > 0
                                ? std::min<std::size_t>(options.limit, ranked.size())
                                : ranked.size();
  // Why a trial stopped early goes last: the sentence is long, and only some rows have one.
  const auto why = [](const TrialSummary& t) {
    return t.state == TrialState::kCompleted || t.state == TrialState::kRunning ? std::string()
                                                                                : t.error;
  };
  bool any_why = false;
  for (std::size_t i = 0; i < shown; ++i) any_why = any_why || !why(ranked[i].trial).empty();
  if (any_why) {
    header.push_back("why");
    right.push_back(false);
  }
  std::vector<std::vector<std::string>> rows;
  for (std::size_t i = 0; i < shown; ++i) {
    const RankedTrial& r = ranked[i];
    // Unvalued trials are listed but not ranked.
    std::vector<std::string> row = {r.value ? std::to_string(i + 1) : kMissing,
                                    std::to_string(r.trial.number), to_string(r.trial.state),
                                    format_optional(r.value)};
    for (const auto& name : context) row.push_back(format_optional(metric_value(r.trial, name)));
    row.push_back(std::to_string(r.trial.epochs_run));
    for (const auto& name : param_names) {
      auto p = r.trial.params.find(name);
      row.push_back(p == r.trial.params.end() ? kMissing : trellis::to_string(p->second));
    }
    if (any_why) row.push_back(why(r.trial));
    rows.push_back(std::move(row));
  }
  print_table(header, right, rows, out);
  if (shown < ranked.size()) {
    out << "(" << ranked.size() - shown
        << " more; --limit N shows the best N, --all every trial)\n";
    out << spread(ranked, metric) << "\n";
  }
  return Status::Ok();
}

}  // namespace trellis::coordinator
