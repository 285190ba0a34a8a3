#include "worker/models/cnn.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/cnn_layers.h"

namespace trellis::worker {
namespace {

constexpr int kSide = 6;
constexpr int kClasses = 3;
constexpr int kBatch = 4;

struct Problem {
  Eigen::MatrixXf x;
  std::vector<std::int32_t> labels;
};

Problem make_problem(std::uint64_t seed, int batch = kBatch, int classes = kClasses) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Problem p;
  p.x.resize(kSide * kSide, batch);
  for (Eigen::Index i = 0; i < p.x.size(); ++i) p.x.data()[i] = u(rng);
  for (int j = 0; j < batch; ++j)
    p.labels.push_back(static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(classes)));
  return p;
}

CnnShape shape_of(const std::string& layers, int classes = kClasses) {
  TrainConfig c;
  c.model = "cnn";
  c.layers = layers;
  CnnShape s;
  const Status st = cnn_shape_from_config(c, kSide * kSide, classes, 0, &s);
  EXPECT_TRUE(st.ok()) << st.message();
  return s;
}

// Central differences of the loss sum against the analytic gradient, over every parameter, as
// in mlp_test.cc. Biases are set away from zero so their path is exercised. Relu and max
// pooling have kinks: where a step of eps moves some pre-activation across zero (or swaps a
// window's maximum) the difference quotient is not the derivative, and the one-sided
// quotients either side of the parameter disagree by the jump (in a smooth region only by
// eps times the curvature). Such parameters are skipped, at most a few of them; every other
// one must match.
void expect_gradient_matches(Cnn& model, const Problem& p) {
  for (std::int64_t i = 0; i < model.num_params(); ++i)
    if (model.params()[i] == 0.0f) model.params()[i] = 0.05f;  // biases
  const Targets targets = std::span<const std::int32_t>(p.labels);
  model.grad_buffer().setZero();
  const float kScale = 0.5f;
  model.forward_backward(p.x, targets, BatchKey{}, kScale);
  const Eigen::VectorXf analytic = model.grads() / kScale;
  constexpr float kEps = 1e-3f;
  auto loss_at = [&](std::int64_t i, float delta) {
    const float saved = model.params()[i];
    model.params()[i] = saved + delta;
    const double l = model.evaluate(p.x, targets).loss_sum;
    model.params()[i] = saved;
    return l;
  };
  auto tolerance = [](double v) { return 2e-2 + 2e-2 * std::abs(v); };
  int kinks = 0, bad = 0;
  for (std::int64_t i = 0; i < model.num_params(); ++i) {
    const double up = loss_at(i, kEps), mid = loss_at(i, 0.0f), down = loss_at(i, -kEps);
    const double numeric = (up - down) / (2.0 * kEps);
    if (std::abs((up - mid) - (mid - down)) / kEps > tolerance(numeric) / 2) {
      ++kinks;
      continue;
    }
    if (std::abs(analytic[i] - numeric) > tolerance(numeric) && ++bad < 10)
      ADD_FAILURE() << "param " << i << " analytic " << analytic[i] << " numeric " << numeric;
  }
  EXPECT_LE(kinks, std::max<std::int64_t>(1, model.num_params() / 20)) << "not smooth enough to check";
  EXPECT_GT(analytic.norm(), 1e-3);
}

class CnnGradientTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CnnGradientTest, MatchesFiniteDifferences) {
  Cnn model(shape_of(GetParam()), kBatch);
  model.init(7);
  expect_gradient_matches(model, make_problem(11));
}

// Each layer kind alone (ahead of the output layer), then whole nets. Two convolutions in a
// row check the gradient w.r.t. a convolution's input (col2im); "conv 2 5x5" pads by 2;
// "pool 4" on 6x6 drops a partial window.
INSTANTIATE_TEST_SUITE_P(
    Layers, CnnGradientTest,
    ::testing::Values("conv 2 3x3", "conv 2 3x3, relu", "conv 2 5x5, conv 3 3x3", "conv 2 2x2",
                      "pool 2", "avgpool 3", "pool 4", "dense 5, relu",
                      "conv 3 3x3, relu, pool 2, conv 4 3x3, relu, pool 2, dense 5, relu",
                      "conv 2 3x3, relu, avgpool 2, flatten, dense 4, relu, dense 3"),
    [](const auto& info) {
      std::string name;
      for (const char* c = info.param; *c; ++c)
        name += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_';
      return name;
    });

