#include "common/search_space.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

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
