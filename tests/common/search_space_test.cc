#include "common/search_space.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "common/search_grid.h"
#include "common/train_config.h"

namespace trellis {
namespace {

TEST(SearchSpace, DomainValuesStayInsideTheirBounds) {
  const Domain f{Domain::Kind::kFloat, -1, 3, {}};
  const Domain lf{Domain::Kind::kLogFloat, 1e-4, 1e-1, {}};
  const Domain i{Domain::Kind::kInt, 2, 5, {}};
  std::set<std::int64_t> ints;
  for (int k = 0; k < 1000; ++k) {
    const double u = k / 1000.0;
    const double fv = std::get<double>(domain_value(f, u));
    EXPECT_GE(fv, -1);
    EXPECT_LT(fv, 3);
    const double lv = std::get<double>(domain_value(lf, u));
    EXPECT_GE(lv, 1e-4 * (1 - 1e-12));
    EXPECT_LT(lv, 1e-1);
    ints.insert(std::get<std::int64_t>(domain_value(i, u)));
  }
  EXPECT_EQ(ints, (std::set<std::int64_t>{2, 3, 4, 5}));  // inclusive on both ends, nothing else
  // Log-uniform: the midpoint of u is the geometric mean.
  EXPECT_NEAR(std::get<double>(domain_value(lf, 0.5)), std::sqrt(1e-4 * 1e-1), 1e-9);
}

TEST(SearchSpace, CategoricalCoversEveryChoice) {
  const Domain c{Domain::Kind::kCategorical, 0, 0, {std::string("a"), std::int64_t{2}, 0.5}};
  EXPECT_EQ(std::get<std::string>(domain_value(c, 0.0)), "a");
  EXPECT_EQ(std::get<std::int64_t>(domain_value(c, 0.5)), 2);
  EXPECT_EQ(std::get<double>(domain_value(c, 0.99)), 0.5);
}

TEST(SearchSpace, CheckDomainRefusesEmptyAndContradictory) {
  EXPECT_FALSE(check_domain({Domain::Kind::kFloat, 1, 1, {}}).ok());
  EXPECT_FALSE(check_domain({Domain::Kind::kLogFloat, -1, 1, {}}).ok());
  EXPECT_FALSE(check_domain({Domain::Kind::kInt, 5, 4, {}}).ok());
  EXPECT_FALSE(check_domain({Domain::Kind::kCategorical, 0, 0, {}}).ok());
  EXPECT_TRUE(check_domain({Domain::Kind::kInt, 4, 4, {}}).ok());
}

// optimizer, and momentum only under sgd.
std::vector<SearchParam> conditional_space() {
  return {{"momentum", {Domain::Kind::kFloat, 0, 0.99, {}}, {{"optimizer", {std::string("sgd")}}}},
          {"optimizer",
           {Domain::Kind::kCategorical, 0, 0, {std::string("sgd"), std::string("adam")}},
           {}},
          {"lr", {Domain::Kind::kLogFloat, 1e-4, 1e-1, {}}, {}}};
}

void expect_refused(const std::vector<SearchParam>& space, std::size_t culprit,
                    std::initializer_list<const char*> parts) {
  std::size_t at = space.size();
  const Status s = check_space(space, &at);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(at, culprit) << s.message();
  EXPECT_NE(s.message().find("'" + space[culprit].name + "'"), std::string::npos) << s.message();
  for (const char* p : parts) EXPECT_NE(s.message().find(p), std::string::npos) << s.message();
}

TEST(SearchSpace, CheckSpaceAcceptsConditionsOnKnownValues) {
  EXPECT_TRUE(check_space(conditional_space()).ok());
  auto space = conditional_space();
  space[0].when[0].values.push_back(std::string("adam"));  // [sgd, adam]
  space.push_back({"hidden_units", {Domain::Kind::kInt, 1, 8, {}}, {}});
  space.push_back({"dropout", {Domain::Kind::kFloat, 0, 0.5, {}}, {{"hidden_units", {2.0}}}});
  EXPECT_TRUE(check_space(space).ok());  // the int 2 matches 2.0
}

TEST(SearchSpace, CheckSpaceRefusesNamingTheParameter) {
  auto space = conditional_space();
  space[2].domain = {Domain::Kind::kLogFloat, 0, 1e-1, {}};
  expect_refused(space, 2, {"low > 0"});
  space = conditional_space();
  space[2].domain = {Domain::Kind::kFloat, 0.5, 0.5, {}};
  expect_refused(space, 2, {"low < high"});
  space = conditional_space();
  space[1].domain.choices.clear();
  expect_refused(space, 1, {"no values"});
  space = conditional_space();
  space[0].when[0].parent = "optimiser";
  expect_refused(space, 0, {"unknown parameter 'optimiser'"});
  space = conditional_space();
  space[0].when[0].values = {std::string("rmsprop")};
  expect_refused(space, 0, {"'optimizer'", "rmsprop", "never takes"});
  space = conditional_space();
  space[0].when[0].values.clear();
  expect_refused(space, 0, {"lists no values"});
  space = conditional_space();
  space[2].when = {{"lr", {0.01}}};
  expect_refused(space, 2, {"conditioned on itself"});
  space = conditional_space();
  space.push_back(space[2]);
  expect_refused(space, 3, {"twice"});
}

TEST(SearchSpace, CheckSpaceRefusesACycleNamingItsMembers) {
  auto space = conditional_space();
  space[1].when = {{"momentum", {0.5}}};  // optimizer needs momentum, which needs optimizer
  std::size_t at = 0;
  const Status s = check_space(space, &at);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cycle"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("momentum -> optimizer -> momentum"), std::string::npos)
      << s.message();
  EXPECT_LT(at, 2u);
}

TEST(SearchSpace, OrderPutsParentsFirstAndKeepsTheRest) {
  const auto ordered = order_by_conditions(conditional_space());
  ASSERT_EQ(ordered.size(), 3u);
  EXPECT_EQ(ordered[0].name, "optimizer");
  EXPECT_EQ(ordered[1].name, "momentum");
  EXPECT_EQ(ordered[2].name, "lr");
  const auto plain = order_by_conditions({{"b", {}, {}}, {"a", {}, {}}});
  EXPECT_EQ(plain[0].name, "b");
}

TEST(SearchSpace, ConditionalParameterIsActiveOnlyUnderItsParentsValue) {
  const SearchParam momentum = conditional_space()[0];
  EXPECT_TRUE(is_active(momentum, {{"optimizer", std::string("sgd")}}));
  EXPECT_FALSE(is_active(momentum, {{"optimizer", std::string("adam")}}));
  EXPECT_FALSE(is_active(momentum, {}));  // the parent itself absent
  EXPECT_TRUE(is_active(conditional_space()[2], {}));
}

TEST(SearchGrid, FloatsIncludeBothEndsAndLogFloatsAreEvenInLogSpace) {
  Domain f{Domain::Kind::kFloat, 0, 1, {}};
  f.grid_points = 5;
  const auto fv = grid_values(f);
  ASSERT_EQ(fv.size(), 5u);
  for (std::size_t i = 0; i < fv.size(); ++i)
    EXPECT_DOUBLE_EQ(std::get<double>(fv[i]), static_cast<double>(i) / 4);
  Domain lf{Domain::Kind::kLogFloat, 1e-4, 1e-2, {}};
  lf.grid_points = 3;
  const auto lv = grid_values(lf);
  ASSERT_EQ(lv.size(), 3u);
  EXPECT_EQ(std::get<double>(lv[0]), 1e-4);
  EXPECT_NEAR(std::get<double>(lv[1]), 1e-3, 1e-15);
  EXPECT_EQ(std::get<double>(lv[2]), 1e-2);
  EXPECT_EQ(grid_values({Domain::Kind::kInt, -1, 2, {}}).size(), 4u);
  f.grid_points = 0;
  EXPECT_TRUE(grid_values(f).empty());
}

TEST(SearchGrid, RefusesAFloatWithoutPointsAndAHugeGrid) {
  SearchGrid grid;
  const Status s = SearchGrid::Build({{"lr", {Domain::Kind::kFloat, 0, 1, {}}, {}}}, &grid);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'lr'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("points"), std::string::npos) << s.message();
  std::vector<SearchParam> huge;
  for (const char* name : {"a", "b", "c"})
    huge.push_back({name, {Domain::Kind::kInt, 1, 101, {}}, {}});  // 101^3 > kMaxPoints
  EXPECT_FALSE(SearchGrid::Build(huge, &grid).ok());
}

TEST(TrainConfig, ParamsOverrideDefaultsAndBadOnesAreRefused) {
  TrainConfig c;
  ASSERT_TRUE(train_config_from_params({{"lr", 0.01}, {"hidden_units", std::int64_t{32}},
                                        {"optimizer", std::string("sgd")}},
                                       &c).ok());
  EXPECT_EQ(c.lr, 0.01);
  EXPECT_EQ(c.hidden_units, 32);
  EXPECT_EQ(c.optimizer, "sgd");
  EXPECT_EQ(c.epochs, TrainConfig{}.epochs);
  EXPECT_FALSE(train_config_from_params({{"lr", std::string("fast")}}, &c).ok());
  EXPECT_FALSE(train_config_from_params({{"epochs", 2.5}}, &c).ok());
  EXPECT_FALSE(train_config_from_params({{"lr", -1.0}}, &c).ok());
  EXPECT_FALSE(train_config_from_params({{"learning_rate", 0.1}}, &c).ok());
}

}  // namespace
}  // namespace trellis
