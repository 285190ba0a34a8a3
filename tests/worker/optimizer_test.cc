// Optimizers, learning-rate schedules and the TrainConfig table they are configured from.
#include "worker/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "common/train_config.h"
#include "worker/lr_schedule.h"

namespace trellis::worker {
namespace {

std::unique_ptr<Optimizer> make(const OptimizerOptions& o, std::int64_t n) {
  std::unique_ptr<Optimizer> opt;
  EXPECT_TRUE(make_optimizer(o, n, &opt).ok());
  return opt;
}

OptimizerOptions sgd(float lr, float momentum = 0.0f, bool nesterov = false) {
  OptimizerOptions o;
  o.kind = OptimizerKind::kSgd;
  o.lr = lr;
  o.momentum = momentum;
  o.nesterov = nesterov;
  return o;
}

Eigen::VectorXf vec(std::initializer_list<float> values) {
  Eigen::VectorXf v(static_cast<Eigen::Index>(values.size()));
  Eigen::Index i = 0;
  for (float x : values) v[i++] = x;
  return v;
}

// Two steps so the state (velocity, moments, bias correction) matters; the expected values are
// worked by hand in the comments.
TEST(Optimizer, SgdMomentumWithWeightDecay) {
  OptimizerOptions o = sgd(0.1f, 0.9f);
  o.weight_decay = 0.01f;
  auto opt = make(o, 2);
  Eigen::VectorXf p = vec({1.0f, -2.0f});
  const Eigen::VectorXf g = vec({0.5f, 0.25f});
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
  auto opt = make(sgd(0.5f), 1);
  Eigen::VectorXf p = vec({1.0f});
  const Eigen::VectorXf g = vec({0.2f});
  opt->step(p, g);
  opt->step(p, g);  // no momentum: the same step twice
  EXPECT_NEAR(p[0], 0.8f, 1e-6);
}

TEST(Optimizer, SgdNesterovLooksAhead) {
  auto nesterov = make(sgd(0.1f, 0.9f, /*nesterov=*/true), 1);
  auto heavy = make(sgd(0.1f, 0.9f, /*nesterov=*/false), 1);
  Eigen::VectorXf p = vec({1.0f}), q = vec({1.0f});
  const Eigen::VectorXf g = vec({0.5f});
  // Step 1: v = 0.5; update = g + 0.9 v = 0.95; p = 1 - 0.095.
  nesterov->step(p, g);
  heavy->step(q, g);
  EXPECT_NEAR(p[0], 0.905f, 1e-6);
  EXPECT_NEAR(q[0], 0.95f, 1e-6);
  // Step 2: v = 0.9 * 0.5 + 0.5 = 0.95; update = 0.5 + 0.855 = 1.355; p = 0.905 - 0.1355.
  nesterov->step(p, g);
  heavy->step(q, g);
  EXPECT_NEAR(p[0], 0.7695f, 1e-6);
  EXPECT_NEAR(q[0], 0.855f, 1e-6);  // heavy ball: p -= 0.1 * 0.95
}

TEST(Optimizer, AdamBiasCorrected) {
  OptimizerOptions o;  // adam, beta1 .9, beta2 .999, eps 1e-8
  o.lr = 0.1f;
  auto opt = make(o, 2);
  Eigen::VectorXf p = vec({1.0f, -2.0f});
  Eigen::VectorXf g = vec({0.5f, -0.25f});
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

TEST(Optimizer, AdamCustomBetas) {
  OptimizerOptions o;
  o.lr = 0.1f;
  o.beta1 = 0.5f;
  o.beta2 = 0.9f;
  auto opt = make(o, 1);
  Eigen::VectorXf p = vec({0.0f});
  opt->step(p, vec({1.0f}));  // first step: lr * sign(g) whatever the betas
  EXPECT_NEAR(p[0], -0.1f, 1e-6);
  // Step 2, g = 3: m = 0.5 * 0.5 + 0.5 * 3 = 1.75, m_hat = 1.75 / 0.75 = 2.3333;
  // v = 0.9 * 0.1 + 0.1 * 9 = 0.99, v_hat = 0.99 / 0.19 = 5.2105, sqrt = 2.28266;
  // p -= 0.1 * 2.33333 / 2.28266 = 0.102220.
  opt->step(p, vec({3.0f}));
  EXPECT_NEAR(p[0], -0.202220f, 2e-6);
}

// L2 in Adam is normalised away by the second moment on the first step; decoupled decay is not.
TEST(Optimizer, AdamWDecouplesWeightDecay) {
  OptimizerOptions o;
  o.lr = 0.1f;
  o.weight_decay = 0.1f;
  OptimizerOptions ow = o;
  ow.kind = OptimizerKind::kAdamW;
  auto adam = make(o, 1), adamw = make(ow, 1);
  Eigen::VectorXf p = vec({1.0f}), q = vec({1.0f});
  const Eigen::VectorXf g = vec({0.5f});
  // Adam: g' = 0.5 + 0.1 = 0.6; first step moves by lr * sign(g') = 0.1.
  // AdamW: p = 1 * (1 - 0.1 * 0.1) - 0.1 * sign(g) = 0.89.
  adam->step(p, g);
  adamw->step(q, g);
  EXPECT_NEAR(p[0], 0.9f, 1e-6);
  EXPECT_NEAR(q[0], 0.89f, 1e-6);
  // AdamW step 2: m_hat = 0.5, v_hat = 0.25 (same g), update 0.1; p = 0.89 * 0.99 - 0.1.
  adamw->step(q, g);
  EXPECT_NEAR(q[0], 0.7811f, 1e-6);
  // Adam step 2: g' = 0.5 + 0.09 = 0.59; m = 0.054 + 0.059 = 0.113; v = 3.5964e-4 + 3.481e-4;
  // p = 0.9 - 0.1 * (0.113 / 0.19) / sqrt(7.0774e-4 / 0.001999).
  adam->step(p, g);
  EXPECT_NEAR(p[0], 0.8000472f, 2e-6);
}

TEST(Optimizer, ScheduledLrOverridesTheOptionsLr) {
  auto opt = make(sgd(100.0f), 1);
  Eigen::VectorXf p = vec({1.0f});
  opt->step(p, vec({2.0f}), 0.25f);
  EXPECT_NEAR(p[0], 0.5f, 1e-7);
}

TEST(Optimizer, GradClipScalesByTheGlobalNorm) {
  OptimizerOptions o = sgd(1.0f);
  o.grad_clip = 1.0f;
  auto opt = make(o, 2);
  Eigen::VectorXf p = vec({0.0f, 0.0f});
  const Eigen::VectorXf g = vec({3.0f, 4.0f});  // norm 5
  opt->step(p, g);
  EXPECT_FLOAT_EQ(p[0], -0.6f);
  EXPECT_FLOAT_EQ(p[1], -0.8f);
  EXPECT_DOUBLE_EQ(opt->last_grad_norm(), 5.0);
  EXPECT_EQ(g, vec({3.0f, 4.0f}));  // the caller's gradient is not modified

  // Under the threshold: untouched.
  o.grad_clip = 10.0f;
  auto loose = make(o, 2);
  p.setZero();
  loose->step(p, g);
  EXPECT_FLOAT_EQ(p[0], -3.0f);
  EXPECT_FLOAT_EQ(p[1], -4.0f);

  // Clipping applies to the gradient, before L2 decay is added: g' = 0.2 g + 0.5 p.
  o.grad_clip = 1.0f;
  o.weight_decay = 0.5f;
  auto decayed = make(o, 2);
  p = vec({1.0f, 1.0f});
  decayed->step(p, g);
  EXPECT_NEAR(p[0], 1.0f - (0.6f + 0.5f), 1e-6);
  EXPECT_NEAR(p[1], 1.0f - (0.8f + 0.5f), 1e-6);
}

// Runs `steps` steps from `from` with gradients and rates that vary by step.
void run(Optimizer* opt, Eigen::VectorXf* p, int from, int steps) {
  Eigen::VectorXf g(p->size());
  for (int s = from; s < from + steps; ++s) {
    for (Eigen::Index i = 0; i < g.size(); ++i)
      g[i] = std::sin(0.7f * static_cast<float>(s) + static_cast<float>(i)) + 0.01f * (*p)[i];
    opt->step(*p, g, 0.01f / (1.0f + 0.1f * static_cast<float>(s)));
  }
}

TEST(Optimizer, SaveRestoreContinuesBitForBit) {
  constexpr int kN = 7, kM = 5, kSize = 33;
  OptimizerOptions nesterov = sgd(0.1f, 0.9f, true);
  nesterov.weight_decay = 1e-3f;
  OptimizerOptions adam;
  adam.weight_decay = 1e-2f;
  OptimizerOptions adamw = adam;
  adamw.kind = OptimizerKind::kAdamW;
  adamw.grad_clip = 0.5f;
  for (const OptimizerOptions& o : {sgd(0.1f), nesterov, adam, adamw}) {
    const Eigen::VectorXf start = Eigen::VectorXf::LinSpaced(kSize, -1.0f, 1.0f);
    auto straight = make(o, kSize);
    Eigen::VectorXf p = start;
    run(straight.get(), &p, 0, kN + kM);

    auto first = make(o, kSize);
    Eigen::VectorXf q = start;
    run(first.get(), &q, 0, kN);
    OptimizerState state;
    first->save_state(&state);
    EXPECT_EQ(state.steps, kN);
    first.reset();  // the resumed optimizer starts from the saved state alone
    auto resumed = make(o, kSize);
    ASSERT_TRUE(resumed->restore_state(state).ok());
    EXPECT_EQ(resumed->steps(), kN);
    run(resumed.get(), &q, kN, kM);
    EXPECT_EQ(p, q) << "kind " << state.kind;  // bit for bit
    EXPECT_EQ(resumed->steps(), straight->steps());
  }
}

TEST(Optimizer, RestoreRefusesAMismatchedState) {
  OptimizerOptions adam;
  auto opt = make(adam, 4);
  OptimizerState state;
  opt->save_state(&state);
  ASSERT_EQ(state.kind, "adam");
  ASSERT_EQ(state.buffers.size(), 2u);

  auto smaller = make(adam, 3);
  const Status size = smaller->restore_state(state);
  ASSERT_FALSE(size.ok());
  EXPECT_NE(size.message().find("expected 3"), std::string::npos) << size.message();

  auto momentum = make(sgd(0.1f, 0.9f), 4);
  const Status kind = momentum->restore_state(state);
  ASSERT_FALSE(kind.ok());
  EXPECT_NE(kind.message().find("adam"), std::string::npos) << kind.message();

  OptimizerState one = state;
  one.buffers.pop_back();
  EXPECT_FALSE(opt->restore_state(one).ok());
  // Plain SGD has no buffer at all.
  auto plain = make(sgd(0.1f), 4);
  OptimizerState none;
  plain->save_state(&none);
  EXPECT_EQ(none.kind, "sgd");
  EXPECT_TRUE(none.buffers.empty());
}

TEST(Optimizer, OptionsFromConfig) {
  TrainConfig c;
  c.optimizer = "sgd";
  c.lr = 0.25;
  c.momentum = 0.5;
  c.nesterov = true;
  c.weight_decay = 1e-4;
  c.grad_clip = 2.0;
  OptimizerOptions o;
  ASSERT_TRUE(optimizer_options_from_config(c, &o).ok());
  EXPECT_EQ(o.kind, OptimizerKind::kSgd);
  EXPECT_FLOAT_EQ(o.lr, 0.25f);
  EXPECT_FLOAT_EQ(o.momentum, 0.5f);
  EXPECT_TRUE(o.nesterov);
  EXPECT_FLOAT_EQ(o.weight_decay, 1e-4f);
  EXPECT_FLOAT_EQ(o.grad_clip, 2.0f);
  c.optimizer = "adamw";
  c.beta1 = 0.8;
  c.beta2 = 0.95;
  ASSERT_TRUE(optimizer_options_from_config(c, &o).ok());
  EXPECT_EQ(o.kind, OptimizerKind::kAdamW);
  EXPECT_FLOAT_EQ(o.beta1, 0.8f);
  EXPECT_FLOAT_EQ(o.beta2, 0.95f);
  c.beta2 = 1.0;
  EXPECT_FALSE(optimizer_options_from_config(c, &o).ok());
  c.beta2 = 0.95;
  c.optimizer = "rmsprop";
  const Status s = optimizer_options_from_config(c, &o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rmsprop"), std::string::npos);
}

// --- learning-rate schedules -------------------------------------------------------------

LrSchedule schedule(LrScheduleKind kind, double lr, double warmup_epochs = 0) {
  LrSchedule s;
  s.kind = kind;
  s.lr = lr;
  s.warmup_epochs = warmup_epochs;
  return s;
}

TEST(LrSchedule, WarmupRampsLinearlyToTheFullRate) {
  constexpr std::int64_t kPerEpoch = 10;
  const LrSchedule s = schedule(LrScheduleKind::kConstant, 0.5, /*warmup_epochs=*/0.5);
  ASSERT_EQ(warmup_steps(s, kPerEpoch), 5);
  for (std::int64_t step = 0; step < 5; ++step)
    EXPECT_DOUBLE_EQ(learning_rate(s, step, kPerEpoch, 3), 0.5 * static_cast<double>(step + 1) / 5);
  EXPECT_DOUBLE_EQ(learning_rate(s, 4, kPerEpoch, 3), 0.5);  // the last warmup step is full
  for (std::int64_t step = 5; step < 30; ++step)
    EXPECT_DOUBLE_EQ(learning_rate(s, step, kPerEpoch, 3), 0.5);
  // Fractional warmup rounds to whole steps, but never to none.
  EXPECT_EQ(warmup_steps(schedule(LrScheduleKind::kConstant, 1, 0.01), kPerEpoch), 1);
  EXPECT_EQ(warmup_steps(schedule(LrScheduleKind::kConstant, 1, 1.26), kPerEpoch), 13);
  EXPECT_EQ(warmup_steps(schedule(LrScheduleKind::kConstant, 1, 0), kPerEpoch), 0);
}

TEST(LrSchedule, StepMultipliesByGammaAtEachBoundary) {
  LrSchedule s = schedule(LrScheduleKind::kStep, 1.0);
  s.step_epochs = 2;
  s.gamma = 0.5;
  constexpr std::int64_t kPerEpoch = 10;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0, kPerEpoch, 10), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, 19, kPerEpoch, 10), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, 20, kPerEpoch, 10), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(s, 39, kPerEpoch, 10), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(s, 40, kPerEpoch, 10), 0.25);
}

