// fANOVA on synthetic sweeps whose parameters matter by known amounts.

#include "coordinator/dashboard/param_importance.h"

#include <gtest/gtest.h>

#include <numeric>

#include "dashboard/synthetic_sweep.h"

namespace trellis::dashboard {
namespace {

using testing::make_sweep;
using testing::Sweep;

std::vector<std::string> ranking(const std::vector<std::pair<std::string, double>>& importances) {
  std::vector<std::string> names;
  for (const auto& [name, value] : importances) names.push_back(name);
  return names;
}

class TwoOfSix : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(TwoOfSix, TheTwoThatMatterRankFirst) {
  const auto sweep = make_sweep(Sweep::kTwoOfSix, 200, GetParam());
  FanovaOptions options;
  options.seed = GetParam();
  std::vector<std::pair<std::string, double>> out;
  ASSERT_TRUE(fanova_importance(sweep.space, sweep.rows, sweep.values, options, &out).ok());
  ASSERT_EQ(out.size(), 6u);
  const std::vector<std::string> names = ranking(out);
  EXPECT_EQ((std::set<std::string>{names[0], names[1]}), (std::set<std::string>{"x1", "x2"}));
  EXPECT_GT(out[0].second + out[1].second, 0.9) << "the two explain nearly all of it";
  double total = 0;
  for (const auto& [name, value] : out) total += value;
  EXPECT_NEAR(total, 1.0, 1e-9);
}

INSTANTIATE_TEST_SUITE_P(Seeds, TwoOfSix, ::testing::Values(1, 2, 3, 4));

TEST(ParamImportanceTest, GradedParametersRankInTheirOrder) {
  const auto sweep = make_sweep(Sweep::kGraded, 400, 9);
  FanovaOptions options;
  options.seed = 9;
  std::vector<std::pair<std::string, double>> out;
  ASSERT_TRUE(fanova_importance(sweep.space, sweep.rows, sweep.values, options, &out).ok());
  const std::vector<std::string> names = ranking(out);
  // x1 (variance ~0.9), x2 (~0.36), x3 (~0.12) are far apart; the three small ones are close.
  EXPECT_EQ(names[0], "x1");
  EXPECT_EQ(names[1], "x2");
  EXPECT_EQ(names[2], "x3");
}

TEST(ParamImportanceTest, TheSameTrialsGiveTheSameNumbers) {
  const auto sweep = make_sweep(Sweep::kGraded, 150, 4);
  FanovaOptions options;
  options.seed = 4;
  std::vector<std::pair<std::string, double>> a, b;
  ASSERT_TRUE(fanova_importance(sweep.space, sweep.rows, sweep.values, options, &a).ok());
  ASSERT_TRUE(fanova_importance(sweep.space, sweep.rows, sweep.values, options, &b).ok());
  EXPECT_EQ(a, b);
}

TEST(ParamImportanceTest, AConstantObjectiveExplainsNothing) {
  auto sweep = make_sweep(Sweep::kTwoOfSix, 50, 1);
  std::fill(sweep.values.begin(), sweep.values.end(), 0.25);
  std::vector<std::pair<std::string, double>> out;
  ASSERT_TRUE(fanova_importance(sweep.space, sweep.rows, sweep.values, {}, &out).ok());
  ASSERT_EQ(out.size(), 6u);
  for (const auto& [name, value] : out) EXPECT_EQ(value, 0.0) << name;
}

TEST(ParamImportanceTest, AParameterSomeTrialsLackIsLeftOut) {
  auto sweep = make_sweep(Sweep::kTwoOfSix, 60, 2);
  sweep.rows[7].erase("x3");  // conditional: absent when its parent took another value
  std::vector<std::pair<std::string, double>> out;
  ASSERT_TRUE(fanova_importance(sweep.space, sweep.rows, sweep.values, {}, &out).ok());
  const std::vector<std::string> names = ranking(out);
  EXPECT_EQ(names.size(), 5u);
  EXPECT_EQ(std::count(names.begin(), names.end(), "x3"), 0);
}

TEST(ParamImportanceTest, TooFewTrialsOrAForeignChoiceAreErrors) {
  auto sweep = make_sweep(Sweep::kTwoOfSix, 1, 2);
  std::vector<std::pair<std::string, double>> out;
  Status s = fanova_importance(sweep.space, sweep.rows, sweep.values, {}, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("fewer than two"), std::string::npos) << s.message();

  sweep = make_sweep(Sweep::kTwoOfSix, 20, 2);
  sweep.rows[3]["x6"] = std::string("z");
  s = fanova_importance(sweep.space, sweep.rows, sweep.values, {}, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("x6"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace trellis::dashboard
