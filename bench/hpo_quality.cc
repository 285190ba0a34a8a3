// bench_hpo_quality: how good our searchers' proposals are, against a peer run in the same
// invocation, on standard test functions (bench/hpo_functions.h).
//
// TPE vs Optuna: on Branin, Hartmann-6 and 4-D Rosenbrock, our TPE searcher and Optuna's default
// TPESampler(seed=s) (bench/hpo_quality_optuna.py, the same functions and boxes) each run
// `--trials` sequential trials (propose, evaluate, observe) for seeds 0..--seeds-1. A function's
// figure is the median over seeds of the regret of the best value, best - known minimum
// (Rosenbrock's minimum is 0, so its regret is its value), and tpe_vs_optuna is ours / Optuna's:
// at most 1 when ours is at least as good.
//
// ASHA vs random search: the Fashion-MNIST MLP sweep at equal budgets of epochs, through
// `trellis run` (bench/hpo_asha.h explains the measure); adds asha_epoch_fraction.
//
//   bench_hpo_quality [--trials N] [--seeds N] [--python EXE] [--only tpe|asha]
//                     [--random-trials N] [--max-epochs N] [--groups N] [--dataset DIR]
//                     [--bin DIR (trellis and trellis-worker)]
//
// Each section prints its table and adds its keys to the one JSON object printed last:
// {"bench", "trials", "seeds", "tpe_vs_optuna": {function: ratio}, "tpe_regret": {...},
//  "optuna_regret": {...}, "optuna_version", "asha_epoch_fraction", "random_epochs",
//  "asha_epochs", "random_test_acc", "asha_test_acc"}. Exits 1 when a section could not run
// (its keys are then null).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/hpo_asha.h"
#include "bench/hpo_functions.h"
#include "bench/sweep_run.h"
#include "common/status.h"
#include "coordinator/search/searcher.h"

