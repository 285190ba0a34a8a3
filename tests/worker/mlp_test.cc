#include "worker/models/mlp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace trellis::worker {
namespace {

constexpr int kInputs = 5;
constexpr int kClasses = 3;
constexpr int kBatch = 6;

struct Problem {
  Eigen::MatrixXf x;
  std::vector<std::int32_t> labels;  // in [0, classes)
  std::vector<float> values;         // regression targets
  std::vector<std::int64_t> rows;    // global row ids, deliberately not 0..n-1
};

Problem make_problem(std::uint64_t seed, int classes = kClasses, int batch = kBatch) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Problem p;
  p.x.resize(kInputs, batch);
  for (Eigen::Index i = 0; i < p.x.size(); ++i) p.x.data()[i] = u(rng);
  for (int j = 0; j < batch; ++j) {
    p.labels.push_back(static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(classes)));
    p.values.push_back(2.0f * u(rng));
    p.rows.push_back(1000 + 37 * j);
  }
  return p;
}

MlpShape mlp_shape(std::vector<int> hidden, Activation a, float dropout = 0.0f) {
  MlpShape s;
  s.inputs = kInputs;
  s.hidden = std::move(hidden);
  s.outputs = kClasses;
  s.head = Head::kSoftmaxCe;
  s.activation = a;
  s.dropout = dropout;
  return s;
}

const char* name(Activation a) {
  switch (a) {
    case Activation::kRelu: return "Relu";
    case Activation::kTanh: return "Tanh";
    case Activation::kGelu: return "Gelu";
  }
  return "?";
}

// Central differences of the loss sum against the analytic gradient, over every parameter.
// The loss is evaluated through forward_backward with the same key, so a dropout mask is the
// same fixed function of the inputs in every evaluation. Double-precision accumulation is not
// available in float, so eps 1e-3 keeps rounding noise near 1e-4 of the gradient scale; a
// wrong gradient (a missing activation derivative, a transposed product, a wrong bias sum, a
// mask applied on one pass only) is off by O(1).
void expect_gradient_matches(Mlp& model, const Problem& p, Targets targets,
                             const BatchKey& key) {
  // Non-zero biases so the bias path of the gradient is exercised away from its init.
  for (int l = 0; l < model.layers(); ++l) model.bias(l).setConstant(0.1f);
  model.grad_buffer().setZero();
  const float kScale = 0.5f;  // the gradient must honour the scale
  model.forward_backward(p.x, targets, key, kScale);
  const Eigen::VectorXf analytic = model.grads() / kScale;

  const Eigen::VectorXf saved_grads = model.grads();
  auto loss = [&] {
    const double l = model.forward_backward(p.x, targets, key, 0.0f);
    return l;
  };
  constexpr float kEps = 1e-3f;
  Eigen::VectorXf numeric(model.num_params());
  for (std::int64_t i = 0; i < model.num_params(); ++i) {
    const float saved = model.params()[i];
    model.params()[i] = saved + kEps;
    const double up = loss();
    model.params()[i] = saved - kEps;
    const double down = loss();
    model.params()[i] = saved;
    numeric[i] = static_cast<float>((up - down) / (2.0 * kEps));
  }
  // A zero scale adds nothing to the gradient.
  EXPECT_EQ(model.grads(), saved_grads);
  const double rel = (analytic - numeric).norm() / (analytic + numeric).norm();
  EXPECT_LT(rel, 1e-2) << "analytic:\n" << analytic.transpose() << "\nnumeric:\n"
                       << numeric.transpose();
  EXPECT_GT(analytic.norm(), 1e-3);  // not trivially zero
  for (std::int64_t i = 0; i < model.num_params(); ++i)
    EXPECT_NEAR(analytic[i], numeric[i], 2e-2 + 2e-2 * std::abs(numeric[i])) << "param " << i;
}

class MlpGradientTest
    : public ::testing::TestWithParam<std::tuple<Activation, int, float>> {};

