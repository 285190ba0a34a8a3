#include "coordinator/dashboard/param_importance.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "common/sweep_spec.h"
#include "coordinator/trial_state.h"

namespace trellis::dashboard {
namespace {

// The forest's input: one column per numeric parameter, one per choice of a categorical one;
// `groups[p]` lists parameter p's columns.
struct Design {
  std::vector<std::vector<double>> x;  // rows x columns
  std::vector<double> low, high;       // each column's bounds
  std::vector<std::vector<int>> groups;
  std::vector<std::string> names;
};

struct Node {
  int column = -1;  // -1: a leaf
  double threshold = 0;
  int left = -1, right = -1;
  double value = 0;  // the mean of its rows
};

class Tree {
 public:
  Tree(const Design& design, const std::vector<double>& y, std::vector<int> rows, int max_depth)
      : design_(design), y_(y), max_depth_(max_depth) {
    grow(std::move(rows), 0);
  }

  // Every leaf's box and value, for the variance decomposition.
  struct Leaf {
    std::vector<double> low, high;
    double value = 0;
  };
  std::vector<Leaf> leaves() const {
    std::vector<Leaf> out;
    Leaf box{design_.low, design_.high, 0};
    collect(0, &box, &out);
    return out;
  }
  // The thresholds the tree splits `column` at, sorted, unique.
  std::vector<double> thresholds(int column) const {
    std::set<double> found;
    for (const Node& n : nodes_)
      if (n.column == column) found.insert(n.threshold);
    return {found.begin(), found.end()};
  }

 private:
  int grow(std::vector<int> rows, int depth) {
    const int index = static_cast<int>(nodes_.size());
    nodes_.emplace_back();
    double sum = 0;
    for (int r : rows) sum += y_[r];
    nodes_[index].value = sum / static_cast<double>(rows.size());
    if (depth >= max_depth_ || rows.size() < 2) return index;

    // The split that lowers the squared error most: per column, rows sorted by it, every
    // midpoint between distinct neighbours tried with running sums.
    const double n = static_cast<double>(rows.size());
    double best_gain = 1e-12 * std::max(1.0, std::fabs(sum)), best_threshold = 0;
    int best_column = -1;
    std::vector<int> sorted = rows;
    for (int c = 0; c < static_cast<int>(design_.low.size()); ++c) {
      std::sort(sorted.begin(), sorted.end(),
                [&](int a, int b) { return design_.x[a][c] < design_.x[b][c]; });
      double left_sum = 0;
      for (std::size_t i = 0; i + 1 < sorted.size(); ++i) {
        left_sum += y_[sorted[i]];
        const double a = design_.x[sorted[i]][c], b = design_.x[sorted[i + 1]][c];
        if (!(a < b)) continue;
        const double nl = static_cast<double>(i + 1), nr = n - nl;
        const double right_sum = sum - left_sum;
        // Reduction of the sum of squares: the between-children part of the variance.
        const double gain = left_sum * left_sum / nl + right_sum * right_sum / nr - sum * sum / n;
        if (gain > best_gain) {
          best_gain = gain;
          best_column = c;
          best_threshold = a + (b - a) / 2;
        }
      }
    }
    if (best_column < 0) return index;
    std::vector<int> left, right;
    for (int r : rows) (design_.x[r][best_column] <= best_threshold ? left : right).push_back(r);
    rows.clear();
    rows.shrink_to_fit();
    nodes_[index].column = best_column;
    nodes_[index].threshold = best_threshold;
    const int l = grow(std::move(left), depth + 1);
    nodes_[index].left = l;
    const int r = grow(std::move(right), depth + 1);
    nodes_[index].right = r;
    return index;
  }

  void collect(int index, Leaf* box, std::vector<Leaf>* out) const {
    const Node& node = nodes_[index];
    if (node.column < 0) {
      out->push_back(*box);
      out->back().value = node.value;
      return;
    }
    const double saved_high = box->high[node.column], saved_low = box->low[node.column];
    box->high[node.column] = std::min(saved_high, node.threshold);
    collect(node.left, box, out);
    box->high[node.column] = saved_high;
    box->low[node.column] = std::max(saved_low, node.threshold);
    collect(node.right, box, out);
    box->low[node.column] = saved_low;
  }

