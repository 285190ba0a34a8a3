#include "common/sweep_spec.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/search_grid.h"
#include "common/train_config.h"

namespace trellis {
namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string did_you_mean(const std::string& word, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_d = 3;  // suggest only close misspellings
  for (const auto& k : known) {
    const std::size_t d = edit_distance(word, k);
    if (d < best_d) best_d = d, best = k;
  }
  if (!best.empty()) return " (did you mean '" + best + "'?)";
  std::string all;
  for (const auto& k : known) all += (all.empty() ? "" : ", ") + k;
  return " (expected one of: " + all + ")";
}

bool name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// Walks the YAML tree, turning every problem into "file:line:col: field: what".
class SpecReader {
 public:
  explicit SpecReader(std::string source) : source_(std::move(source)) {}

  Status error(const YAML::Node& at, const std::string& field, const std::string& what) const {
    const YAML::Mark m = at.Mark();
    std::string where = source_;
    if (m.line >= 0) where += ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
    return Status::Error(where + ": " + (field.empty() ? "" : field + ": ") + what);
  }

  // Refuses keys of `map` that are not in `allowed`.
  Status check_keys(const YAML::Node& map, const std::string& section,
                    const std::vector<std::string>& allowed) const {
    for (const auto& kv : map) {
      const std::string key = kv.first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
        return error(kv.first, section, "unknown key '" + key + "'" + did_you_mean(key, allowed));
    }
    return Status::Ok();
  }

  Status map(const YAML::Node& node, const std::string& field) const {
    if (!node.IsMap()) return error(node, field, "must be a mapping of key: value");
    return Status::Ok();
  }

  Status string(const YAML::Node& node, const std::string& field, std::string* out) const {
    if (!node.IsScalar()) return error(node, field, "must be a string");
    *out = node.Scalar();
    return Status::Ok();
  }

  Status integer(const YAML::Node& node, const std::string& field, std::int64_t low,
                 std::int64_t* out) const {
    std::int64_t v = 0;
    if (!node.IsScalar() || !YAML::convert<std::int64_t>::decode(node, v) || v < low)
      return error(node, field, "must be an integer >= " + std::to_string(low) + ", got " +
                                    describe(node));
    *out = v;
    return Status::Ok();
  }

  Status number(const YAML::Node& node, const std::string& field, double* out) const {
    double v = 0;
    if (!node.IsScalar() || !YAML::convert<double>::decode(node, v))
      return error(node, field, "must be a number, got " + describe(node));
    *out = v;
    return Status::Ok();
  }

  // A scalar keeps its YAML kind: 128 is an integer, 1e-3 a float, adam (or "128") a string.
  // A list of scalars ([256, 128], hidden sizes) travels as the string "256,128".
  Status scalar(const YAML::Node& node, const std::string& field, ParamValue* out) const {
    if (node.IsSequence()) {
      std::string joined;
      for (const auto& item : node) {
        if (!item.IsScalar()) return error(item, field, "a list value must hold plain values");
        joined += (joined.empty() ? "" : ",") + item.Scalar();
      }
      *out = joined;
      return Status::Ok();
    }
    if (!node.IsScalar()) return error(node, field, "must be a single value, got " + describe(node));
    if (node.Tag() != "!") {  // unquoted
      std::int64_t i = 0;
      double d = 0;
      if (YAML::convert<std::int64_t>::decode(node, i)) return *out = i, Status::Ok();
      if (YAML::convert<double>::decode(node, d)) return *out = d, Status::Ok();
    }
    *out = node.Scalar();
    return Status::Ok();
  }

  static std::string describe(const YAML::Node& node) {
    if (node.IsScalar()) return "'" + node.Scalar() + "'";
    if (node.IsSequence()) return "a list";
    if (node.IsMap()) return "a mapping";
    return "nothing";
  }