TEST_P(MlpGradientTest, MatchesFiniteDifferences) {
  const auto [activation, hidden, dropout] = GetParam();
  // Unequal widths catch a layer wired with the wrong size.
  const std::vector<int> widths = {4, 3};
  Mlp model(mlp_shape(std::vector<int>(widths.begin(), widths.begin() + hidden), activation,
                      dropout),
            kBatch);
  model.init(7);
  const Problem p = make_problem(11);
  expect_gradient_matches(model, p, std::span<const std::int32_t>(p.labels),
                          BatchKey{3, p.rows});
}

INSTANTIATE_TEST_SUITE_P(
    AllShapes, MlpGradientTest,
    ::testing::Combine(::testing::Values(Activation::kRelu, Activation::kTanh, Activation::kGelu),
                       ::testing::Values(0, 1, 2), ::testing::Values(0.0f, 0.3f)),
    [](const auto& info) {
      return std::string(name(std::get<0>(info.param))) + std::to_string(std::get<1>(info.param)) +
             "Hidden" + (std::get<2>(info.param) > 0 ? "Dropout" : "");
    });

TEST(Mlp, LinearGradientMatchesFiniteDifferences) {
  MlpShape s;
  s.inputs = kInputs;
  s.outputs = 1;
  s.head = Head::kSquaredError;
  Mlp model(s, kBatch);
  model.init(5);
  const Problem p = make_problem(13);
  expect_gradient_matches(model, p, std::span<const float>(p.values), BatchKey{});
}

TEST(Mlp, LogisticGradientMatchesFiniteDifferences) {
  MlpShape s;
  s.inputs = kInputs;
  s.outputs = 1;
  s.head = Head::kSigmoidBce;
  Mlp model(s, kBatch);
  model.init(5);
  const Problem p = make_problem(17, /*classes=*/2);
  ASSERT_NE(std::count(p.labels.begin(), p.labels.end(), 1), 0);  // both targets present
  ASSERT_NE(std::count(p.labels.begin(), p.labels.end(), 0), 0);
  expect_gradient_matches(model, p, std::span<const std::int32_t>(p.labels), BatchKey{});
}

TEST(Mlp, SoftmaxModelGradientMatchesFiniteDifferences) {
  Mlp model(mlp_shape({}, Activation::kRelu), kBatch);
  model.init(5);
  const Problem p = make_problem(19);
  expect_gradient_matches(model, p, std::span<const std::int32_t>(p.labels), BatchKey{});
}

TEST(Mlp, LinearLossAndAccuracyAreSquaredErrorAndRounding) {
  MlpShape s;
  s.inputs = 2;
  s.outputs = 1;
  s.head = Head::kSquaredError;
  Mlp model(s, 3);
  model.weights(0) << 1.0f, 2.0f;
  model.bias(0) << 0.5f;
  Eigen::MatrixXf x(2, 3);
  x << 1, 0, 2,  //
      0, 1, 1;
  // Predictions 1.5, 2.5, 4.5.
  const std::vector<float> y = {1.0f, 2.75f, 3.0f};
  const EvalSums e = model.evaluate(x, std::span<const float>(y));
  EXPECT_NEAR(e.loss_sum, 0.25 + 0.0625 + 2.25, 1e-6);
  EXPECT_EQ(e.correct, 1);  // only |2.5 - 2.75| < 0.5
  // Integer labels are accepted as regression targets.
  const std::vector<std::int32_t> labels = {1, 2, 4};
  EXPECT_NEAR(model.evaluate(x, std::span<const std::int32_t>(labels)).loss_sum,
              0.25 + 0.25 + 0.25, 1e-6);
}