// The convolution is the cross-correlation ONNX Conv and PyTorch compute, with zero padding
// K/2: checked against a direct loop, reading the conv output through an identity output
// layer.
TEST(Cnn, ConvolutionMatchesADirectLoop) {
  constexpr int kOut = 2, kK = 3;
  Cnn model(shape_of("conv 2 3x3", kOut * kSide * kSide), 2);
  model.init(3);
  const auto& conv = model.layers()[0];
  const auto& out = model.layers()[1];
  for (int co = 0; co < kOut; ++co) model.params()[conv.b_offset + co] = 0.25f * (co + 1);
  Eigen::Map<Eigen::MatrixXf>(model.params().data() + out.w_offset, out.cout, out.cin).setIdentity();
  model.params().segment(out.b_offset, out.cout).setZero();
  const Problem p = make_problem(5, 2);
  const Eigen::MatrixXf z = model.logits(p.x);
  const float* w = model.params().data() + conv.w_offset;
  for (int j = 0; j < 2; ++j)
    for (int co = 0; co < kOut; ++co)
      for (int y = 0; y < kSide; ++y)
        for (int x = 0; x < kSide; ++x) {
          double want = 0.25 * (co + 1);
          for (int dy = 0; dy < kK; ++dy)
            for (int dx = 0; dx < kK; ++dx) {
              const int iy = y + dy - 1, ix = x + dx - 1;
              if (iy < 0 || iy >= kSide || ix < 0 || ix >= kSide) continue;
              want += static_cast<double>(w[co + kOut * (dy * kK + dx)]) * p.x(iy * kSide + ix, j);
            }
          EXPECT_NEAR(z(co * kSide * kSide + y * kSide + x, j), want, 1e-5)
              << "sample " << j << " channel " << co << " at " << y << "," << x;
        }
}

// A sample's gradient depends on nothing but the sample and the weights, so two halves of a
// batch accumulated equal the whole batch (what lets any rank count sum the same gradient),
// and kAssign writes what kAccumulate adds to zeros, leaving the tail alone.
TEST(Cnn, SplitBatchesSumToTheWholeAndAssignOverwrites) {
  Cnn model(shape_of("conv 2 3x3, relu, pool 2, dense 4, relu"), 8, /*grad_tail=*/2);
  model.init(9);
  const Problem p = make_problem(21, 8);
  const std::span<const std::int32_t> labels(p.labels);
  model.grad_buffer().setZero();
  const double whole = model.forward_backward(p.x, labels, BatchKey{}, 0.125f);
  const Eigen::VectorXf g_whole = model.grads();
  model.grad_buffer().setZero();
  const double a = model.forward_backward(p.x.leftCols(3), labels.subspan(0, 3), BatchKey{}, 0.125f);
  const double b = model.forward_backward(p.x.rightCols(5), labels.subspan(3), BatchKey{}, 0.125f);
  EXPECT_NEAR(a + b, whole, 1e-5 * std::abs(whole));
  EXPECT_LE((model.grads() - g_whole).norm(), 1e-5 * g_whole.norm());
  EXPECT_GT(g_whole.norm(), 0.0f);

  model.grad_buffer().setConstant(7.0f);
  model.forward_backward(p.x, labels, BatchKey{}, 0.125f, GradMode::kAssign);
  EXPECT_EQ(model.grads(), g_whole);
  EXPECT_EQ(model.grad_buffer()[model.num_params()], 7.0f);
  EXPECT_EQ(model.grad_buffer()[model.num_params() + 1], 7.0f);
}

TEST(Cnn, ParameterLayoutAndInit) {
  // conv 4 3x3 on 1 channel: 36 + 4; pool 2 -> 4x3x3; dense 5: 36*5 + 5; output 5*3 + 3.
  Cnn model(shape_of("conv 4 3x3, relu, pool 2, dense 5, relu"), 1);
  EXPECT_EQ(model.num_params(), 36 + 4 + 180 + 5 + 15 + 3);
  model.init(1);
  const Eigen::VectorXf first = model.params();
  model.init(1);
  EXPECT_EQ(model.params(), first);
  model.init(2);
  EXPECT_NE(model.params(), first);
  const auto& conv = model.layers()[0];
  EXPECT_EQ(model.params().segment(conv.b_offset, 4), Eigen::VectorXf::Zero(4));
  EXPECT_TRUE(conv.relu);
  EXPECT_EQ(model.layers()[1].out_size(), 36);
}

