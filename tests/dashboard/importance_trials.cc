// Prints a synthetic sweep (synthetic_sweep.h) and our fANOVA importances of it as JSON, for
// importance_vs_optuna.py to give the same trials to Optuna:
//   importance_trials two-of-six|graded TRIALS SEED
//   -> {"space": [{"name", "kind", "low", "high", "choices"}], "trials": [{"params", "value"}],
//       "ours": {NAME: IMPORTANCE}}

#include <cstdlib>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "coordinator/dashboard/param_importance.h"
#include "coordinator/params_codec.h"
#include "dashboard/synthetic_sweep.h"

int main(int argc, char** argv) {
  using namespace trellis;
  using nlohmann::json;
  if (argc != 4) {
    std::cerr << "usage: importance_trials two-of-six|graded TRIALS SEED\n";
    return 2;
  }
  const std::string kind = argv[1];
  const auto sweep = dashboard::testing::make_sweep(
      kind == "graded" ? dashboard::testing::Sweep::kGraded : dashboard::testing::Sweep::kTwoOfSix,
      std::atoi(argv[2]), std::strtoull(argv[3], nullptr, 10));
  std::vector<std::pair<std::string, double>> ours;
  dashboard::FanovaOptions options;
  options.seed = std::strtoull(argv[3], nullptr, 10);
  if (Status s = dashboard::fanova_importance(sweep.space, sweep.rows, sweep.values, options, &ours);
      !s.ok()) {
    std::cerr << s.message() << "\n";
    return 1;
  }
  json out;
  for (const SearchParam& p : sweep.space) {
    json choices = json::array();
    for (const ParamValue& c : p.domain.choices) choices.push_back(std::get<std::string>(c));
    out["space"].push_back({{"name", p.name},
                            {"kind", to_string(p.domain.kind)},
                            {"low", p.domain.low},
                            {"high", p.domain.high},
                            {"choices", choices}});
  }
  for (std::size_t t = 0; t < sweep.rows.size(); ++t)
    out["trials"].push_back(
        {{"params", coordinator::params_object(sweep.rows[t])}, {"value", sweep.values[t]}});
  for (const auto& [name, value] : ours) out["ours"][name] = value;
  std::cout << out.dump() << "\n";
  return 0;
}
