#include "bench/hpo_asha.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string_view>
#include <vector>

#include "bench/sweep_run.h"

namespace trellis::bench {
namespace {

struct Method {
  const char* name;
  const char* key;  // of its JSON keys and sweep names
  const char* algorithm;
  const char* scheduler;
};

// Random search first: its epochs are the budget the others get a third of.
constexpr Method kRandom = {"random, FIFO", "random", "random", "fifo"};
constexpr Method kEarlyStopping[] = {
    {"ASHA", "asha", "random", "{type: asha, min_epochs: 1, reduction_factor: 3}"},
    {"Hyperband", "hyperband", "random", "{type: hyperband, min_epochs: 1, reduction_factor: 3}"},
    {"TPE+ASHA", "tpe_asha", "tpe", "{type: asha, min_epochs: 1, reduction_factor: 3}"},
};
constexpr int kBudgetDivisor = 3;

std::vector<Method> all_methods() {
  std::vector<Method> methods = {kRandom};
  methods.insert(methods.end(), std::begin(kEarlyStopping), std::end(kEarlyStopping));
  return methods;
}  // the measure's fraction, fixed before any run

std::string spec_text(const AshaBenchOptions& o, const std::string& dataset,
                      const std::string& name, const Method& m, int seed, int trials,
                      long budget_epochs) {
  std::ostringstream out;
  out << "name: " << name << "\n"
      << "dataset: {name: fashion-mnist, format: idx, path: " << dataset
      << ", validation_fraction: 0.1}\n"
      << "metric: {name: val_acc, mode: max}\n"
      << "search:\n"
      << "  algorithm: " << m.algorithm << "\n"
      << "  seed: " << seed << "\n"
      << "  trials: " << trials << "\n";
  if (budget_epochs > 0) out << "  budget_epochs: " << budget_epochs << "\n";
  // Wide on purpose, as a first sweep is: many configurations are poor, which early
  // stopping should notice after an epoch instead of training them through.
  out << "  space:\n"
      << "    lr: {type: log_float, low: 1.0e-5, high: 1.0e-1}\n"
      << "    hidden_units: {type: int, low: 16, high: 512}\n"
      << "    hidden_layers: {type: int, low: 1, high: 3}\n"
      << "    activation: {type: categorical, values: [relu, tanh]}\n"
      << "    batch_size: {type: categorical, values: [64, 128, 256]}\n"
      << "    dropout: {type: float, low: 0.0, high: 0.5}\n"
      << "train: {model: mlp, optimizer: adam, epochs: " << o.max_epochs << "}\n"
      << "scheduler: " << m.scheduler << "\n"
      << "resources: {ranks_per_trial: 1}\n";
  return out.str();
}

struct Outcome {
  double test_acc = -1;  // of the trial with the best val_acc
  double val_acc = -1;
  long epochs = 0;  // trained, summed over trials
  int trials = 0;
};

Outcome outcome_of(const nlohmann::json& exported) {
  Outcome o;
  for (const auto& t : exported["trials"]) {
    ++o.trials;
    if (t["metrics"].contains("val_acc")) o.epochs += static_cast<long>(t["metrics"]["val_acc"].size());
    const auto& f = t["final"];
    if (!f.contains("val_acc") || !f.contains("test_acc") || f["val_acc"].is_null()) continue;
    if (f["val_acc"].get<double>() > o.val_acc) {
      o.val_acc = f["val_acc"];
      o.test_acc = f["test_acc"];
    }
  }
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Copies the first `rows` records of one IDX file (gzip or raw) to a raw one; false on a
// short or unreadable file (reported).
bool write_idx_prefix(const std::string& from, const std::string& to, int rows) {
  gzFile in = gzopen(from.c_str(), "rb");
  if (in == nullptr) {
    std::fprintf(stderr, "cannot open %s\n", from.c_str());
    return false;
  }
  unsigned char header[16];
  bool ok = gzread(in, header, 4) == 4;
  const int dims = ok ? header[3] : 0;
  ok = ok && dims >= 1 && dims <= 3 && gzread(in, header + 4, 4 * dims) == 4 * dims;
  long record = 1;
  for (int d = 1; ok && d < dims; ++d) {
    const unsigned char* p = header + 4 + 4 * d;
    record *= (long{p[0]} << 24) | (long{p[1]} << 16) | (long{p[2]} << 8) | p[3];
  }
  std::vector<char> body(ok ? static_cast<std::size_t>(record * rows) : 0);
  ok = ok && gzread(in, body.data(), static_cast<unsigned>(body.size())) == static_cast<int>(body.size());
  gzclose(in);
  if (!ok) {
    std::fprintf(stderr, "%s: not an IDX file with at least %d records\n", from.c_str(), rows);
    return false;
  }
  const unsigned char n[4] = {static_cast<unsigned char>(rows >> 24), static_cast<unsigned char>(rows >> 16),
                              static_cast<unsigned char>(rows >> 8), static_cast<unsigned char>(rows)};
  std::copy(n, n + 4, header + 4);
  std::ofstream out(to, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header), 4 + 4 * dims);
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
  return static_cast<bool>(out);
}

// DIR/data: the first `rows` training images and labels, and the full test set (linked).
std::string make_subset(const AshaBenchOptions& o, const std::string& dir) {
  const std::string data = dir + "/data";
  if (::mkdir(data.c_str(), 0755) != 0) return {};
  for (const char* kind : {"images-idx3", "labels-idx1"}) {
    const std::string file = std::string("-") + kind + "-ubyte";
    std::string from = o.dataset + "/train" + file;
    if (::access(from.c_str(), R_OK) != 0) from += ".gz";
    if (!write_idx_prefix(from, data + "/train" + file, o.train_rows)) return {};
    std::string test = o.dataset + "/t10k" + file;
    if (::access(test.c_str(), R_OK) != 0) test += ".gz";
    const std::string link = data + "/t10k" + file + (test.size() > 3 && test.substr(test.size() - 3) == ".gz" ? ".gz" : "");
    if (::symlink(test.c_str(), link.c_str()) != 0) {
      std::perror(("symlink " + link).c_str());
      return {};
    }
  }
  return data;
}

}  // namespace

nlohmann::json asha_vs_random(const AshaBenchOptions& options) {
  const std::string dir = make_temp_dir("hpo-asha");
  if (dir.empty()) return nullptr;
  const std::string data = make_subset(options, dir);
  if (data.empty()) return nullptr;
  const std::vector<std::string> args = {"--groups", std::to_string(options.groups)};
  const long budget = static_cast<long>(options.random_trials) * options.max_epochs;
  const long reduced = budget / kBudgetDivisor;
  std::printf("\nEarly stopping vs random search: Fashion-MNIST MLP, first %d training images "
              "(10%% validation), full test set, <= %d epochs, %d groups, seeds 0..%d; random "
              "search %d trials x %d epochs = %ld, the others a budget of B/%d = %ld epochs "
              "(files in %s)\n",
              options.train_rows, options.max_epochs, options.groups, options.seeds - 1,
              options.random_trials, options.max_epochs, budget, kBudgetDivisor, reduced,
              dir.c_str());
  std::printf("%-14s %5s %7s %7s %9s %9s %8s\n", "run", "seed", "trials", "epochs", "val_acc",
              "test_acc", "wall_s");
  std::map<std::string, std::vector<double>> test_acc, fraction;
  // Seeds outermost: the methods interleave, so a change in the machine's load over the
  // section spreads over all of them.
  for (int seed = 0; seed < options.seeds; ++seed) {
    double random_epochs = 0;
    for (const Method& m : all_methods()) {
      const bool is_random = std::string_view(m.key) == kRandom.key;
      const std::string name = std::string(m.key) + "-s" + std::to_string(seed);
      SweepRun run;
      // Enough trials that the budget, not the trial count, ends an early-stopping sweep.
      const std::string spec = spec_text(options, data, name, m, seed,
                                         is_random ? options.random_trials : static_cast<int>(reduced),
                                         is_random ? 0 : reduced);
      if (!run_sweep(options.bin, dir, name, spec, args, &run)) return nullptr;
      const Outcome o = outcome_of(run.exported);
      std::printf("%-14s %5d %7d %7ld %9.4f %9.4f %8.1f\n", m.name, seed, o.trials, o.epochs,
                  o.val_acc, o.test_acc, run.wall_s);
      std::fflush(stdout);
      if (is_random) random_epochs = static_cast<double>(o.epochs);
      test_acc[m.key].push_back(o.test_acc);
      fraction[m.key].push_back(static_cast<double>(o.epochs) / random_epochs);
    }
  }

  const double random_median = median(test_acc[kRandom.key]);
  nlohmann::json result = {{"asha_setting", {{"train_rows", options.train_rows},
                                             {"max_epochs", options.max_epochs},
                                             {"random_trials", options.random_trials},
                                             {"budget_fraction", 1.0 / kBudgetDivisor},
                                             {"seeds", options.seeds}}},
                           {"random_epochs", budget}};
  std::printf("\nmedian over seeds [min, max]: test_acc of the best-val_acc trial; epochs / "
              "random search's\n");
  for (const Method& m : all_methods()) {
    const std::vector<double>& accs = test_acc[m.key];
    const std::vector<double>& f = fraction[m.key];
    const auto [lo, hi] = std::minmax_element(accs.begin(), accs.end());
    const auto [flo, fhi] = std::minmax_element(f.begin(), f.end());
    const double acc = median(accs), frac = median(f);
    const bool is_random = std::string_view(m.key) == kRandom.key, reached = acc >= random_median;
    std::printf("%-14s test_acc %.4f [%.4f, %.4f]  epoch fraction %.3f [%.3f, %.3f]  %s\n", m.name,
                acc, *lo, *hi, frac, *flo, *fhi,
                is_random ? "" : reached ? "reaches random search" : "below random search");
    const std::string key = m.key;
    result[key + "_test_acc"] = {acc, *lo, *hi};
    if (is_random) continue;
    result[key + "_epoch_fraction"] = reached ? nlohmann::json(frac) : nlohmann::json(nullptr);
    result[key + "_epoch_fraction_if_reached"] = frac;
    result[key + "_test_acc_minus_random"] = acc - random_median;
  }
  return result;
}

}  // namespace trellis::bench