 private:
  std::string source_;
};

Status read_dataset(const SpecReader& r, const YAML::Node& node, DatasetCheck check,
                    DatasetRef* out) {
  namespace fs = std::filesystem;
  if (Status s = r.map(node, "dataset"); !s.ok()) return s;
  if (Status s = r.check_keys(node, "dataset",
                              {"name", "format", "path", "validation_fraction", "test_fraction",
                               "train", "test", "label", "task", "classes", "features", "scaling"});
      !s.ok())
    return s;
  if (!node["path"]) return r.error(node, "dataset", "missing required key 'path'");
  if (Status s = r.string(node["path"], "dataset.path", &out->path); !s.ok()) return s;
  out->format = "idx";
  const auto choice = [&](const char* key, std::string* value,
                          const std::vector<std::string>& allowed) {
    if (!node[key]) return Status::Ok();
    const std::string field = std::string("dataset.") + key;
    if (Status s = r.string(node[key], field, value); !s.ok()) return s;
    if (std::find(allowed.begin(), allowed.end(), *value) == allowed.end())
      return r.error(node[key], field, "unknown value '" + *value + "'" + did_you_mean(*value, allowed));
    return Status::Ok();
  };
  if (Status s = choice("format", &out->format, {"idx", "csv", "libsvm"}); !s.ok()) return s;
  if (Status s = choice("task", &out->task, {"classification", "regression"}); !s.ok()) return s;
  if (Status s = choice("scaling", &out->scaling, {"none", "standard"}); !s.ok()) return s;
  out->name = fs::path(out->path).filename().string();
  for (auto [key, value] : {std::pair{"name", &out->name}, std::pair{"train", &out->train},
                            std::pair{"test", &out->test}, std::pair{"label", &out->label}})
    if (node[key])
      if (Status s = r.string(node[key], std::string("dataset.") + key, value); !s.ok()) return s;
  for (auto [key, value] : {std::pair{"classes", &out->classes}, std::pair{"features", &out->features}}) {
    if (!node[key]) continue;
    std::int64_t v = 0;
    if (Status s = r.integer(node[key], std::string("dataset.") + key, 0, &v); !s.ok()) return s;
    *value = static_cast<int>(std::min<std::int64_t>(v, 1 << 30));
  }
  if (node["validation_fraction"]) {
    const YAML::Node v = node["validation_fraction"];
    if (Status s = r.number(v, "dataset.validation_fraction", &out->validation_fraction); !s.ok())
      return s;
    if (out->validation_fraction <= 0 || out->validation_fraction >= 1)
      return r.error(v, "dataset.validation_fraction", "must be in (0, 1), got " + r.describe(v));
  }
  if (node["test_fraction"]) {
    const YAML::Node v = node["test_fraction"];
    if (Status s = r.number(v, "dataset.test_fraction", &out->test_fraction); !s.ok()) return s;
    if (out->test_fraction <= 0 || out->test_fraction >= 1)
      return r.error(v, "dataset.test_fraction", "must be in (0, 1), got " + r.describe(v));
    if (out->format == "idx")
      return r.error(v, "dataset.test_fraction",
                     "idx datasets come with their test files (t10k-*); test_fraction is for a "
                     "csv or libsvm dataset that is one file");
    if (node["test"])
      return r.error(v, "dataset.test_fraction",
                     "the dataset names a test file ('" + out->test +
                         "'); give either test or test_fraction, not both");
  }
  if (check == DatasetCheck::kOnTheWorkers) return Status::Ok();
  std::error_code ec;
  if (!fs::is_directory(out->path, ec))
    return r.error(node["path"], "dataset.path",
                   "dataset directory '" + out->path + "' does not exist");
  if (out->format != "idx") {
    // Name the file the workers would fail on, now rather than in every trial.
    for (auto [key, file] : {std::pair{"train", out->train}, std::pair{"test", out->test}}) {
      if (std::string(key) == "test" && out->test_fraction > 0) continue;  // no test file
      const std::string name = file.empty() ? std::string(key) + "." + out->format : file;
      const fs::path full = fs::path(name).is_absolute() ? fs::path(name) : fs::path(out->path) / name;
      if (!fs::is_regular_file(full, ec))
        return r.error(node[key] ? node[key] : node["path"], std::string("dataset.") + key,
                       "dataset file '" + full.string() + "' does not exist");
    }
  }
  return Status::Ok();
}

// Smaller is better for losses and errors, larger for accuracy and r2.
std::string natural_mode(const std::string& metric) {
  const auto ends = [&](const char* suffix) {
    const std::string s(suffix);
    return metric.size() >= s.size() && metric.compare(metric.size() - s.size(), s.size(), s) == 0;
  };
  return ends("_loss") || ends("_rmse") || ends("_mae") ? "min" : "max";
}

// After the dataset: the metric must be one the dataset's task reports.
Status read_metric(const SpecReader& r, const YAML::Node& node, SweepSpec* spec) {
  YAML::Node name = node;
  if (node.IsMap()) {
    if (Status s = r.check_keys(node, "metric", {"name", "mode"}); !s.ok()) return s;
    if (!node["name"]) return r.error(node, "metric", "missing required key 'name'");
    name = node["name"];
  }
  if (Status s = r.string(name, "metric.name", &spec->metric); !s.ok()) return s;
  if (std::find(known_metrics().begin(), known_metrics().end(), spec->metric) ==
      known_metrics().end())
    return r.error(name, "metric.name",
                   "unknown metric '" + spec->metric + "'" + did_you_mean(spec->metric, known_metrics()));
  const std::vector<std::string>& fits = task_metrics(spec->dataset.task);
  if (std::find(fits.begin(), fits.end(), spec->metric) == fits.end()) {
    std::string listed;
    for (const std::string& m : fits) listed += (listed.empty() ? "" : ", ") + m;
    return r.error(name, "metric.name",
                   "'" + spec->metric + "' is not reported for a " + spec->dataset.task +
                       " dataset (dataset.task: " + spec->dataset.task + "; its metrics: " + listed +
                       ")");
  }
  spec->mode = natural_mode(spec->metric);
  if (node.IsMap() && node["mode"]) {
    if (Status s = r.string(node["mode"], "metric.mode", &spec->mode); !s.ok()) return s;
    if (spec->mode != "max" && spec->mode != "min")
      return r.error(node["mode"], "metric.mode", "must be max or min, got '" + spec->mode + "'");
  }
  return Status::Ok();
}

Status read_domain(const SpecReader& r, const std::string& name, const YAML::Node& node,
                   bool grid, Domain* d) {
  const std::string field = "search.space." + name;
  if (Status s = r.map(node, field); !s.ok()) return s;
  if (Status s = r.check_keys(node, field, {"type", "low", "high", "values", "points", "when"});
      !s.ok())
    return s;
  if (!node["type"]) return r.error(node, field, "missing required key 'type'");
  std::string type;
  if (Status s = r.string(node["type"], field + ".type", &type); !s.ok()) return s;
  if (!parse_domain_kind(type, &d->kind))
    return r.error(node["type"], field + ".type",
                   "unknown type '" + type + "'" +
                       did_you_mean(type, {"float", "log_float", "int", "categorical"}));
  const bool is_float = d->kind == Domain::Kind::kFloat || d->kind == Domain::Kind::kLogFloat;
  if (node["points"]) {
    if (!is_float)
      return r.error(node["points"], field + ".points", "only a float or log_float takes points");
    std::int64_t points = 0;
    if (Status s = r.integer(node["points"], field + ".points", 1, &points); !s.ok()) return s;
    d->grid_points = static_cast<int>(std::min<std::int64_t>(points, SearchGrid::kMaxPoints + 1));
  } else if (grid && is_float) {
    return r.error(node, field, "grid search needs 'points', how many values from low to high");
  }
  if (d->kind == Domain::Kind::kCategorical) {
    const YAML::Node values = node["values"];
    if (!values || !values.IsSequence() || values.size() == 0)
      return r.error(values ? values : node, field, "categorical needs a non-empty list 'values'");
    for (const auto& v : values) {
      ParamValue pv;
      if (Status s = r.scalar(v, field + ".values", &pv); !s.ok()) return s;
      if (Status s = check_hyperparam(name, pv); !s.ok()) return r.error(v, field, s.message());
      d->choices.push_back(pv);
    }
    return Status::Ok();
  }
  for (const char* bound : {"low", "high"})
    if (!node[bound]) return r.error(node, field, std::string("missing required key '") + bound + "'");
  if (d->kind == Domain::Kind::kInt) {
    std::int64_t lo = 0, hi = 0;
    if (Status s = r.integer(node["low"], field + ".low", INT64_MIN, &lo); !s.ok()) return s;
    if (Status s = r.integer(node["high"], field + ".high", INT64_MIN, &hi); !s.ok()) return s;
    d->low = static_cast<double>(lo), d->high = static_cast<double>(hi);
  } else {
    if (Status s = r.number(node["low"], field + ".low", &d->low); !s.ok()) return s;
    if (Status s = r.number(node["high"], field + ".high", &d->high); !s.ok()) return s;
  }
  if (Status s = check_domain(*d); !s.ok()) return r.error(node, field, s.message());
  // Both ends of the domain must be values the trainer accepts; a float grid reaches `high`.
  const ParamValue top = grid && is_float ? ParamValue(d->high) : domain_value(*d, 0.999999);
  for (const ParamValue& v : {domain_value(*d, 0.0), top}) {
    if (Status s = check_hyperparam(name, v); !s.ok()) return r.error(node, field, s.message());
  }
  return Status::Ok();
}

// `when: {optimizer: sgd}` or `when: {optimizer: [sgd, adamw]}`; check_space judges the
// parents and values once every parameter is read.
Status read_when(const SpecReader& r, const std::string& name, const YAML::Node& node,
                 std::vector<Condition>* out) {
  const std::string field = "search.space." + name + ".when";
  if (Status s = r.map(node, field); !s.ok()) return s;
  for (const auto& kv : node) {
    Condition c{kv.first.Scalar(), {}};
    const auto add = [&](const YAML::Node& v) {
      return r.scalar(v, field + "." + c.parent, &c.values.emplace_back());
    };
    if (kv.second.IsSequence()) {
      for (const YAML::Node& v : kv.second)
        if (Status s = add(v); !s.ok()) return s;
    } else if (Status s = add(kv.second); !s.ok()) {
      return s;
    }
    out->push_back(std::move(c));
  }
  return Status::Ok();
}

Status read_search(const SpecReader& r, const YAML::Node& node, SweepSpec* spec) {
  if (Status s = r.map(node, "search"); !s.ok()) return s;
  if (Status s = r.check_keys(node, "search",
                              {"algorithm", "seed", "trials", "budget_epochs", "lag", "space"});
      !s.ok())
    return s;
  if (node["algorithm"]) {
    if (Status s = r.string(node["algorithm"], "search.algorithm", &spec->algorithm); !s.ok())
      return s;
    const auto& known = search_algorithms();
    if (std::find(known.begin(), known.end(), spec->algorithm) == known.end())
      return r.error(node["algorithm"], "search.algorithm",
                     "unknown algorithm '" + spec->algorithm + "'" +
                         did_you_mean(spec->algorithm, known));
  }
  const bool grid = spec->algorithm == "grid";
  if (node["seed"]) {
    std::int64_t seed = 0;
    if (Status s = r.integer(node["seed"], "search.seed", 0, &seed); !s.ok()) return s;
    spec->seed = static_cast<std::uint64_t>(seed);
  }
  if (node["budget_epochs"]) {
    const YAML::Node budget = node["budget_epochs"];
    if (Status s = r.integer(budget, "search.budget_epochs", 1, &spec->budget_epochs); !s.ok())
      return s;
  }
  if (node["lag"]) {
    std::int64_t lag = 0;
    if (Status s = r.integer(node["lag"], "search.lag", 0, &lag); !s.ok()) return s;
    spec->lag = static_cast<int>(std::min<std::int64_t>(lag, 1 << 30));
  }
  std::vector<YAML::Node> keys;  // each parameter's key, where its errors point
  if (node["space"]) {
    if (Status s = r.map(node["space"], "search.space"); !s.ok()) return s;
    for (const auto& kv : node["space"]) {
      const std::string name = kv.first.Scalar();
      const auto& known = hyperparam_names();
      if (std::find(known.begin(), known.end(), name) == known.end())
        return r.error(kv.first, "search.space",
                       "unknown hyperparameter '" + name + "'" + did_you_mean(name, known));
      SearchParam p{name, {}, {}};
      if (Status s = read_domain(r, name, kv.second, grid, &p.domain); !s.ok()) return s;
      if (kv.second["when"])
        if (Status s = read_when(r, name, kv.second["when"], &p.when); !s.ok()) return s;
      spec->space.push_back(std::move(p));
      keys.push_back(kv.first);
    }
    std::size_t culprit = 0;
    if (Status s = check_space(spec->space, &culprit); !s.ok())
      return r.error(keys[culprit], "search.space", s.message());
  }
  std::int64_t trials = 0;
  if (node["trials"]) {
    if (Status s = r.integer(node["trials"], "search.trials", 1, &trials); !s.ok()) return s;
  } else if (!grid) {
    return r.error(node, "search", "missing required key 'trials'");
  }
  if (grid) {
    SearchGrid points;
    if (Status s = SearchGrid::Build(spec->space, &points); !s.ok())
      return r.error(node["space"] ? node["space"] : node, "search.space", s.message());
    trials = trials == 0 ? points.size() : std::min(trials, points.size());
  }
  spec->trials = static_cast<int>(std::min<std::int64_t>(trials, 1 << 30));
  return Status::Ok();
}

Status read_train(const SpecReader& r, const YAML::Node& node, SweepSpec* spec) {
  if (Status s = r.map(node, "train"); !s.ok()) return s;
  for (const auto& kv : node) {
    const std::string name = kv.first.Scalar();
    const auto& known = hyperparam_names();
    if (std::find(known.begin(), known.end(), name) == known.end())
      return r.error(kv.first, "train",
                     "unknown key '" + name + "'" + did_you_mean(name, known));
    for (const auto& p : spec->space)
      if (p.name == name)
        return r.error(kv.first, "train." + name, "is also in search.space; set it in one place");
    ParamValue v;
    if (Status s = r.scalar(kv.second, "train." + name, &v); !s.ok()) return s;
    if (Status s = check_hyperparam(name, v); !s.ok())
      return r.error(kv.second, "train." + name, s.message());
    spec->fixed[name] = v;
  }
  return Status::Ok();
}

Status read_resources(const SpecReader& r, const YAML::Node& node, SweepSpec* spec) {
  if (Status s = r.map(node, "resources"); !s.ok()) return s;
  if (Status s = r.check_keys(node, "resources", {"ranks_per_trial", "max_concurrent_trials"});
      !s.ok())
    return s;
  if (node["max_concurrent_trials"]) {
    std::int64_t n = 0;
    if (Status s = r.integer(node["max_concurrent_trials"], "resources.max_concurrent_trials", 1, &n);
        !s.ok())
      return s;
    spec->max_concurrent_trials = static_cast<int>(std::min<std::int64_t>(n, 1 << 20));
  }
  if (node["ranks_per_trial"]) {
    std::int64_t ranks = 0;
    if (Status s = r.integer(node["ranks_per_trial"], "resources.ranks_per_trial", 1, &ranks);
        !s.ok())
      return s;
    spec->ranks_per_trial = static_cast<int>(std::min<std::int64_t>(ranks, 1 << 20));
  }
  return Status::Ok();
}

// `scheduler:` after `train:`, since the scheduler owns the `epochs` hyperparameter: its
// max_epochs (R) is the trials' epochs, and the two may not disagree.
Status read_scheduler(const SpecReader& r, const YAML::Node& node, SweepSpec* spec) {
  SchedulerSpec& sc = spec->scheduler;
  if (node.IsScalar()) {
    sc.type = node.Scalar();
  } else {
    if (Status s = r.map(node, "scheduler"); !s.ok()) return s;
    if (Status s = r.check_keys(node, "scheduler",
                                {"type", "min_epochs", "reduction_factor", "max_epochs",
                                 "min_trials", "interval", "quantile", "resample_probability"});
        !s.ok())
      return s;
    if (!node["type"]) return r.error(node, "scheduler", "missing required key 'type'");
    if (Status s = r.string(node["type"], "scheduler.type", &sc.type); !s.ok()) return s;
    const auto integer = [&](const char* key, std::int64_t low, int* out) {
      if (!node[key]) return Status::Ok();
      std::int64_t v = 0;
      if (Status s = r.integer(node[key], std::string("scheduler.") + key, low, &v); !s.ok()) return s;
      *out = static_cast<int>(std::min<std::int64_t>(v, 1 << 20));
      return Status::Ok();
    };
    const auto fraction = [&](const char* key, double low, double high, double* out) {
      if (!node[key]) return Status::Ok();
      if (Status s = r.number(node[key], std::string("scheduler.") + key, out); !s.ok()) return s;
      if (!(*out > low && *out <= high))
        return r.error(node[key], std::string("scheduler.") + key,
                       "must be in (" + std::to_string(low) + ", " + std::to_string(high) + "]");
      return Status::Ok();
    };
    for (Status s : {integer("min_epochs", 1, &sc.min_epochs),
                     integer("reduction_factor", 2, &sc.reduction_factor),
                     integer("max_epochs", 1, &sc.max_epochs),
                     integer("min_trials", 1, &sc.min_trials), integer("interval", 1, &sc.interval),
                     fraction("quantile", 0, 0.5, &sc.quantile),
                     fraction("resample_probability", -1e-300, 1, &sc.resample_probability)})
      if (!s.ok()) return s;
  }
  const YAML::Node at = node.IsMap() ? node["type"] : node;
  static const std::vector<std::string> kTypes = {"fifo", "median", "asha", "hyperband", "pbt"};
  if (std::find(kTypes.begin(), kTypes.end(), sc.type) == kTypes.end())
    return r.error(at, "scheduler.type",
                   "unknown scheduler '" + sc.type + "'" + did_you_mean(sc.type, kTypes));
  for (const auto& p : spec->space)
    if (p.name == "epochs" && sc.type != "fifo")
      return r.error(at, "scheduler.type",
                     sc.type + " decides how many epochs each trial trains, so 'epochs' cannot be "
                     "searched; set scheduler.max_epochs instead");
  const auto fixed = spec->fixed.find("epochs");
  if (fixed != spec->fixed.end()) {
    const int epochs = static_cast<int>(std::get<std::int64_t>(fixed->second));
    if (sc.max_epochs != 0 && sc.max_epochs != epochs)
      return r.error(node["max_epochs"], "scheduler.max_epochs",
                     "is " + std::to_string(sc.max_epochs) + " but train.epochs is " +
                         std::to_string(epochs) + "; set one of them");
    sc.max_epochs = epochs;
  } else if (sc.max_epochs != 0) {
    spec->fixed["epochs"] = static_cast<std::int64_t>(sc.max_epochs);
  }
  if (sc.max_epochs != 0 && sc.min_epochs > sc.max_epochs)
    return r.error(node.IsMap() && node["min_epochs"] ? node["min_epochs"] : at,
                   "scheduler.min_epochs",
                   "is " + std::to_string(sc.min_epochs) + ", more than the " +
                       std::to_string(sc.max_epochs) + " epochs a trial gets");
  return Status::Ok();
}

}  // namespace

