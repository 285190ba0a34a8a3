#pragma once
// Standard black-box test functions for hyperparameter optimisers, shared by the searcher tests
// and bench/hpo_quality (whose Optuna peer, bench/hpo_quality_optuna.py, defines the same ones).
// Each is minimised over a box; `minimum` is the known global minimum, so `best - minimum` is
// the regret.

#include <array>
#include <cmath>
#include <string>
#include <vector>

namespace trellis::bench {

struct HpoFunction {
  std::string name;
  std::vector<std::array<double, 2>> bounds;  // [low, high] per dimension
  double minimum;
  double (*f)(const std::vector<double>& x);
};

// Branin-Hoo on x1 in [-5, 10], x2 in [0, 15]; three global minima of 0.397887.
inline double branin(const std::vector<double>& x) {
  constexpr double kPi = 3.14159265358979323846;
  const double b = 5.1 / (4 * kPi * kPi), c = 5 / kPi, t = 1 / (8 * kPi);
  const double y = x[1] - b * x[0] * x[0] + c * x[0] - 6;
  return y * y + 10 * (1 - t) * std::cos(x[0]) + 10;
}

// Hartmann 6-D on [0, 1]^6; global minimum -3.32237.
inline double hartmann6(const std::vector<double>& x) {
  static constexpr double kAlpha[4] = {1.0, 1.2, 3.0, 3.2};
  static constexpr double kA[4][6] = {{10, 3, 17, 3.5, 1.7, 8},
                                      {0.05, 10, 17, 0.1, 8, 14},
                                      {3, 3.5, 1.7, 10, 17, 8},
                                      {17, 8, 0.05, 10, 0.1, 14}};
  static constexpr double kP[4][6] = {{0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886},
                                      {0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991},
                                      {0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650},
                                      {0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381}};
  double sum = 0;
  for (int i = 0; i < 4; ++i) {
    double inner = 0;
    for (int j = 0; j < 6; ++j) inner += kA[i][j] * (x[j] - kP[i][j]) * (x[j] - kP[i][j]);
    sum += kAlpha[i] * std::exp(-inner);
  }
  return -sum;
}

// Rosenbrock in 4-D on [-5, 10]^4, the usual box; global minimum 0 at (1, 1, 1, 1).
inline double rosenbrock(const std::vector<double>& x) {
  double sum = 0;
  for (std::size_t i = 0; i + 1 < x.size(); ++i)
    sum += 100 * std::pow(x[i + 1] - x[i] * x[i], 2) + std::pow(1 - x[i], 2);
  return sum;
}

inline const std::vector<HpoFunction>& hpo_functions() {
  static const std::vector<HpoFunction> kFunctions = {
      {"branin", {{-5, 10}, {0, 15}}, 0.397887, branin},
      {"hartmann6", std::vector<std::array<double, 2>>(6, {0, 1}), -3.32237, hartmann6},
      {"rosenbrock4", std::vector<std::array<double, 2>>(4, {-5, 10}), 0, rosenbrock},
  };
  return kFunctions;
}

}  // namespace trellis::bench