TEST(LrSchedule, CosineRunsFromLrToLrMinMonotonically) {
  LrSchedule s = schedule(LrScheduleKind::kCosine, 1.0);
  s.lr_min = 0.1;
  constexpr std::int64_t kPerEpoch = 10;
  constexpr int kEpochs = 3;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0, kPerEpoch, kEpochs), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, 15, kPerEpoch, kEpochs), 0.55);  // halfway: the mean
  EXPECT_DOUBLE_EQ(learning_rate(s, 30, kPerEpoch, kEpochs), 0.1);
  EXPECT_GT(learning_rate(s, 29, kPerEpoch, kEpochs), 0.1);  // the last real step still moves
  for (std::int64_t step = 1; step <= 30; ++step)
    EXPECT_LT(learning_rate(s, step, kPerEpoch, kEpochs),
              learning_rate(s, step - 1, kPerEpoch, kEpochs))
        << step;

  // With warmup: up the ramp, then the cosine over the remaining steps.
  s.warmup_epochs = 1;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0, kPerEpoch, kEpochs), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(s, 9, kPerEpoch, kEpochs), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, 10, kPerEpoch, kEpochs), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, 20, kPerEpoch, kEpochs), 0.55);
  EXPECT_DOUBLE_EQ(learning_rate(s, 30, kPerEpoch, kEpochs), 0.1);
  for (std::int64_t step = 11; step <= 30; ++step)
    EXPECT_LT(learning_rate(s, step, kPerEpoch, kEpochs),
              learning_rate(s, step - 1, kPerEpoch, kEpochs));
}

