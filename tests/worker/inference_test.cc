// TrainedModel and predict on model files written here: the architecture read back from the
// trial's parameters and the buffers, the input and target scaling, and the forward pass being
// the trainer's (Mlp::evaluate counts the same correct rows).

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <span>

#include "tests/worker/idx_fixture.h"
#include "worker/checkpoint.h"
#include "worker/inference/predictor.h"
#include "worker/inference/trained_model.h"

namespace trellis::worker {
namespace {

namespace fs = std::filesystem;

class InferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::fresh_dir(std::string("inference_") +
                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string write(const std::string& name, const std::string& fingerprint,
                    std::vector<std::pair<std::string, std::vector<float>>> buffers) {
    Checkpoint c;
    c.fingerprint = fingerprint;
    c.buffers = std::move(buffers);
    const std::string path = (dir_ / name).string();
    EXPECT_TRUE(write_checkpoint(path, c).ok());
    return path;
  }
  fs::path dir_;
};

const ParamMap kLinear = {{"model", std::string("linear")}};

float predict_one(const TrainedModel& m, std::vector<float> row) {
  const Eigen::MatrixXf x = Eigen::Map<Eigen::MatrixXf>(row.data(), static_cast<Eigen::Index>(row.size()), 1);
  return predict(m, x).values.at(0);
}

// The regression contract: with target.mean and target.std the network's output is the
// standardised target, reported as output * std + mean; without them, as it is.
TEST_F(InferenceTest, ATargetScalingIsUndoneAndAnInputScalingApplied) {
  const std::vector<float> w = {2.0f, -1.0f, 0.5f};  // 2 x0 - x1 + 0.5
  TrainedModel plain, scaled, both;
  ASSERT_TRUE(load_trained_model(write("a", "params=3 features=2", {{"params", w}}), kLinear, &plain).ok());
  ASSERT_TRUE(load_trained_model(write("b", "features=2", {{"params", w}, {"target.mean", {10.0f}},
                                                          {"target.std", {3.0f}}}),
                                 kLinear, &scaled)
                  .ok());
  ASSERT_TRUE(load_trained_model(write("c", "features=2",
                                       {{"params", w}, {"scale.mean", {1.0f, 0.0f}},
                                        {"scale.inv_std", {2.0f, 0.5f}}, {"target.mean", {10.0f}},
                                        {"target.std", {3.0f}}}),
                                 kLinear, &both)
                  .ok());
  EXPECT_TRUE(plain.regression());
  EXPECT_FLOAT_EQ(predict_one(plain, {1, 2}), 0.5f);
  EXPECT_FLOAT_EQ(predict_one(scaled, {1, 2}), 0.5f * 3 + 10);
  // (1, 2) scaled: ((1 - 1) * 2, (2 - 0) * 0.5) = (0, 1); 0 - 1 + 0.5 = -0.5.
  EXPECT_FLOAT_EQ(predict_one(both, {1, 2}), -0.5f * 3 + 10);
}

// predict's classes are the trainer's: on the same rows Mlp::evaluate counts exactly the rows
// whose predicted class is the label, and the probabilities are a softmax of each row.
TEST_F(InferenceTest, ClassesAreTheOnesTheTrainerCountsCorrect) {
  const ParamMap params = {{"model", std::string("mlp")}, {"hidden", std::string("7,5")},
                           {"activation", std::string("gelu")}};
  TrainConfig config;
  ASSERT_TRUE(train_config_from_params(params, &config).ok());
  MlpShape shape;
  ASSERT_TRUE(mlp_shape_from_config(config, 6, 4, &shape).ok());
  Mlp mlp(shape, 300);
  mlp.init(42);
  const Eigen::VectorXf p = mlp.params();
  const std::string path =
      write("m", "features=6", {{"params", std::vector<float>(p.data(), p.data() + p.size())}});
  TrainedModel model;
  ASSERT_TRUE(load_trained_model(path, params, &model).ok());
  EXPECT_EQ(model.classes(), 4);
  EXPECT_EQ(model.shape.hidden, (std::vector<int>{7, 5}));
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(6, 300) * 3;
  const Predictions out = predict(model, x);
  std::vector<std::int32_t> labels(300);
  for (int j = 0; j < 300; ++j) labels[static_cast<std::size_t>(j)] = j % 4;
  std::int64_t correct = 0;
  for (int j = 0; j < 300; ++j) {
    if (out.classes[static_cast<std::size_t>(j)] == labels[static_cast<std::size_t>(j)]) ++correct;
    EXPECT_NEAR(out.probabilities.col(j).sum(), 1.0f, 1e-5f);
  }
  EXPECT_EQ(correct, mlp.evaluate(x, std::span<const std::int32_t>(labels)).correct);
}

// A logistic model: two classes from one output, class 1 exactly where the trainer counts it
// (Mlp::evaluate on 0/1 targets), and the probabilities the sigmoid of the logit and its
// complement.
TEST_F(InferenceTest, ALogisticModelsClassesAreTheTrainersAndItsProbabilitiesTheSigmoid) {
  const ParamMap params = {{"model", std::string("logistic")}};
  TrainConfig config;
  ASSERT_TRUE(train_config_from_params(params, &config).ok());
  MlpShape shape;
  ASSERT_TRUE(mlp_shape_from_config(config, 5, 2, &shape).ok());
  Mlp mlp(shape, 400);
  mlp.init(9);
  const Eigen::VectorXf p = mlp.params();
  ASSERT_EQ(p.size(), 6) << "5 weights and a bias";
  const std::string path =
      write("l", "features=5", {{"params", std::vector<float>(p.data(), p.data() + p.size())}});
  TrainedModel model;
  ASSERT_TRUE(load_trained_model(path, params, &model).ok());
  EXPECT_FALSE(model.regression());
  EXPECT_EQ(model.classes(), 2);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(5, 400) * 2;
  const Predictions out = predict(model, x);
  ASSERT_EQ(out.classes.size(), 400u);
  ASSERT_EQ(out.probabilities.rows(), 2);
  std::vector<float> targets(400);
  for (int j = 0; j < 400; ++j) targets[static_cast<std::size_t>(j)] = static_cast<float>(j % 2);
  std::int64_t correct = 0, ones = 0;
  for (int j = 0; j < 400; ++j) {
    const auto r = static_cast<std::size_t>(j);
    const double z = p.head(5).dot(x.col(j)) + p[5];
    EXPECT_NEAR(out.probabilities(1, j), 1.0 / (1.0 + std::exp(-z)), 1e-5) << "row " << j;
    EXPECT_NEAR(out.probabilities.col(j).sum(), 1.0f, 1e-6f);
    EXPECT_EQ(out.classes[r], out.probabilities(1, j) > 0.5f ? 1 : 0) << "row " << j;
    ones += out.classes[r];
    if (out.classes[r] == static_cast<int>(targets[r])) ++correct;
  }
  EXPECT_GT(ones, 0) << "random weights put rows on both sides";
  EXPECT_LT(ones, 400);
  EXPECT_EQ(correct, mlp.evaluate(x, std::span<const float>(targets)).correct);
}

TEST_F(InferenceTest, AModelFileThatDoesNotFitItsParametersIsRefusedNamingIt) {
  TrainedModel m;
  const std::string wrong = write("wrong", "features=2", {{"params", {1, 2, 3, 4}}});
  Status s = load_trained_model(wrong, kLinear, &m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(wrong + ": its params buffer holds 4 floats"), std::string::npos)
      << s.message();
  const std::string half = write("half", "features=2", {{"params", {1, 2, 3}}, {"target.mean", {1}}});
  s = load_trained_model(half, kLinear, &m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(half + ": has buffer 'target.mean' but not 'target.std'"),
            std::string::npos)
      << s.message();
  const std::string none = (dir_ / "none").string();
  s = load_trained_model(none, kLinear, &m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(none), std::string::npos) << s.message();
}

// A cnn trial's model file: its class count read back from the params buffer, and predict's
// classes those Cnn::evaluate counts correct; a buffer that fits no class count is refused.
TEST_F(InferenceTest, ACnnIsRebuiltFromItsLayersAndPredictsAsTheTrainer) {
  const ParamMap params = {{"model", std::string("cnn")},
                           {"layers", std::string("conv 3 3x3, relu, pool 2, dense 6, relu")}};
  TrainConfig config;
  ASSERT_TRUE(train_config_from_params(params, &config).ok());
  CnnShape shape;
  ASSERT_TRUE(cnn_shape_from_config(config, 36, 5, 0, &shape).ok());
  Cnn cnn(shape, 200);
  cnn.init(42);
  const Eigen::VectorXf p = cnn.params();
  std::vector<float> flat(p.data(), p.data() + p.size());
  TrainedModel model;
  ASSERT_TRUE(load_trained_model(write("c", "features=36", {{"params", flat}}), params, &model).ok());
  EXPECT_TRUE(model.is_cnn());
  EXPECT_EQ(model.classes(), 5);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(36, 200);
  const Predictions out = predict(model, x);
  std::vector<std::int32_t> labels(200);
  for (int j = 0; j < 200; ++j) labels[static_cast<std::size_t>(j)] = j % 5;
  std::int64_t correct = 0;
  for (int j = 0; j < 200; ++j)
    if (out.classes[static_cast<std::size_t>(j)] == labels[static_cast<std::size_t>(j)]) ++correct;
  EXPECT_EQ(correct, cnn.evaluate(x, std::span<const std::int32_t>(labels)).correct);
  flat.pop_back();
  const std::string wrong = write("w", "features=36", {{"params", flat}});
  const Status s = load_trained_model(wrong, params, &model);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(wrong + ": its params buffer holds"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace trellis::worker