namespace {

using trellis::Status;
using trellis::bench::HpoFunction;

struct Options {
  int trials = 50;
  int seeds = 10;
  // Debian's python3-optuna lives in the system interpreter's dist-packages; a pyenv or venv
  // python3 earlier in PATH would not see it.
  std::string python = "/usr/bin/python3";
  std::string only;  // one section, or all when empty
  trellis::bench::AshaBenchOptions asha = {TRELLIS_BIN_DIR, "/usr/share/datasets/fashion-mnist"};
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The best value our `algorithm` finds on `fn` in `trials` sequential trials.
double our_best(const std::string& algorithm, const HpoFunction& fn, std::uint64_t seed,
                int trials) {
  std::vector<trellis::SearchParam> space;
  for (std::size_t d = 0; d < fn.bounds.size(); ++d)
    space.push_back({"x" + std::to_string(d),
                     {trellis::Domain::Kind::kFloat, fn.bounds[d][0], fn.bounds[d][1], {}},
                     {}});
  std::unique_ptr<trellis::coordinator::Searcher> searcher;
  if (Status s = trellis::coordinator::make_searcher(algorithm, space, seed, &searcher); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.message().c_str());
    std::exit(1);
  }
  double best = INFINITY;
  for (std::int32_t n = 0; n < trials; ++n) {
    const trellis::ParamMap params = *searcher->propose(n);
    std::vector<double> x;
    for (std::size_t d = 0; d < fn.bounds.size(); ++d)
      x.push_back(std::get<double>(params.at("x" + std::to_string(d))));
    const double y = fn.f(x);
    best = std::min(best, y);
    searcher->observe(n, params, y);
  }
  return best;
}

// Runs the Optuna peer; on success `out` holds {function: [best value per seed]}.
Status run_optuna(const Options& o, nlohmann::json* out) {
  const std::string cmd = o.python + " " TRELLIS_SOURCE_DIR "/bench/hpo_quality_optuna.py" +
                          " --trials " + std::to_string(o.trials) + " --seeds " +
                          std::to_string(o.seeds) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return Status::Error("cannot start " + o.python);
  std::string out_text, last;
  char line[1 << 16];
  while (std::fgets(line, sizeof line, p)) {
    out_text += line;
    if (line[0] == '{') last = line;
  }
  const int rc = pclose(p);
  const auto j = nlohmann::json::parse(last, nullptr, false);
  if (j.is_discarded() || j.contains("error") || rc != 0) {
    std::fputs(out_text.c_str(), stdout);
    return Status::Error(!j.is_discarded() && j.contains("error")
                             ? j["error"].get<std::string>()
                             : "peer exited with status " + std::to_string(rc));
  }
  *out = j;
  return Status::Ok();
}

// TPE vs Optuna's TPESampler; adds tpe_vs_optuna, tpe_regret and optuna_regret.
Status tpe_vs_optuna(const Options& o, nlohmann::json* result) {
  const auto& functions = trellis::bench::hpo_functions();
  for (const char* key : {"tpe_vs_optuna", "tpe_regret", "optuna_regret"})
    (*result)[key] = nullptr;
  nlohmann::json optuna;
  if (Status s = run_optuna(o, &optuna); !s.ok()) return s.With("optuna peer");
  (*result)["optuna_version"] = optuna.value("optuna", "?");
  std::printf("TPE vs Optuna %s TPESampler (defaults): %d sequential trials, median over seeds "
              "0..%d of the best value's regret (best - known minimum)\n",
              optuna.value("optuna", "?").c_str(), o.trials, o.seeds - 1);
  std::printf("%-12s %10s %12s %14s %10s\n", "function", "minimum", "ours regret",
              "optuna regret", "ours/optuna");
  for (const HpoFunction& fn : functions) {
    if (!optuna.contains(fn.name) || optuna[fn.name].size() != static_cast<std::size_t>(o.seeds))
      return Status::Error("optuna peer gave no results for " + fn.name);
    std::vector<double> ours, theirs;
    for (int seed = 0; seed < o.seeds; ++seed) {
      ours.push_back(our_best("tpe", fn, static_cast<std::uint64_t>(seed), o.trials) - fn.minimum);
      theirs.push_back(optuna[fn.name][static_cast<std::size_t>(seed)].get<double>() - fn.minimum);
    }
    const double ours_regret = median(ours), optuna_regret = median(theirs);
    const double ratio = ours_regret / optuna_regret;
    std::printf("%-12s %10g %12.4g %14.4g %10.3f\n", fn.name.c_str(), fn.minimum, ours_regret,
                optuna_regret, ratio);
    (*result)["tpe_vs_optuna"][fn.name] = ratio;
    (*result)["tpe_regret"][fn.name] = ours_regret;
    (*result)["optuna_regret"][fn.name] = optuna_regret;
  }
  return Status::Ok();
}

// ASHA vs random search on Fashion-MNIST; adds asha_epoch_fraction and its inputs.
Status asha_vs_random(const Options& o, nlohmann::json* result) {
  (*result)["asha_epoch_fraction"] = nullptr;
  trellis::bench::prepare_environment();
  const nlohmann::json asha = trellis::bench::asha_vs_random(o.asha);
  if (asha.is_null()) return Status::Error("the ASHA vs random search sweeps did not run");
  result->update(asha);
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--trials" && has_value) o.trials = std::max(1, std::atoi(argv[++i]));
    else if (a == "--seeds" && has_value) o.seeds = std::max(1, std::atoi(argv[++i]));
    else if (a == "--python" && has_value) o.python = argv[++i];
    else if (a == "--only" && has_value) o.only = argv[++i];
    else if (a == "--random-trials" && has_value) o.asha.random_trials = std::max(1, std::atoi(argv[++i]));
    else if (a == "--max-epochs" && has_value) o.asha.max_epochs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--groups" && has_value) o.asha.groups = std::max(1, std::atoi(argv[++i]));
    else if (a == "--dataset" && has_value) o.asha.dataset = argv[++i];
    else if (a == "--bin" && has_value) o.asha.bin = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: bench_hpo_quality [--trials N] [--seeds N] [--python EXE] "
                   "[--only tpe|asha] [--random-trials N] [--max-epochs N] [--groups N] "
                   "[--dataset DIR] [--bin DIR]\n");
      return 2;
    }
  }
  nlohmann::json result = {{"bench", "hpo_quality"}, {"trials", o.trials}, {"seeds", o.seeds}};
  int rc = 0;
  const std::pair<const char*, Status (*)(const Options&, nlohmann::json*)> sections[] = {
      {"tpe", tpe_vs_optuna}, {"asha", asha_vs_random}};
  for (const auto& [name, section] : sections) {
    if (!o.only.empty() && o.only != name) continue;
    if (Status s = section(o, &result); !s.ok()) {
      std::printf("%s\n", s.message().c_str());
      rc = 1;
    }
  }
  std::printf("%s\n", result.dump().c_str());
  return rc;
}