TEST(Mlp, LogisticLossAndAccuracy) {
  MlpShape s;
  s.inputs = 1;
  s.outputs = 1;
  s.head = Head::kSigmoidBce;
  Mlp model(s, 3);
  model.weights(0) << 1.0f;
  model.bias(0) << 0.0f;
  Eigen::MatrixXf x(1, 3);
  x << 2.0f, -1.0f, 800.0f;  // the last one would overflow a naive exp
  const std::vector<std::int32_t> y = {1, 1, 0};
  const EvalSums e = model.evaluate(x, std::span<const std::int32_t>(y));
  const double expected = std::log1p(std::exp(-2.0)) + std::log1p(std::exp(1.0)) + 800.0;
  EXPECT_NEAR(e.loss_sum, expected, 1e-4);
  EXPECT_EQ(e.correct, 1);  // p(2) > .5 right; p(-1) < .5 wrong; p(800) > .5 wrong
  model.grads().setZero();
  model.forward_backward(x, std::span<const std::int32_t>(y), 1.0f);
  EXPECT_TRUE(model.grads().allFinite());
  // d/db = sum(sigmoid(z) - y) = (s(2) - 1) + (s(-1) - 1) + (1 - 0).
  const double s2 = 1 / (1 + std::exp(-2.0)), sm1 = 1 / (1 + std::exp(1.0));
  EXPECT_NEAR(model.bias_grads(0)[0], (s2 - 1) + (sm1 - 1) + 1, 1e-5);
}

TEST(Mlp, ForwardBackwardAccumulatesAndReturnsTheLossSum) {
  Mlp model(mlp_shape({4}, Activation::kTanh), kBatch);
  model.init(3);
  const Problem p = make_problem(5);
  const std::span<const std::int32_t> labels(p.labels);
  model.grads().setZero();
  const double loss1 = model.forward_backward(p.x, labels, 1.0f);
  const Eigen::VectorXf once = model.grads();
  const double loss2 = model.forward_backward(p.x, labels, 1.0f);
  EXPECT_EQ(loss1, loss2);
  EXPECT_EQ(loss1, model.evaluate(p.x, labels).loss_sum);
  EXPECT_TRUE(model.grads().isApprox(2 * once));
  // The sum of per-sample gradients: a batch of the first half plus one of the second half.
  model.grads().setZero();
  model.forward_backward(p.x.leftCols(3), labels.first(3), 1.0f);
  model.forward_backward(p.x.rightCols(3), labels.last(3), 1.0f);
  EXPECT_TRUE(model.grads().isApprox(once, 1e-5f));
}

TEST(Mlp, GradTailIsLeftAlone) {
  Mlp model(mlp_shape({4}, Activation::kRelu), kBatch, /*grad_tail=*/2);
  model.init(1);
  ASSERT_EQ(model.grad_buffer().size(), model.num_params() + 2);
  model.grad_buffer().setZero();
  model.grad_buffer().tail(2) << 42.0f, -1.0f;
  const Problem p = make_problem(2);
  model.forward_backward(p.x, std::span<const std::int32_t>(p.labels), 1.0f);
  EXPECT_EQ(model.grad_buffer()[model.num_params()], 42.0f);
  EXPECT_EQ(model.grad_buffer()[model.num_params() + 1], -1.0f);
}

TEST(Mlp, LayerSizesAndParameterCount) {
  MlpShape s = mlp_shape({7, 2}, Activation::kRelu);
  Mlp model(s, 1);
  ASSERT_EQ(model.layers(), 3);
  EXPECT_EQ(model.weights(0).rows(), 7);
  EXPECT_EQ(model.weights(0).cols(), kInputs);
  EXPECT_EQ(model.weights(1).rows(), 2);
  EXPECT_EQ(model.weights(1).cols(), 7);
  EXPECT_EQ(model.weights(2).rows(), kClasses);
  EXPECT_EQ(model.num_params(), (5 * 7 + 7) + (7 * 2 + 2) + (2 * 3 + 3));
}

double stddev(const Eigen::Map<Eigen::MatrixXf>& w) {
  const double mean = w.mean();
  return std::sqrt((w.array() - mean).square().mean());
}

