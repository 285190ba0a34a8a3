#pragma once
// Synthetic sweeps whose parameters matter by known amounts, for the importance tests and for
// the comparison with Optuna (importance_trials.cc).
//
//   kTwoOfSix  six parameters (four floats, one log float, one categorical); the objective is
//              2 sin(3 x1) + 3 x2 + noise: only x1 and x2 matter.
//   kGraded    the same six, each mattering by a different amount:
//              3 sin(3 x1) + 2 x2^2 + 1.2 x3 + 2.4 (x4 - 0.5)^2 + 0.3 log10(x5) / 4
//              + {a: 0, b: 0.15, c: -0.1}[x6] + noise.
// Parameters are drawn uniformly (x5 log-uniformly) from the seed.

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/param_value.h"
#include "common/search_space.h"

namespace trellis::dashboard::testing {

enum class Sweep { kTwoOfSix, kGraded };

struct SyntheticSweep {
  std::vector<SearchParam> space;
  std::vector<ParamMap> rows;
  std::vector<double> values;
};

inline SyntheticSweep make_sweep(Sweep kind, int trials, std::uint64_t seed) {
  SyntheticSweep s;
  auto numeric = [&](const char* name, Domain::Kind k, double low, double high) {
    SearchParam p;
    p.name = name;
    p.domain.kind = k;
    p.domain.low = low;
    p.domain.high = high;
    s.space.push_back(p);
  };
  numeric("x1", Domain::Kind::kFloat, 0, 1);
  numeric("x2", Domain::Kind::kFloat, 0, 1);
  numeric("x3", Domain::Kind::kFloat, 0, 1);
  numeric("x4", Domain::Kind::kFloat, 0, 1);
  numeric("x5", Domain::Kind::kLogFloat, 1e-4, 1);
  SearchParam c;
  c.name = "x6";
  c.domain.kind = Domain::Kind::kCategorical;
  c.domain.choices = {std::string("a"), std::string("b"), std::string("c")};
  s.space.push_back(c);

  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> noise(0, 0.02);
  for (int t = 0; t < trials; ++t) {
    ParamMap p;
    double x[5];
    for (int k = 0; k < 4; ++k) p["x" + std::to_string(k + 1)] = x[k] = u(rng);
    p["x5"] = x[4] = std::pow(10.0, -4 + 4 * u(rng));
    const int choice = static_cast<int>(u(rng) * 3) % 3;
    p["x6"] = std::string(1, static_cast<char>('a' + choice));
    double y = 0;
    if (kind == Sweep::kTwoOfSix) {
      y = 2 * std::sin(3 * x[0]) + 3 * x[1];
    } else {
      const double category[3] = {0, 0.15, -0.1};
      y = 3 * std::sin(3 * x[0]) + 2 * x[1] * x[1] + 1.2 * x[2] +
          2.4 * (x[3] - 0.5) * (x[3] - 0.5) + 0.3 * std::log10(x[4]) / 4 + category[choice];
    }
    s.rows.push_back(p);
    s.values.push_back(y + noise(rng));
  }
  return s;
}

}  // namespace trellis::dashboard::testing
