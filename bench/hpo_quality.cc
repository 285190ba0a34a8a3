// bench_hpo_quality: how good our searchers' proposals are, against a peer run in the same
// invocation, on standard test functions (bench/hpo_functions.h).
//
// TPE vs Optuna: on Branin, Hartmann-6 and 4-D Rosenbrock, our TPE searcher and Optuna's
// TPESampler (bench/hpo_quality_optuna.py, the same functions and boxes) each run `--trials`
// sequential trials (propose, evaluate, observe) for seeds 0..--seeds-1 (default 30). Optuna is
// configured as ours is, from our TpeOptions: multivariate=True, the same n_startup_trials,
// n_ei_candidates and prior_weight; its default gamma (best ceil(n/10), at most 25) and
// default_weights, which ours reimplements; consider_endpoints=False and consider_magic_clip=True
// as ours. What cannot be set alike is printed: the kernel width rule (ours: the larger gap to
// the neighbours per dimension, Optuna's univariate rule; Optuna multivariate: Scott's rule,
// 0.2 n^(-1/(d+4)) of the range; both clipped by the same magic clip). A figure is the median
// over seeds of the regret of the best value, best - known minimum, and tpe_vs_optuna is ours /
// Optuna's: at most 1 when ours is at least as good. Spread: each side's quartiles over seeds and
// a 95% bootstrap interval of the ratio of medians (seeds resampled, 2,000 times).
//
// ASHA vs random search: the Fashion-MNIST MLP sweep through `trellis run`, several seeds, with
// Hyperband and TPE+ASHA beside ASHA (bench/hpo_asha.h states the setting and the measure,
// fixed in advance); adds asha_epoch_fraction.
//
//   bench_hpo_quality [--trials N] [--seeds N] [--python EXE] [--only tpe|asha]
//                     [--asha-seeds N] [--train-rows N] [--random-trials N] [--max-epochs N]
//                     [--groups N] [--dataset DIR] [--bin DIR (trellis and trellis-worker)]
//
// Each section prints its table and adds its keys to the one JSON object printed last:
// {"bench", "trials", "seeds", "tpe_vs_optuna": {function: ratio}, "tpe_vs_optuna_ci":
//  {function: [low, high]}, "tpe_regret" / "optuna_regret": {function: [q1, median, q3]},
//  "tpe_config", "optuna_config", "optuna_version", "asha_epoch_fraction", ... (hpo_asha.h)}.
// Exits 1 when a section could not run (its keys are then null).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/hpo_asha.h"
#include "bench/hpo_functions.h"
#include "bench/sweep_run.h"
#include "common/status.h"
#include "coordinator/search/searcher.h"
#include "coordinator/search/tpe_searcher.h"