TEST(Mlp, InitIsDeterministicAndScaledByFanIn) {
  MlpShape big;
  big.inputs = 400;
  big.hidden = {300, 200};
  big.outputs = 10;
  for (Activation a : {Activation::kRelu, Activation::kGelu, Activation::kTanh}) {
    big.activation = a;
    Mlp m(big, 1), same(big, 1), other(big, 1);
    m.init(99);
    same.init(99);
    other.init(100);
    EXPECT_EQ(m.params(), same.params());
    EXPECT_NE(m.params(), other.params());
    EXPECT_EQ(m.dropout_seed(), same.dropout_seed());
    EXPECT_NE(m.dropout_seed(), other.dropout_seed());
    EXPECT_NEAR(m.weights(0).mean(), 0.0, 0.002);
    EXPECT_EQ(m.bias(0).cwiseAbs().maxCoeff(), 0.0f);
    if (a == Activation::kTanh) {  // Glorot: sqrt(2 / (in + out))
      EXPECT_NEAR(stddev(m.weights(0)), std::sqrt(2.0 / 700), 0.002) << name(a);
      EXPECT_NEAR(stddev(m.weights(1)), std::sqrt(2.0 / 500), 0.002) << name(a);
    } else {  // He: sqrt(2 / in)
      EXPECT_NEAR(stddev(m.weights(0)), std::sqrt(2.0 / 400), 0.002) << name(a);
      EXPECT_NEAR(stddev(m.weights(1)), std::sqrt(2.0 / 300), 0.002) << name(a);
    }
    // Glorot for the output layer whatever the activation.
    EXPECT_NEAR(stddev(m.weights(2)), std::sqrt(2.0 / 210), 0.006) << name(a);
  }
}

TEST(Mlp, SoftmaxIsStableForHugeLogits) {
  Mlp model(mlp_shape({}, Activation::kRelu), 1);
  model.weights(0).setZero();
  model.bias(0) << 1000.0f, 0.0f, -1000.0f;
  Eigen::MatrixXf x = Eigen::MatrixXf::Zero(kInputs, 1);
  const std::vector<std::int32_t> right{0}, wrong{1};
  const std::span<const std::int32_t> r(right), w(wrong);
  EXPECT_NEAR(model.evaluate(x, r).loss_sum, 0.0, 1e-6);
  EXPECT_NEAR(model.evaluate(x, w).loss_sum, 1000.0, 1e-3);
  EXPECT_EQ(model.evaluate(x, r).correct, 1);
  EXPECT_EQ(model.evaluate(x, w).correct, 0);
  model.grads().setZero();
  EXPECT_NEAR(model.forward_backward(x, w, 1.0f), 1000.0, 1e-3);
  EXPECT_TRUE(model.grads().allFinite());
  EXPECT_NEAR(model.bias_grads(0)[0], 1.0f, 1e-6);
  EXPECT_NEAR(model.bias_grads(0)[1], -1.0f, 1e-6);
}

TEST(Mlp, GeluMatchesTheTanhApproximation) {
  // One hidden unit fed x directly, read back through an identity output.
  MlpShape s;
  s.inputs = 1;
  s.hidden = {1};
  s.outputs = 1;
  s.head = Head::kSquaredError;
  s.activation = Activation::kGelu;
  Mlp model(s, 1);
  model.weights(0) << 1.0f;
  model.weights(1) << 1.0f;
  for (float v : {-3.0f, -0.5f, 0.0f, 0.7f, 2.5f}) {
    Eigen::MatrixXf x(1, 1);
    x << v;
    const std::vector<float> zero{0.0f};
    const double g = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    // loss = (gelu(v) - 0)^2
    EXPECT_NEAR(model.evaluate(x, std::span<const float>(zero)).loss_sum, g * g, 1e-5) << v;
  }
}