TEST(Cnn, LearnsATinyProblem) {
  Cnn model(shape_of("conv 4 3x3, relu, pool 2, dense 8, relu"), 16);
  model.init(4);
  const Problem p = make_problem(8, 16);
  const std::span<const std::int32_t> labels(p.labels);
  const double before = model.evaluate(p.x, labels).loss_sum;
  for (int step = 0; step < 200; ++step) {
    model.forward_backward(p.x, labels, BatchKey{}, 1.0f / 16, GradMode::kAssign);
    model.params() -= 0.5f * model.grads();
  }
  const EvalSums after = model.evaluate(p.x, labels);
  EXPECT_LT(after.loss_sum, 0.1 * before);
  EXPECT_EQ(after.correct, 16);
}

TEST(CnnLayers, ParsesTheListForms) {
  std::vector<CnnLayerSpec> layers;
  ASSERT_TRUE(parse_cnn_layers("conv 32 3x3,relu, pool 2 ,avgpool 3, flatten, dense 128", &layers).ok());
  ASSERT_EQ(layers.size(), 5u);  // flatten is a marker only
  EXPECT_EQ(layers[0].kind, CnnLayerKind::kConv);
  EXPECT_EQ(layers[0].size, 32);
  EXPECT_EQ(layers[0].kernel, 3);
  EXPECT_EQ(layers[1].kind, CnnLayerKind::kRelu);
  EXPECT_EQ(layers[2].kind, CnnLayerKind::kMaxPool);
  EXPECT_EQ(layers[3].kind, CnnLayerKind::kAvgPool);
  EXPECT_EQ(layers[3].kernel, 3);
  EXPECT_EQ(layers[4].size, 128);
  ASSERT_TRUE(parse_cnn_layers("conv 8 5", &layers).ok());
  EXPECT_EQ(layers[0].kernel, 5);
}

TEST(CnnLayers, ErrorsNameTheBadLayer) {
  struct Case {
    const char* text;
    const char* expect;
  };
  for (const Case& c : {Case{"conv 32 3x3, rleu", "layer 2 'rleu'"},
                        Case{"conv 32 3x4", "layer 1 'conv 32 3x4'"},
                        Case{"conv 0 3x3", "CHANNELS in [1"},
                        Case{"relu, , dense 4", "layer 2 of"},
                        Case{"pool", "expected 'pool SIZE'"},
                        Case{"dense 12 4", "expected 'dense UNITS'"},
                        Case{"relu 3", "'relu' takes no arguments"}}) {
    const Status s = parse_cnn_layers(c.text, nullptr);
    ASSERT_FALSE(s.ok()) << c.text;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << c.text << ": " << s.message();
  }
}

TEST(CnnShapeFromConfig, RefusesWhatCannotBuild) {
  TrainConfig c;
  c.model = "cnn";
  CnnShape s;
  struct Case {
    const char* layers;
    int inputs;
    const char* expect;
  };
  for (const Case& k :
       {Case{"conv 4 3x3", 35, "not a square number"},
        Case{"pool 2, pool 2, pool 2", 36, "layer 3 'pool 2' has a window larger than its 1x1x1"},
        Case{"dense 4, conv 2 3x3", 36, "layer 2 'conv 2 3x3' comes after a dense layer"},
        Case{"relu, conv 2 3x3", 36, "layer 1 'relu' must follow a layer"},
        Case{"conv 2 3x3, frob", 36, "unknown layer 'frob'"}}) {
    c.layers = k.layers;
    const Status st = cnn_shape_from_config(c, k.inputs, 10, 0, &s);
    ASSERT_FALSE(st.ok()) << k.layers;
    EXPECT_NE(st.message().find(k.expect), std::string::npos) << k.layers << ": " << st.message();
  }
  c.layers = "conv 2 3x3";
  c.dropout = 0.2;
  EXPECT_FALSE(cnn_shape_from_config(c, 36, 10, 0, &s).ok());
  c.dropout = 0;
  EXPECT_FALSE(cnn_shape_from_config(c, 36, 1, 0, &s).ok());
  EXPECT_TRUE(cnn_shape_from_config(c, 36, 10, 0, &s).ok());
  EXPECT_EQ(s.height, 6);
}

}  // namespace
}  // namespace trellis::worker
