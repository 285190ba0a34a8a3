#include "worker/models/mlp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <tuple>
#include <vector>

namespace trellis::worker {
namespace {

constexpr int kInputs = 5;
constexpr int kUnits = 4;
constexpr int kClasses = 3;
constexpr int kBatch = 6;

struct Problem {
  Eigen::MatrixXf x;
  std::vector<std::int32_t> labels;
};

Problem make_problem(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Problem p;
  p.x.resize(kInputs, kBatch);
  for (Eigen::Index i = 0; i < p.x.size(); ++i) p.x.data()[i] = u(rng);
  for (int j = 0; j < kBatch; ++j) p.labels.push_back(static_cast<std::int32_t>(rng() % kClasses));
  return p;
}

MlpShape shape(int hidden_layers, Activation a) {
  return MlpShape{kInputs, hidden_layers, kUnits, kClasses, a};
}

class MlpGradientTest : public ::testing::TestWithParam<std::tuple<Activation, int>> {};

// Central differences of the loss sum against the analytic gradient, over every parameter.
// In float, eps 1e-3 keeps rounding noise near 1e-4 of the gradient scale; a wrong gradient
// (a missing activation derivative, a transposed product, a wrong bias sum) is off by O(1).
TEST_P(MlpGradientTest, MatchesFiniteDifferences) {
  const auto [activation, hidden] = GetParam();
  Mlp model(shape(hidden, activation), kBatch);
  model.init(7);
  // Non-zero biases so the bias path of the gradient is exercised away from its init.
  for (int l = 0; l < model.layers(); ++l) model.bias(l).setConstant(0.1f);
  const Problem p = make_problem(11);

  model.grads().setZero();
  const float kScale = 0.5f;  // the gradient must honour the scale
  model.forward_backward(p.x, p.labels, kScale);
  const Eigen::VectorXf analytic = model.grads() / kScale;

  constexpr float kEps = 1e-3f;
  Eigen::VectorXf numeric(model.num_params());
  for (std::int64_t i = 0; i < model.num_params(); ++i) {
    const float saved = model.params()[i];
    model.params()[i] = saved + kEps;
    const double up = model.evaluate(p.x, p.labels).loss_sum;
    model.params()[i] = saved - kEps;
    const double down = model.evaluate(p.x, p.labels).loss_sum;
    model.params()[i] = saved;
    numeric[i] = static_cast<float>((up - down) / (2.0 * kEps));
  }
  const double rel = (analytic - numeric).norm() / (analytic + numeric).norm();
  EXPECT_LT(rel, 1e-2) << "analytic:\n" << analytic.transpose() << "\nnumeric:\n"
                       << numeric.transpose();
  EXPECT_GT(analytic.norm(), 1e-3);  // not trivially zero
  for (std::int64_t i = 0; i < model.num_params(); ++i)
    EXPECT_NEAR(analytic[i], numeric[i], 2e-2 + 2e-2 * std::abs(numeric[i])) << "param " << i;
}

INSTANTIATE_TEST_SUITE_P(AllShapes, MlpGradientTest,
                         ::testing::Combine(::testing::Values(Activation::kRelu, Activation::kTanh),
                                            ::testing::Values(0, 1, 2)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == Activation::kRelu
                                                  ? "Relu"
                                                  : "Tanh") +
                                  std::to_string(std::get<1>(info.param)) + "Hidden";
                         });

TEST(Mlp, ForwardBackwardAccumulatesAndReturnsTheLossSum) {
  Mlp model(shape(1, Activation::kTanh), kBatch);
  model.init(3);
  const Problem p = make_problem(5);
  model.grads().setZero();
  const double loss1 = model.forward_backward(p.x, p.labels, 1.0f);
  const Eigen::VectorXf once = model.grads();
  const double loss2 = model.forward_backward(p.x, p.labels, 1.0f);
  EXPECT_EQ(loss1, loss2);
  EXPECT_EQ(loss1, model.evaluate(p.x, p.labels).loss_sum);
  EXPECT_TRUE(model.grads().isApprox(2 * once));
  // The sum of per-sample gradients: a batch of the first half plus one of the second half.
  model.grads().setZero();
  model.forward_backward(p.x.leftCols(3), std::span(p.labels).first(3), 1.0f);
  model.forward_backward(p.x.rightCols(3), std::span(p.labels).last(3), 1.0f);
  EXPECT_TRUE(model.grads().isApprox(once, 1e-5f));
}

TEST(Mlp, GradTailIsLeftAlone) {
  Mlp model(shape(1, Activation::kRelu), kBatch, /*grad_tail=*/2);
  model.init(1);
  ASSERT_EQ(model.grad_buffer().size(), model.num_params() + 2);
  model.grad_buffer().setZero();
  model.grad_buffer().tail(2) << 42.0f, -1.0f;
  const Problem p = make_problem(2);
  model.forward_backward(p.x, p.labels, 1.0f);
  EXPECT_EQ(model.grad_buffer()[model.num_params()], 42.0f);
  EXPECT_EQ(model.grad_buffer()[model.num_params() + 1], -1.0f);
}

TEST(Mlp, InitIsDeterministicAndScaledByFanIn) {
  const MlpShape big{400, 1, 300, 10, Activation::kRelu};
  Mlp a(big, 1), b(big, 1), c(big, 1);
  a.init(99);
  b.init(99);
  c.init(100);
  EXPECT_EQ(a.params(), b.params());
  EXPECT_NE(a.params(), c.params());
  // He: stddev sqrt(2 / 400) for the hidden layer; zero biases.
  const auto w = a.weights(0);
  const double mean = w.mean();
  const double var = (w.array() - mean).square().mean();
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(std::sqrt(var), std::sqrt(2.0 / 400), 0.002);
  EXPECT_EQ(a.bias(0).cwiseAbs().maxCoeff(), 0.0f);
  // Glorot for the softmax layer: sqrt(2 / (300 + 10)).
  const auto w1 = a.weights(1);
  EXPECT_NEAR(std::sqrt(w1.array().square().mean()), std::sqrt(2.0 / 310), 0.004);
}

TEST(Mlp, SoftmaxIsStableForHugeLogits) {
  Mlp model(shape(0, Activation::kRelu), 1);
  model.weights(0).setZero();
  model.bias(0) << 1000.0f, 0.0f, -1000.0f;
  Eigen::MatrixXf x = Eigen::MatrixXf::Zero(kInputs, 1);
  const std::vector<std::int32_t> right{0}, wrong{1};
  EXPECT_NEAR(model.evaluate(x, right).loss_sum, 0.0, 1e-6);
  EXPECT_NEAR(model.evaluate(x, wrong).loss_sum, 1000.0, 1e-3);
  EXPECT_EQ(model.evaluate(x, right).correct, 1);
  model.grads().setZero();
  EXPECT_NEAR(model.forward_backward(x, wrong, 1.0f), 1000.0, 1e-3);
  EXPECT_TRUE(model.grads().allFinite());
  EXPECT_NEAR(model.bias_grads(0)[0], 1.0f, 1e-6);
  EXPECT_NEAR(model.bias_grads(0)[1], -1.0f, 1e-6);
}

TEST(Mlp, ShapeFromConfigRejectsUnknownNames) {
  TrainConfig c;
  MlpShape s;
  EXPECT_TRUE(mlp_shape_from_config(c, 784, 10, &s).ok());
  EXPECT_EQ(s.hidden_layers, c.hidden_layers);
  c.activation = "gelu";
  const Status bad = mlp_shape_from_config(c, 784, 10, &s);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("gelu"), std::string::npos);
}

}  // namespace
}  // namespace trellis::worker