  const Design& design_;
  const std::vector<double>& y_;
  int max_depth_;
  std::vector<Node> nodes_;
};

double share(double low, double high, double range) {
  return range > 0 ? std::max(0.0, high - low) / range : 1.0;
}

// The fraction of `tree`'s variance over the space that the columns of one parameter explain
// alone (step 3 of the header's algorithm); 0 for a tree that does not vary.
double explained_fraction(const Tree& tree, const std::vector<Tree::Leaf>& leaves,
                          const Design& design, const std::vector<int>& columns) {
  const std::size_t width = design.low.size();
  std::vector<double> range(width);
  for (std::size_t c = 0; c < width; ++c) range[c] = design.high[c] - design.low[c];

  // Leaf weights: over all columns, and over the columns outside the parameter.
  double mean = 0;
  std::vector<double> outside(leaves.size());
  for (std::size_t l = 0; l < leaves.size(); ++l) {
    double all = 1, rest = 1;
    for (std::size_t c = 0; c < width; ++c) {
      const double s = share(leaves[l].low[c], leaves[l].high[c], range[c]);
      all *= s;
      if (std::find(columns.begin(), columns.end(), static_cast<int>(c)) == columns.end()) rest *= s;
    }
    mean += all * leaves[l].value;
    outside[l] = rest;
  }
  double variance = 0;
  for (const Tree::Leaf& leaf : leaves) {
    double all = 1;
    for (std::size_t c = 0; c < width; ++c) all *= share(leaf.low[c], leaf.high[c], range[c]);
    variance += all * (leaf.value - mean) * (leaf.value - mean);
  }
  if (!(variance > 0)) return 0;

  // Cells: the product of each column's intervals between the tree's thresholds on it.
  std::vector<std::vector<double>> cuts(columns.size());
  std::size_t cells = 1;
  for (std::size_t k = 0; k < columns.size(); ++k) {
    const int c = columns[k];
    cuts[k].push_back(design.low[c]);
    for (double t : tree.thresholds(c))
      if (t > design.low[c] && t < design.high[c]) cuts[k].push_back(t);
    cuts[k].push_back(design.high[c]);
    cells *= cuts[k].size() - 1;
  }
  // The tree averaged over the other columns with this parameter inside a cell: every leaf
  // whose box holds the cell (cells never straddle a threshold) counts by its share of the
  // other columns. One column (every numeric parameter) sums by intervals: a leaf spans a run
  // of cells, added at its start and taken off at its end.
  std::vector<double> marginal(cells, 0);
  if (columns.size() == 1) {
    const std::vector<double>& cut = cuts[0];
    std::vector<double> step(cells + 1, 0);
    for (std::size_t l = 0; l < leaves.size(); ++l) {
      const auto begin = std::lower_bound(cut.begin(), cut.end(), leaves[l].low[columns[0]]);
      const auto end = std::lower_bound(cut.begin(), cut.end(), leaves[l].high[columns[0]]);
      step[begin - cut.begin()] += outside[l] * leaves[l].value;
      step[std::min<std::size_t>(end - cut.begin(), cells)] -= outside[l] * leaves[l].value;
    }
    double running = 0;
    for (std::size_t cell = 0; cell < cells; ++cell) marginal[cell] = running += step[cell];
  }
  double marginal_mean = 0, marginal_square = 0, total_weight = 0;
  std::vector<std::size_t> at(columns.size(), 0);
  for (std::size_t cell = 0; cell < cells; ++cell) {
    std::size_t rest = cell;
    double weight = 1;
    for (std::size_t k = 0; k < columns.size(); ++k) {
      at[k] = rest % (cuts[k].size() - 1);
      rest /= cuts[k].size() - 1;
      weight *= share(cuts[k][at[k]], cuts[k][at[k] + 1], range[columns[k]]);
    }
    if (!(weight > 0)) continue;
    if (columns.size() > 1) {
      for (std::size_t l = 0; l < leaves.size(); ++l) {
        bool holds = true;
        for (std::size_t k = 0; k < columns.size() && holds; ++k) {
          const double mid = (cuts[k][at[k]] + cuts[k][at[k] + 1]) / 2;
          holds = leaves[l].low[columns[k]] <= mid && mid <= leaves[l].high[columns[k]];
        }
        if (holds) marginal[cell] += outside[l] * leaves[l].value;
      }
    }
    marginal_mean += weight * marginal[cell];
    marginal_square += weight * marginal[cell] * marginal[cell];
    total_weight += weight;
  }
  marginal_mean /= total_weight;
  const double marginal_variance = marginal_square / total_weight - marginal_mean * marginal_mean;
  return std::max(0.0, marginal_variance) / variance;
}

// One parameter's columns in `design`, filled from every row.
Status add_parameter(const SearchParam& param, const std::vector<ParamMap>& rows, Design* design) {
  std::vector<int> columns;
  const std::size_t first = design->low.size();
  if (param.domain.kind == Domain::Kind::kCategorical) {
    for (std::size_t k = 0; k < param.domain.choices.size(); ++k) {
      columns.push_back(static_cast<int>(first + k));
      design->low.push_back(0);
      design->high.push_back(1);
    }
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const ParamValue& v = rows[r].at(param.name);
      const auto it = std::find(param.domain.choices.begin(), param.domain.choices.end(), v);
      if (it == param.domain.choices.end())
        return Status::Error("parameter " + param.name + " took " + to_string(v) +
                             ", which is not among its choices");
      for (std::size_t k = 0; k < param.domain.choices.size(); ++k)
        design->x[r].push_back(it - param.domain.choices.begin() == static_cast<long>(k) ? 1 : 0);
    }
  } else {
    columns.push_back(static_cast<int>(first));
    double low = param.domain.low, high = param.domain.high;
    for (std::size_t r = 0; r < rows.size(); ++r) {
      double v = 0;
      if (!as_double(rows[r].at(param.name), &v))
        return Status::Error("parameter " + param.name + " is not numeric in every trial");
      design->x[r].push_back(v);
      low = std::min(low, v);
      high = std::max(high, v);
    }
    design->low.push_back(low);
    design->high.push_back(high);
  }
  design->groups.push_back(columns);
  design->names.push_back(param.name);
  return Status::Ok();
}

// The trial's final value of `metric`, else its last reported one; false if neither is finite.
bool objective_of(const coordinator::TrialSummary& t, const std::string& metric, double* out) {
  for (const MetricMap* m : {&t.final_metrics, &t.last_metrics}) {
    if (const auto it = m->find(metric); it != m->end()) {
      *out = it->second;
      return std::isfinite(*out);
    }
  }
  return false;
}

}  // namespace