namespace {

using trellis::Status;
using trellis::bench::HpoFunction;

struct Options {
  int trials = 50;
  int seeds = 30;
  // Debian's python3-optuna lives in the system interpreter's dist-packages; a pyenv or venv
  // python3 earlier in PATH would not see it.
  std::string python = "/usr/bin/python3";
  std::string only;  // one section, or all when empty
  trellis::bench::AshaBenchOptions asha = {TRELLIS_BIN_DIR, "/usr/share/datasets/fashion-mnist"};
};

// The q-quantile, linearly interpolated between order statistics.
double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

double median(const std::vector<double>& v) { return quantile(v, 0.5); }

nlohmann::json quartiles(const std::vector<double>& v) {
  return {quantile(v, 0.25), quantile(v, 0.5), quantile(v, 0.75)};
}

// A 95% interval of median(ours) / median(theirs), each side's seeds resampled with
// replacement; a fixed generator seed, so the same results give the same interval.
std::array<double, 2> bootstrap_ratio(const std::vector<double>& ours,
                                      const std::vector<double>& theirs) {
  constexpr int kResamples = 2000;
  std::mt19937_64 rng(12);
  std::vector<double> ratios, a(ours.size()), b(theirs.size());
  for (int r = 0; r < kResamples; ++r) {
    for (double& x : a) x = ours[rng() % ours.size()];
    for (double& x : b) x = theirs[rng() % theirs.size()];
    ratios.push_back(median(a) / median(b));
  }
  return {quantile(ratios, 0.025), quantile(ratios, 0.975)};
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
  const trellis::coordinator::TpeOptions tpe;
  const std::string cmd = o.python + " " TRELLIS_SOURCE_DIR "/bench/hpo_quality_optuna.py" +
                          " --trials " + std::to_string(o.trials) + " --seeds " +
                          std::to_string(o.seeds) + " --n-startup-trials " +
                          std::to_string(tpe.startup_trials) + " --n-ei-candidates " +
                          std::to_string(tpe.candidates) + " --prior-weight " +
                          std::to_string(tpe.parzen.prior_weight) + " 2>&1";
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

// Our TPE's settings, as the searcher the bench runs holds them.
nlohmann::json our_config() {
  const trellis::coordinator::TpeOptions tpe;
  return {{"multivariate", true},
          {"n_startup_trials", tpe.startup_trials},
          {"n_ei_candidates", tpe.candidates},
          {"prior_weight", tpe.parzen.prior_weight},
          {"consider_endpoints", false},
          {"gamma", "min(ceil(n/10), 25)"},
          {"weights", "flat to 25, then older ramp down (default_weights)"},
          {"bandwidth", "larger neighbour gap per dimension"},
          {"consider_magic_clip", true}};
}

// TPE vs Optuna's TPESampler; adds tpe_vs_optuna, its interval and each side's quartiles.
Status tpe_vs_optuna(const Options& o, nlohmann::json* result) {
  const auto& functions = trellis::bench::hpo_functions();
  for (const char* key : {"tpe_vs_optuna", "tpe_vs_optuna_ci", "tpe_regret", "optuna_regret"})
    (*result)[key] = nullptr;
  nlohmann::json optuna;
  if (Status s = run_optuna(o, &optuna); !s.ok()) return s.With("optuna peer");
  nlohmann::json optuna_config = optuna.value("config", nlohmann::json::object());
  optuna_config["bandwidth"] = "Scott's rule, 0.2 n^(-1/(d+4)) of the range (multivariate)";
  (*result)["optuna_version"] = optuna.value("optuna", "?");
  (*result)["tpe_config"] = our_config();
  (*result)["optuna_config"] = optuna_config;
  std::printf("TPE vs Optuna %s TPESampler: %d sequential trials, seeds 0..%d\n",
              optuna.value("optuna", "?").c_str(), o.trials, o.seeds - 1);
  std::printf("  ours:   %s\n  optuna: %s\n", our_config().dump().c_str(),
              optuna_config.dump().c_str());
  std::printf("regret = best - known minimum; q1 / median / q3 over seeds; ratio of medians with "
              "its 95%% bootstrap interval\n");
  std::printf("%-12s %10s %32s %32s %8s %18s\n", "function", "minimum", "ours regret q1/med/q3",
              "optuna regret q1/med/q3", "ratio", "95% interval");
  for (const HpoFunction& fn : functions) {
    if (!optuna.contains(fn.name) || optuna[fn.name].size() != static_cast<std::size_t>(o.seeds))
      return Status::Error("optuna peer gave no results for " + fn.name);
    std::vector<double> ours, theirs;
    for (int seed = 0; seed < o.seeds; ++seed) {
      ours.push_back(our_best("tpe", fn, static_cast<std::uint64_t>(seed), o.trials) - fn.minimum);
      theirs.push_back(optuna[fn.name][static_cast<std::size_t>(seed)].get<double>() - fn.minimum);
    }
    const nlohmann::json q_ours = quartiles(ours), q_theirs = quartiles(theirs);
    const double ratio = median(ours) / median(theirs);
    const auto ci = bootstrap_ratio(ours, theirs);
    char a[64], b[64];
    std::snprintf(a, sizeof a, "%.3g / %.3g / %.3g", q_ours[0].get<double>(),
                  q_ours[1].get<double>(), q_ours[2].get<double>());
    std::snprintf(b, sizeof b, "%.3g / %.3g / %.3g", q_theirs[0].get<double>(),
                  q_theirs[1].get<double>(), q_theirs[2].get<double>());
    std::printf("%-12s %10g %32s %32s %8.3f    [%.3f, %.3f]\n", fn.name.c_str(), fn.minimum, a, b,
                ratio, ci[0], ci[1]);
    (*result)["tpe_vs_optuna"][fn.name] = ratio;
    (*result)["tpe_vs_optuna_ci"][fn.name] = {ci[0], ci[1]};
    (*result)["tpe_regret"][fn.name] = q_ours;
    (*result)["optuna_regret"][fn.name] = q_theirs;
  }
  return Status::Ok();
}

// ASHA, Hyperband and TPE+ASHA vs random search on Fashion-MNIST; adds asha_epoch_fraction.
Status asha_vs_random(const Options& o, nlohmann::json* result) {
  (*result)["asha_epoch_fraction"] = nullptr;
  trellis::bench::prepare_environment();
  const nlohmann::json asha = trellis::bench::asha_vs_random(o.asha);
  if (asha.is_null()) return Status::Error("the early-stopping vs random search sweeps did not run");
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
    else if (a == "--asha-seeds" && has_value) o.asha.seeds = std::max(1, std::atoi(argv[++i]));
    else if (a == "--train-rows" && has_value) o.asha.train_rows = std::max(1, std::atoi(argv[++i]));
    else if (a == "--random-trials" && has_value) o.asha.random_trials = std::max(1, std::atoi(argv[++i]));
    else if (a == "--max-epochs" && has_value) o.asha.max_epochs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--groups" && has_value) o.asha.groups = std::max(1, std::atoi(argv[++i]));
    else if (a == "--dataset" && has_value) o.asha.dataset = argv[++i];
    else if (a == "--bin" && has_value) o.asha.bin = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: bench_hpo_quality [--trials N] [--seeds N] [--python EXE] "
                   "[--only tpe|asha] [--asha-seeds N] [--train-rows N] [--random-trials N] [--max-epochs N] [--groups N] "
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