const std::vector<std::string>& search_algorithms() {
  static const std::vector<std::string> kAlgorithms = {"random", "grid", "sobol", "tpe"};
  return kAlgorithms;
}

const std::vector<std::string>& task_metrics(const std::string& task) {
  static const std::vector<std::string> kClassification = {"train_loss", "val_loss", "val_acc",
                                                           "test_loss", "test_acc"};
  static const std::vector<std::string> kRegression = {
      "train_loss", "val_loss", "val_rmse", "val_mae", "val_r2",
      "test_loss",  "test_rmse", "test_mae", "test_r2"};
  return task == "regression" ? kRegression : kClassification;
}

const std::vector<std::string>& known_metrics() {
  static const std::vector<std::string> kMetrics = [] {
    std::vector<std::string> all = task_metrics("classification");
    for (const std::string& m : task_metrics("regression"))
      if (std::find(all.begin(), all.end(), m) == all.end()) all.push_back(m);
    return all;
  }();
  return kMetrics;
}

std::string default_metric(const std::string& task) {
  return task == "regression" ? "val_rmse" : "val_acc";
}

std::string SweepSpec::hash() const {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ULL;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string experiment_name_problem(const std::string& name) {
  static const std::string kRule =
      " (the name becomes the checkpoint directory: 1 to " + std::to_string(kMaxExperimentName) +
      " letters, digits, '.', '_' or '-', starting with a letter or digit, without '..')";
  if (name.empty()) return "must not be empty" + kRule;
  if (name.size() > kMaxExperimentName)
    return "is " + std::to_string(name.size()) + " characters long" + kRule;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (name_char(static_cast<char>(c))) continue;
    char shown[16];
    if (c >= 0x20 && c < 0x7f)
      std::snprintf(shown, sizeof shown, "'%c'", c);
    else
      std::snprintf(shown, sizeof shown, "byte 0x%02x", c);
    return "'" + name + "' has " + shown + " at character " + std::to_string(i + 1) + kRule;
  }
  if (!std::isalnum(static_cast<unsigned char>(name[0])))
    return "'" + name + "' starts with '" + name[0] + "'" + kRule;
  if (name.find("..") != std::string::npos) return "'" + name + "' contains '..'" + kRule;
  return "";
}