double gelu(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
double gelu_prime(double x) {
  const double c = std::sqrt(2 / M_PI), t = std::tanh(c * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
}

// The gelu derivative against a double reference, tight enough to catch a wrong coefficient
// in its small cubic term, which the loose finite-difference check above cannot.
TEST(Mlp, GeluGradientMatchesTheReferenceWithAndWithoutDropout) {
  for (float p : {0.0f, 0.5f}) {
    MlpShape s;
    s.inputs = 1;
    s.hidden = {1};
    s.outputs = 1;
    s.head = Head::kSquaredError;
    s.activation = Activation::kGelu;
    s.dropout = p;
    Mlp model(s, 1);
    model.init(1);
    model.weights(0) << 1.0f;
    model.weights(1) << 1.0f;
    model.bias(0).setZero();
    model.bias(1).setZero();
    for (std::int64_t row = 0; row < 8; ++row) {
      const float v = -2.5f + 0.7f * static_cast<float>(row);
      Eigen::VectorXf m = Eigen::VectorXf::Ones(1);
      if (p > 0) dropout_mask(model.dropout_seed(), 4, row, 0, p, m);
      Eigen::MatrixXf x(1, 1);
      x << v;
      const std::vector<float> zero{0.0f};
      const std::vector<std::int64_t> rows{row};
      model.grads().setZero();
      model.forward_backward(x, std::span<const float>(zero), BatchKey{4, rows}, 1.0f);
      // loss = (m gelu(w v))^2, d/dw = 2 m gelu(v) * m gelu'(v) * v.
      const double expected = 2 * m[0] * gelu(v) * m[0] * gelu_prime(v) * v;
      EXPECT_NEAR(model.weight_grads(0)(0, 0), expected, 1e-5 + 1e-5 * std::abs(expected))
          << "v " << v << " p " << p;
    }
  }
}

// --- dropout ----------------------------------------------------------------------------

TEST(Dropout, MaskIsAPureFunctionOfSeedStepRowAndLayer) {
  Eigen::VectorXf a(64), b(64), c(64);
  dropout_mask(1, 5, 123, 0, 0.5f, a);
  dropout_mask(1, 5, 123, 0, 0.5f, b);
  EXPECT_EQ(a, b);
  for (auto [seed, step, row, layer] :
       {std::tuple{2, 5, 123, 0}, {1, 6, 123, 0}, {1, 5, 124, 0}, {1, 5, 123, 1}}) {
    dropout_mask(seed, step, row, layer, 0.5f, c);
    EXPECT_NE(a, c) << seed << " " << step << " " << row << " " << layer;
  }
  // Values are 0 or 1/(1-p).
  for (float v : a) EXPECT_TRUE(v == 0.0f || v == 2.0f) << v;
}

TEST(Dropout, DropsAboutPAndKeepsTheMean) {
  constexpr int kUnits = 1000, kRows = 100;
  Eigen::VectorXf m(kUnits);
  double sum = 0, zeros = 0;
  for (int r = 0; r < kRows; ++r) {
    dropout_mask(42, 0, r, 0, 0.3f, m);
    sum += m.sum();
    zeros += (m.array() == 0.0f).count();
  }
  const double n = double{kUnits} * kRows;
  EXPECT_NEAR(zeros / n, 0.3, 0.01);  // binomial sd ~ 0.0015
  EXPECT_NEAR(sum / n, 1.0, 0.02);    // inverted dropout keeps the expectation
}

// The same sample gets the same mask whatever batch it is in and at whatever column: the
// gradient of batch {a, b} is the gradient of {a} plus that of {b}, which fails if a mask
// depended on the column or the batch.
TEST(Dropout, SameSampleSameMaskInAnyBatch) {
  Mlp model(mlp_shape({6, 5}, Activation::kRelu, 0.5f), kBatch);
  model.init(21);
  const Problem p = make_problem(23);
  const std::span<const std::int32_t> labels(p.labels);
  const std::span<const std::int64_t> rows(p.rows);
  constexpr std::int64_t kStep = 9;

  model.grads().setZero();
  const double whole = model.forward_backward(p.x, labels, BatchKey{kStep, rows}, 1.0f);
  const Eigen::VectorXf together = model.grads();

  // Columns in another order, split over two batches.
  const std::vector<int> first = {4, 0, 2}, second = {5, 3, 1};
  double parts = 0;
  model.grads().setZero();
  for (const auto& cols : {first, second}) {
    Eigen::MatrixXf x(kInputs, 3);
    std::vector<std::int32_t> l;
    std::vector<std::int64_t> r;
    for (int j = 0; j < 3; ++j) {
      x.col(j) = p.x.col(cols[j]);
      l.push_back(p.labels[cols[j]]);
      r.push_back(p.rows[cols[j]]);
    }
    parts += model.forward_backward(x, std::span<const std::int32_t>(l), BatchKey{kStep, r}, 1.0f);
  }
  EXPECT_NEAR(parts, whole, 1e-4 * std::abs(whole));
  EXPECT_TRUE(model.grads().isApprox(together, 1e-5f));

  // Another step draws other masks: the gradient changes.
  model.grads().setZero();
  model.forward_backward(p.x, labels, BatchKey{kStep + 1, rows}, 1.0f);
  EXPECT_FALSE(model.grads().isApprox(together, 1e-3f));
}

TEST(Dropout, OnlyInTraining) {
  Mlp with(mlp_shape({6}, Activation::kTanh, 0.5f), kBatch);
  Mlp without(mlp_shape({6}, Activation::kTanh, 0.0f), kBatch);
  with.init(4);
  without.init(4);
  ASSERT_EQ(with.params(), without.params());
  const Problem p = make_problem(8);
  const std::span<const std::int32_t> labels(p.labels);
  const EvalSums a = with.evaluate(p.x, labels), b = without.evaluate(p.x, labels);
  EXPECT_EQ(a.loss_sum, b.loss_sum);
  EXPECT_EQ(a.correct, b.correct);
  with.grads().setZero();
  const double trained = with.forward_backward(p.x, labels, BatchKey{0, p.rows}, 1.0f);
  EXPECT_NE(trained, a.loss_sum);
  // No key, no dropout: the legacy entry point trains the plain network.
  EXPECT_EQ(with.forward_backward(p.x, labels, 1.0f), a.loss_sum);
}

// --- config -------------------------------------------------------------------------------

TEST(MlpShapeFromConfig, MapsEveryModel) {
  TrainConfig c;
  MlpShape s;
  ASSERT_TRUE(mlp_shape_from_config(c, 784, 10, &s).ok());
  EXPECT_EQ(s.hidden, std::vector<int>(2, c.hidden_units));
  EXPECT_EQ(s.outputs, 10);
  EXPECT_EQ(s.head, Head::kSoftmaxCe);

  c.has_hidden = true;
  c.hidden = {256, 128};
  c.activation = "gelu";
  c.dropout = 0.25;
  ASSERT_TRUE(mlp_shape_from_config(c, 784, 10, &s).ok());
  EXPECT_EQ(s.hidden, (std::vector<int>{256, 128}));
  EXPECT_EQ(s.activation, Activation::kGelu);
  EXPECT_FLOAT_EQ(s.dropout, 0.25f);

  c.model = "softmax";
  ASSERT_TRUE(mlp_shape_from_config(c, 784, 10, &s).ok());
  EXPECT_TRUE(s.hidden.empty());
  EXPECT_EQ(s.outputs, 10);

  c.model = "linear";
  ASSERT_TRUE(mlp_shape_from_config(c, 13, 0, &s).ok());
  EXPECT_TRUE(s.hidden.empty());
  EXPECT_EQ(s.outputs, 1);
  EXPECT_EQ(s.head, Head::kSquaredError);

  c.model = "logistic";
  ASSERT_TRUE(mlp_shape_from_config(c, 13, 2, &s).ok());
  EXPECT_EQ(s.head, Head::kSigmoidBce);
  const Status ten = mlp_shape_from_config(c, 13, 10, &s);
  ASSERT_FALSE(ten.ok());
  EXPECT_NE(ten.message().find("2 classes"), std::string::npos) << ten.message();
}

TEST(MlpShapeFromConfig, RejectsUnknownNames) {
  TrainConfig c;
  MlpShape s;
  c.activation = "swish";
  const Status bad = mlp_shape_from_config(c, 784, 10, &s);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("swish"), std::string::npos);
  c = TrainConfig();
  c.model = "resnet";
  const Status bad_model = mlp_shape_from_config(c, 784, 10, &s);
  ASSERT_FALSE(bad_model.ok());
  EXPECT_NE(bad_model.message().find("resnet"), std::string::npos);
  c = TrainConfig();
  c.dropout = 1.0;
  EXPECT_FALSE(mlp_shape_from_config(c, 784, 10, &s).ok());
}

}  // namespace
}  // namespace trellis::worker