Status fanova_importance(const std::vector<SearchParam>& space, const std::vector<ParamMap>& rows,
                         const std::vector<double>& values, const FanovaOptions& options,
                         std::vector<std::pair<std::string, double>>* out) {
  out->clear();
  if (rows.size() != values.size()) return Status::Error("fanova: rows and values differ in count");
  if (rows.size() < 2) return Status::Error("fewer than two completed trials to compare");
  Design design;
  design.x.resize(rows.size());
  for (const SearchParam& param : space) {
    const bool everywhere = std::all_of(rows.begin(), rows.end(),
                                        [&](const ParamMap& r) { return r.count(param.name) > 0; });
    if (!everywhere) continue;
    if (Status s = add_parameter(param, rows, &design); !s.ok()) return s;
  }
  if (design.groups.empty()) return Status::Error("no searched parameter is set in every trial");

  std::mt19937_64 rng(options.seed);
  std::uniform_int_distribution<int> pick(0, static_cast<int>(rows.size()) - 1);
  std::vector<double> importance(design.groups.size(), 0);
  for (int t = 0; t < options.trees; ++t) {
    std::vector<int> sample(rows.size());
    for (int& r : sample) r = pick(rng);
    const Tree tree(design, values, std::move(sample), options.max_depth);
    const std::vector<Tree::Leaf> leaves = tree.leaves();
    for (std::size_t p = 0; p < design.groups.size(); ++p)
      importance[p] += explained_fraction(tree, leaves, design, design.groups[p]);
  }
  const double total = std::accumulate(importance.begin(), importance.end(), 0.0);
  for (std::size_t p = 0; p < design.groups.size(); ++p)
    out->emplace_back(design.names[p], total > 0 ? importance[p] / total : 0.0);
  std::stable_sort(out->begin(), out->end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return Status::Ok();
}

Status parameter_importance(const coordinator::ExperimentRecord& experiment,
                            const std::vector<coordinator::TrialSummary>& trials,
                            ImportanceResult* out) {
  *out = ImportanceResult();
  SweepSpec spec;
  if (Status s = parse_sweep_spec(experiment.spec_yaml, "the spec of " + experiment.name, &spec,
                                  DatasetCheck::kOnTheWorkers);
      !s.ok())
    return s;
  if (spec.space.empty()) return Status::Error("the sweep searched no parameter");
  std::vector<const coordinator::TrialSummary*> used;
  std::vector<double> objectives;
  for (const coordinator::TrialSummary& t : trials) {
    double v = 0;
    if (t.state == coordinator::TrialState::kCompleted && objective_of(t, experiment.metric, &v)) {
      used.push_back(&t);
      objectives.push_back(v);
    }
  }
  std::vector<ParamMap> rows;
  std::vector<double> values;
  const std::size_t count = std::min(used.size(), kMaxImportanceTrials);
  for (std::size_t k = 0; k < count; ++k) {
    const std::size_t i = k * used.size() / count;
    rows.push_back(used[i]->params);
    values.push_back(objectives[i]);
  }
  FanovaOptions options;
  options.seed = experiment.seed;
  if (Status s = fanova_importance(spec.space, rows, values, options, &out->importances); !s.ok())
    return s;
  out->trials_used = static_cast<std::int64_t>(rows.size());
  return Status::Ok();
}

}  // namespace trellis::dashboard