Status load_sweep_spec(const std::string& path, SweepSpec* out, DatasetCheck dataset) {
  std::ifstream in(path);
  if (!in) return Status::Error(path + ": cannot open the sweep spec");
  std::stringstream text;
  text << in.rdbuf();
  return parse_sweep_spec(text.str(), path, out, dataset);
}

Status parse_sweep_spec(const std::string& text, const std::string& source, SweepSpec* out,
                        DatasetCheck dataset) {
  SpecReader r(source);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    return Status::Error(source + ":" + std::to_string(e.mark.line + 1) + ":" +
                         std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
  }
  SweepSpec spec;
  spec.source = source;
  spec.text = text;
  try {
    if (!root.IsMap()) return r.error(root, "", "a sweep spec must be a mapping at top level");
    if (Status s = r.check_keys(root, "",
                                {"name", "description", "dataset", "metric", "search", "train",
                                 "resources", "scheduler", "keep_models"});
        !s.ok())
      return s;
    for (const char* key : {"name", "dataset", "search"})
      if (!root[key]) return r.error(root, "", std::string("missing required key '") + key + "'");
    if (Status s = r.string(root["name"], "name", &spec.name); !s.ok()) return s;
    if (std::string why = experiment_name_problem(spec.name); !why.empty())
      return r.error(root["name"], "name", why);
    if (Status s = read_dataset(r, root["dataset"], dataset, &spec.dataset); !s.ok()) return s;
    spec.metric = default_metric(spec.dataset.task);
    spec.mode = natural_mode(spec.metric);
    if (root["metric"])
      if (Status s = read_metric(r, root["metric"], &spec); !s.ok()) return s;
    if (Status s = read_search(r, root["search"], &spec); !s.ok()) return s;
    spec.dataset.split_seed = spec.seed;  // one split per experiment, the same for every trial
    if (root["train"])
      if (Status s = read_train(r, root["train"], &spec); !s.ok()) return s;
    if (root["resources"])
      if (Status s = read_resources(r, root["resources"], &spec); !s.ok()) return s;
    if (root["scheduler"])
      if (Status s = read_scheduler(r, root["scheduler"], &spec); !s.ok()) return s;
    if (root["keep_models"]) {
      std::int64_t keep = 0;
      if (Status s = r.integer(root["keep_models"], "keep_models", 0, &keep); !s.ok()) return s;
      spec.keep_models = static_cast<int>(std::min<std::int64_t>(keep, 1 << 20));
    }
  } catch (const YAML::Exception& e) {
    return Status::Error(source + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  *out = std::move(spec);
  return Status::Ok();
}

}  // namespace trellis