TEST(LrSchedule, FromConfig) {
  TrainConfig c;
  LrSchedule s;
  ASSERT_TRUE(lr_schedule_from_config(c, &s).ok());
  EXPECT_EQ(s.kind, LrScheduleKind::kConstant);
  c.lr_schedule = "cosine";
  c.lr = 0.1;
  c.lr_min = 0.001;
  c.warmup_epochs = 0.5;
  ASSERT_TRUE(lr_schedule_from_config(c, &s).ok());
  EXPECT_EQ(s.kind, LrScheduleKind::kCosine);
  EXPECT_DOUBLE_EQ(s.lr, 0.1);
  EXPECT_DOUBLE_EQ(s.lr_min, 0.001);
  EXPECT_DOUBLE_EQ(s.warmup_epochs, 0.5);
  c.lr_schedule = "exponential";
  const Status bad = lr_schedule_from_config(c, &s);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("exponential"), std::string::npos);
  c.lr_schedule = "step";
  c.lr_gamma = 0;
  EXPECT_FALSE(lr_schedule_from_config(c, &s).ok());
}

}  // namespace
}  // namespace trellis::worker

// --- TrainConfig (common/train_config.h) -------------------------------------------------
namespace trellis {
namespace {

Status set(const std::string& name, const ParamValue& v, TrainConfig* c) {
  return train_config_from_params({{name, v}}, c);
}

void expect_refused(const std::string& name, const ParamValue& v, const std::string& needle) {
  TrainConfig c;
  const Status s = set(name, v, &c);
  ASSERT_FALSE(s.ok()) << name << " = " << to_string(v);
  EXPECT_NE(s.message().find(name), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
}

TEST(TrainConfig, EveryNewNameIsKnown) {
  const auto& names = hyperparam_names();
  for (const char* n : {"model", "hidden", "hidden_layers", "hidden_units", "activation",
                        "dropout", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
                        "beta1", "beta2", "grad_clip", "batch_size", "epochs", "lr_schedule",
                        "warmup_epochs", "lr_step_epochs", "lr_gamma", "lr_min", "layers"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
}

TEST(TrainConfig, ChoicesAccepted) {
  TrainConfig c;
  for (const char* m : {"linear", "logistic", "softmax", "mlp", "cnn"}) {
    ASSERT_TRUE(set("model", std::string(m), &c).ok()) << m;
    EXPECT_EQ(c.model, m);
  }
  for (const char* a : {"relu", "tanh", "gelu"}) ASSERT_TRUE(set("activation", std::string(a), &c).ok());
  for (const char* o : {"sgd", "adam", "adamw"}) ASSERT_TRUE(set("optimizer", std::string(o), &c).ok());
  for (const char* s : {"constant", "step", "cosine"})
    ASSERT_TRUE(set("lr_schedule", std::string(s), &c).ok());
  expect_refused("model", std::string("rnn"), "rnn");
  expect_refused("activation", std::string("swish"), "swish");
  expect_refused("optimizer", std::string("lamb"), "lamb");
  expect_refused("lr_schedule", std::string("linear"), "linear");
  expect_refused("activation", std::int64_t{1}, "string");
}

TEST(TrainConfig, HiddenParsesLayerLists) {
  TrainConfig c;
  ASSERT_TRUE(set("hidden", std::string("256,128"), &c).ok());
  EXPECT_TRUE(c.has_hidden);
  EXPECT_EQ(c.hidden, (std::vector<int>{256, 128}));
  ASSERT_TRUE(set("hidden", std::string(" 64 , 32,16 "), &c).ok());
  EXPECT_EQ(c.hidden, (std::vector<int>{64, 32, 16}));
  ASSERT_TRUE(set("hidden", std::int64_t{300}, &c).ok());  // a bare int: one layer
  EXPECT_EQ(c.hidden, (std::vector<int>{300}));
  ASSERT_TRUE(set("hidden", std::string(""), &c).ok());  // [] : no hidden layer
  EXPECT_TRUE(c.has_hidden);
  EXPECT_TRUE(hidden_sizes(c).empty());

  expect_refused("hidden", std::string("256,x"), "'x'");
  expect_refused("hidden", std::string("256,,128"), "''");
  expect_refused("hidden", std::string("256,"), "''");
  expect_refused("hidden", std::string("12a"), "'12a'");
  expect_refused("hidden", std::string("0"), "outside");
  expect_refused("hidden", std::string("128,-4"), "-4");
  expect_refused("hidden", std::string("99999999999"), "99999999999");
  expect_refused("hidden", std::int64_t{0}, "outside");
  expect_refused("hidden", 2.5, "list of layer sizes");
  expect_refused("hidden", std::string("1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1"), "at most 16");
}

TEST(TrainConfig, HiddenWinsOverLayersTimesUnits) {
  TrainConfig c;
  ASSERT_TRUE(train_config_from_params({{"hidden_layers", std::int64_t{3}},
                                        {"hidden_units", std::int64_t{7}}},
                                       &c).ok());
  EXPECT_EQ(hidden_sizes(c), std::vector<int>(3, 7));
  ASSERT_TRUE(train_config_from_params({{"hidden", std::string("32")},
                                        {"hidden_layers", std::int64_t{3}},
                                        {"hidden_units", std::int64_t{7}}},
                                       &c).ok());
  EXPECT_EQ(hidden_sizes(c), std::vector<int>{32});
  // Only mlp has hidden layers.
  c.model = "softmax";
  EXPECT_TRUE(hidden_sizes(c).empty());
  c.model = "linear";
  EXPECT_TRUE(hidden_sizes(c).empty());
}

TEST(TrainConfig, NesterovTakesBooleansAndZeroOne) {
  TrainConfig c;
  ASSERT_TRUE(set("nesterov", std::string("true"), &c).ok());
  EXPECT_TRUE(c.nesterov);
  ASSERT_TRUE(set("nesterov", std::string("false"), &c).ok());
  EXPECT_FALSE(c.nesterov);
  ASSERT_TRUE(set("nesterov", std::int64_t{1}, &c).ok());
  EXPECT_TRUE(c.nesterov);
  ASSERT_TRUE(set("nesterov", std::int64_t{0}, &c).ok());
  EXPECT_FALSE(c.nesterov);
  expect_refused("nesterov", std::int64_t{2}, "true, false, 0 or 1");
  expect_refused("nesterov", std::string("yes"), "yes");
  expect_refused("nesterov", 1.0, "true, false, 0 or 1");
}

TEST(TrainConfig, NumericRanges) {
  TrainConfig c;
  ASSERT_TRUE(train_config_from_params(
                  {{"dropout", 0.5}, {"beta1", 0.8}, {"beta2", 0.99}, {"grad_clip", 5.0},
                   {"warmup_epochs", 0.5}, {"lr_step_epochs", std::int64_t{3}},
                   {"lr_gamma", 1.0}, {"lr_min", 1e-5}, {"momentum", 0.9}},
                  &c)
                  .ok());
  EXPECT_DOUBLE_EQ(c.dropout, 0.5);
  EXPECT_DOUBLE_EQ(c.beta1, 0.8);
  EXPECT_DOUBLE_EQ(c.beta2, 0.99);
  EXPECT_DOUBLE_EQ(c.grad_clip, 5.0);
  EXPECT_DOUBLE_EQ(c.warmup_epochs, 0.5);
  EXPECT_EQ(c.lr_step_epochs, 3);
  EXPECT_DOUBLE_EQ(c.lr_gamma, 1.0);
  EXPECT_DOUBLE_EQ(c.lr_min, 1e-5);
  // Floats take ints.
  ASSERT_TRUE(set("warmup_epochs", std::int64_t{2}, &c).ok());
  EXPECT_DOUBLE_EQ(c.warmup_epochs, 2.0);
  ASSERT_TRUE(set("dropout", std::int64_t{0}, &c).ok());

  expect_refused("dropout", 1.0, "[0, 1)");  // open at 1
  expect_refused("dropout", -0.1, "outside");
  expect_refused("beta1", 1.0, "outside");
  expect_refused("beta2", -0.5, "outside");
  expect_refused("grad_clip", -1.0, "outside");
  expect_refused("warmup_epochs", -1.0, "outside");
  expect_refused("lr_step_epochs", 2.5, "integer");
  expect_refused("lr_step_epochs", std::int64_t{0}, "outside");
  expect_refused("lr_gamma", 0.0, "(0, 1]");  // open at 0
  expect_refused("lr_gamma", 1.5, "outside");
  expect_refused("lr_min", -1e-3, "outside");
  expect_refused("momentum", 1.0, "outside");
  expect_refused("dropout", std::string("high"), "number");
}

TEST(TrainConfig, CosineRefusesLrMinAboveLr) {
  TrainConfig c;
  const Status s = train_config_from_params(
      {{"lr_schedule", std::string("cosine")}, {"lr", 0.01}, {"lr_min", 0.1}}, &c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("lr_min"), std::string::npos);
  // The same lr_min is fine with a schedule that does not use it.
  EXPECT_TRUE(train_config_from_params({{"lr", 0.01}, {"lr_min", 0.1}}, &c).ok());
}

}  // namespace
}  // namespace trellis
