#include "worker/optimizer.h"

#include <gtest/gtest.h>

namespace trellis::worker {
namespace {

std::unique_ptr<Optimizer> make(const OptimizerOptions& o, std::int64_t n) {
  std::unique_ptr<Optimizer> opt;
  EXPECT_TRUE(make_optimizer(o, n, &opt).ok());
  return opt;
}

// Two steps so the state (velocity, moments, bias correction) matters; the expected values are
// worked by hand in the comments.
TEST(Optimizer, SgdMomentumWithWeightDecay) {
  OptimizerOptions o;
  o.kind = OptimizerKind::kSgd;
  o.lr = 0.1f;
  o.momentum = 0.9f;
  o.weight_decay = 0.01f;
  auto opt = make(o, 2);
  Eigen::VectorXf p(2), g(2);
  p << 1.0f, -2.0f;
  g << 0.5f, 0.25f;
  // g' = g + 0.01 p = (0.51, 0.23); v = g'; p -= 0.1 v.
  opt->step(p, g);
  EXPECT_NEAR(p[0], 0.949f, 1e-6);
  EXPECT_NEAR(p[1], -2.023f, 1e-6);
  // g' = (0.50949, 0.22977); v = 0.9 (0.51, 0.23) + g' = (0.96849, 0.43677); p -= 0.1 v.
  opt->step(p, g);
  EXPECT_NEAR(p[0], 0.852151f, 1e-6);
  EXPECT_NEAR(p[1], -2.066677f, 1e-6);
  EXPECT_EQ(opt->steps(), 2);
}

TEST(Optimizer, PlainSgd) {
  OptimizerOptions o;
  o.kind = OptimizerKind::kSgd;
  o.lr = 0.5f;
  auto opt = make(o, 1);
  Eigen::VectorXf p(1), g(1);
  p << 1.0f;
  g << 0.2f;
  opt->step(p, g);
  opt->step(p, g);  // no momentum: the same step twice
  EXPECT_NEAR(p[0], 0.8f, 1e-6);
}

TEST(Optimizer, AdamBiasCorrected) {
  OptimizerOptions o;  // adam, beta1 .9, beta2 .999, eps 1e-8
  o.lr = 0.1f;
  auto opt = make(o, 2);
  Eigen::VectorXf p(2), g(2);
  p << 1.0f, -2.0f;
  g << 0.5f, -0.25f;
  // Step 1: m_hat = g, v_hat = g^2, so each parameter moves by lr * sign(g).
  opt->step(p, g);
  EXPECT_NEAR(p[0], 0.9f, 1e-6);
  EXPECT_NEAR(p[1], -1.9f, 1e-6);
  // Step 2 with g = (0.1, 0.5): m = (0.055, 0.0275), v = (2.5975e-4, 3.124375e-4);
  // p -= 0.1 * (m / 0.19) / (sqrt(v / 0.001999) + 1e-8).
  g << 0.1f, 0.5f;
  opt->step(p, g);
  EXPECT_NEAR(p[0], 0.8196959f, 2e-6);
  EXPECT_NEAR(p[1], -1.9366104f, 2e-6);
}

TEST(Optimizer, OptionsFromConfig) {
  TrainConfig c;
  c.optimizer = "sgd";
  c.lr = 0.25;
  c.momentum = 0.5;
  c.weight_decay = 1e-4;
  OptimizerOptions o;
  ASSERT_TRUE(optimizer_options_from_config(c, &o).ok());
  EXPECT_EQ(o.kind, OptimizerKind::kSgd);
  EXPECT_FLOAT_EQ(o.lr, 0.25f);
  EXPECT_FLOAT_EQ(o.momentum, 0.5f);
  EXPECT_FLOAT_EQ(o.weight_decay, 1e-4f);
  c.optimizer = "rmsprop";
  const Status s = optimizer_options_from_config(c, &o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rmsprop"), std::string::npos);
}

}  // namespace
}  // namespace trellis::worker
