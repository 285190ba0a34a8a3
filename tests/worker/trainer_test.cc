#include "worker/checkpoint.h"
#include "worker/trainer.h"
#include "worker/kernels/float_mode.h"

#include <gtest/gtest.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/checkpoint_path.h"
#include "worker/data/dataset.h"
#include "worker/regression_metrics.h"
#include "tests/worker/idx_fixture.h"

namespace trellis::worker {
namespace {

namespace fs = std::filesystem;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

int world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

// 2000 training / 500 test rows of 8x8 class patterns with noise: easy to learn, far from
// trivially separable by one pixel.
class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::fresh_dir("trainer");
    testing::write_dataset(dir_, testing::make_pattern_data(2000, 8, 1),
                           testing::make_pattern_data(500, 8, 2), /*gz=*/true);
  }
  void TearDown() override { fs::remove_all(dir_); }

  TrialTask task() const {
    TrialTask t;
    t.trial = 1;
    t.seed = 2024;
    t.config.hidden_layers = 1;
    t.config.hidden_units = 32;
    t.config.activation = "relu";
    t.config.optimizer = "adam";
    t.config.lr = 1e-2;
    t.config.batch_size = 64;
    t.config.epochs = 3;
    t.dataset.name = "patterns";
    t.dataset.format = "idx";
    t.dataset.path = dir_.string();
    t.dataset.validation_fraction = 0.1;
    return t;
  }

  fs::path dir_;
};

struct Outcome {
  Status status;
  TrainResult result;
  std::vector<MetricMap> epochs;
  std::vector<int> epoch_numbers;
  std::vector<bool> checkpointed;
  int steps = 0;
};

// `stop_after_steps` > 0: this rank asks to stop (as on SIGTERM) once it has taken that many
// steps in this call.
// `stored`: the newest checkpoint epoch the coordinator has acknowledged, asked after each
// epoch's checkpoint (empty: no coordinator).
Outcome train_once(const TrialTask& t, MPI_Comm comm = MPI_COMM_WORLD, int stop_after_steps = 0,
                   std::function<int()> stored = {}) {
  Outcome r;
  TrainerHooks hooks;
  hooks.stored_checkpoint = std::move(stored);
  if (stop_after_steps > 0) hooks.stop_now = [&r, stop_after_steps] { return r.steps + 1 >= stop_after_steps; };
  hooks.on_epoch = [&r, &t](int epoch, const MetricMap& m, bool checkpointed) {
    EXPECT_EQ(epoch, t.resume_epoch + static_cast<int>(r.epochs.size()) + 1);
    r.epochs.push_back(m);
    r.epoch_numbers.push_back(epoch);
    r.checkpointed.push_back(checkpointed);
    return true;
  };
  hooks.on_step = [&r] { ++r.steps; };
  std::unique_ptr<GroupComm> group;
  r.status = GroupComm::Create(comm, {}, &group);
  if (r.status.ok()) r.status = train(t, *group, hooks, &r.result);
  return r;
}

// The metrics that must not depend on timing.
std::vector<double> learned(const Outcome& r) {
  std::vector<double> out;
  for (const auto& m : r.epochs)
    for (const char* k : {"train_loss", "val_loss", "val_acc"}) out.push_back(m.at(k));
  for (const auto& [k, v] : r.result.final_metrics) out.push_back(v);
  return out;
}

TEST_F(TrainerTest, LearnsSyntheticPatterns) {
  if (world_size() != 1) GTEST_SKIP() << "single-rank test";
  const Outcome r = train_once(task());
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(r.result.epochs_run, 3);
  EXPECT_FALSE(r.result.stopped_early);
  ASSERT_EQ(r.epochs.size(), 3u);
  for (const auto& m : r.epochs)
    for (const char* k : {"train_loss", "val_loss", "val_acc", "samples_per_s", "epoch_s"})
      EXPECT_TRUE(m.count(k) == 1 && std::isfinite(m.at(k))) << k;
  // 1800-odd training rows, batch 64 over 48 shards: the shard plan decides the step count.
  EXPECT_GT(r.steps, 3 * 10);
  EXPECT_EQ(r.steps % 3, 0);
  EXPECT_LT(r.epochs[2].at("train_loss"), r.epochs[0].at("train_loss"));
  EXPECT_GT(r.epochs[2].at("val_acc"), 0.8);  // chance is 0.1
  const MetricMap& f = r.result.final_metrics;
  EXPECT_GT(f.at("test_acc"), 0.8);
  EXPECT_LT(f.at("test_loss"), 1.0);
  EXPECT_EQ(f.at("val_acc"), r.epochs[2].at("val_acc"));
  EXPECT_EQ(f.at("train_loss"), r.epochs[2].at("train_loss"));
  EXPECT_EQ(f.size(), 5u);
}

TEST_F(TrainerTest, SameSeedGivesBitIdenticalMetrics) {
  if (world_size() != 1) GTEST_SKIP() << "single-rank test";
  TrialTask t = task();
  t.config.epochs = 2;
  const Outcome a = train_once(t), b = train_once(t);
  ASSERT_TRUE(a.status.ok()) << a.status.message();
  ASSERT_TRUE(b.status.ok()) << b.status.message();
  EXPECT_EQ(learned(a), learned(b));
  t.seed += 1;
  const Outcome c = train_once(t);
  ASSERT_TRUE(c.status.ok()) << c.status.message();
  EXPECT_NE(learned(a), learned(c));
}

// The trainer's thread computes with denormals flushed (kernels/float_mode.h): after train(), a
// product that would be subnormal is 0 in this thread, which was computing subnormals before.
TEST_F(TrainerTest, TrainsWithDenormalsFlushedInItsThread) {
  if (world_size() != 1) GTEST_SKIP() << "single-rank test";
  const unsigned saved = _mm_getcsr();
  _mm_setcsr(saved & ~((1u << 15) | (1u << 6)));
  volatile float tiny = 1e-37f, scale = 1e-3f;
  EXPECT_NE(tiny * scale, 0.0f);
  TrialTask t = task();
  t.config.epochs = 1;
  const Outcome r = train_once(t);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_TRUE(kernels::denormals_flushed_in_this_thread());
  EXPECT_EQ(tiny * scale, 0.0f);
  _mm_setcsr(saved);
}

// Epochs 2 and 3 resumed from the epoch-1 checkpoint equal epochs 2 and 3 of the
// uninterrupted run, bit for bit: weights, optimizer state, data order and lr all continue.
TEST_F(TrainerTest, ResumingFromACheckpointEqualsTheUninterruptedRun) {
  TrialTask t = task();
  t.config.optimizer = "adam";
  t.checkpoint = (dir_ / "ckpt" / "trial-1.ckpt").string();
  const Outcome whole = train_once(t);
  ASSERT_TRUE(whole.status.ok()) << whole.status.message();
  ASSERT_EQ(whole.epochs.size(), 3u);
  if (world_rank() == 0) EXPECT_EQ(whole.checkpointed, (std::vector<bool>{true, true, true}));

  // Stop after epoch 1: its checkpoint is what the next attempt continues from.
  TrialTask first = t;
  first.config.epochs = 1;
  ASSERT_TRUE(train_once(first).status.ok());
  TrialTask rest = t;
  rest.resume_epoch = 1;
  rest.resume = true;
  const Outcome resumed = train_once(rest);
  ASSERT_TRUE(resumed.status.ok()) << resumed.status.message();
  EXPECT_EQ(resumed.epoch_numbers, (std::vector<int>{2, 3}));
  EXPECT_EQ(resumed.result.epochs_run, 3);
  for (int i = 0; i < 2; ++i)
    for (const char* k : {"train_loss", "val_loss", "val_acc"})
      EXPECT_EQ(resumed.epochs[i].at(k), whole.epochs[i + 1].at(k)) << k << " epoch " << i + 2;
  EXPECT_EQ(resumed.result.final_metrics, whole.result.final_metrics);
}

// Rank 0 of a trial that trains through its last epoch hands back the final model: the
// weights its last checkpoint holds, the scaling its inputs saw, its final metrics, and no
// optimizer state. A paused attempt has none; the attempt that resumes and finishes has the
// uninterrupted run's model, byte for byte.
TEST_F(TrainerTest, TheFinalModelIsTheTrainedWeightsWithTheirScaling) {
  TrialTask t = task();
  t.dataset.scaling = "standard";
  t.checkpoint = (dir_ / "ckpt" / "trial-1.ckpt").string();
  const Outcome whole = train_once(t);
  ASSERT_TRUE(whole.status.ok()) << whole.status.message();
  if (world_rank() != 0) {
    EXPECT_TRUE(whole.result.model.empty()) << "only rank 0 sends the model";
    return;
  }
  Checkpoint model, last;
  ASSERT_TRUE(decode_checkpoint(whole.result.model, "the model", &model).ok());
  ASSERT_TRUE(read_checkpoint(t.checkpoint + ".epoch-3", &last).ok());
  EXPECT_EQ(model.epoch, 3);
  EXPECT_EQ(model.seed, t.seed);
  ASSERT_NE(model.find("params"), nullptr);
  EXPECT_EQ(*model.find("params"), *last.find("params"));
  ASSERT_NE(model.find("scale.mean"), nullptr);
  ASSERT_NE(model.find("scale.inv_std"), nullptr);
  EXPECT_EQ(model.find("scale.mean")->size(), 64u);
  EXPECT_EQ(model.find("scale.inv_std")->size(), 64u);
  EXPECT_EQ(model.buffers.size(), 3u) << "no optimizer state";
  MetricMap metrics(model.metrics.begin(), model.metrics.end());
  EXPECT_EQ(metrics, whole.result.final_metrics);

  TrialTask paused = t;
  paused.stop_epoch = 1;
  const Outcome first = train_once(paused);
  ASSERT_TRUE(first.status.ok());
  EXPECT_TRUE(first.result.model.empty()) << "paused after epoch 1 of 3";
  TrialTask rest = t;
  rest.resume_epoch = 1;
  rest.resume = true;
  const Outcome resumed = train_once(rest);
  ASSERT_TRUE(resumed.status.ok()) << resumed.status.message();
  EXPECT_TRUE(resumed.result.model == whole.result.model);

  TrialTask unscaled = task();
  const Outcome plain = train_once(unscaled);
  ASSERT_TRUE(plain.status.ok());
  Checkpoint plain_model;
  ASSERT_TRUE(decode_checkpoint(plain.result.model, "the model", &plain_model).ok());
  EXPECT_EQ(plain_model.find("scale.mean"), nullptr) << "idx pixels are not scaled by default";
}

// A regression trial trains on the standardised target but reports in the target's units:
// its validation rmse, mae and r2 must equal those computed here by hand from the final
// model (weights, input scaling, target scaling) on the rows the dataset holds out.
TEST_F(TrainerTest, RegressionMetricsAreInTheTargetsUnits) {
  const fs::path data = dir_ / "regression";
  fs::create_directories(data);
  {
    std::ofstream out(data / "all.csv");
    out << "a,b,y\n";
    for (int i = 0; i < 400; ++i) {
      const double a = (i * 37) % 101 / 10.0, b = (i * 53) % 89 / 7.0;
      const double noise = ((i * 7919) % 23 - 11) * 2.0;
      out << a << "," << b << "," << 300 + 40 * a - 25 * b + noise << "\n";
    }
  }
  TrialTask t = task();
  t.config.model = "linear";
  t.config.lr = 0.05;
  t.config.batch_size = 16;
  t.config.epochs = 10;
  t.dataset.format = "csv";
  t.dataset.path = data.string();
  t.dataset.train = "all.csv";
  t.dataset.label = "y";
  t.dataset.task = "regression";
  t.dataset.validation_fraction = 0.2;
  t.dataset.test_fraction = 0.2;
  t.dataset.split_seed = 17;
  const Outcome r = train_once(t);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  const MetricMap& m = r.result.final_metrics;
  for (const char* name : {"train_loss", "val_loss", "val_rmse", "val_mae", "val_r2", "test_loss",
                           "test_rmse", "test_mae", "test_r2"})
    EXPECT_EQ(m.count(name), 1u) << name;
  for (const char* name : {"val_acc", "test_acc"}) EXPECT_EQ(m.count(name), 0u) << name;
  for (const MetricMap& epoch : r.epochs) EXPECT_EQ(epoch.count("val_acc"), 0u);
  if (world_rank() != 0) return;

  Checkpoint model;
  ASSERT_TRUE(decode_checkpoint(r.result.model, "the model", &model).ok());
  ASSERT_NE(model.find("target.mean"), nullptr);
  ASSERT_NE(model.find("target.std"), nullptr);
  ASSERT_EQ(model.find("target.mean")->size(), 1u);
  const double mean = model.find("target.mean")->front(), sd = model.find("target.std")->front();
  EXPECT_GT(mean, 100) << "the target's own mean, not 0";
  EXPECT_GT(sd, 10);
  const std::vector<float>& w = *model.find("params");
  ASSERT_EQ(w.size(), 3u);  // two weights and the bias

  // The held-out rows as the trainer saw them (features scaled), targets back in units.
  std::vector<RankData> group(1);
  LayoutOptions l;
  l.global_batch = t.config.batch_size;
  ASSERT_TRUE(read_local(t.dataset, l, &group[0]).ok());
  ASSERT_TRUE(finish_in_process(&group).ok());
  const RankData& d = group[0];
  EXPECT_NEAR(d.target_mean, mean, 1e-3);
  double sse = 0, sae = 0, sum = 0, sum_sq = 0;
  for (std::int64_t c : d.val_columns) {
    const double pred = (w[0] * d.train_x(0, c) + w[1] * d.train_x(1, c) + w[2]) * sd + mean;
    const double y = d.train_y[static_cast<std::size_t>(c)] * d.target_std + d.target_mean;
    sse += (pred - y) * (pred - y);
    sae += std::abs(pred - y);
    sum += y;
    sum_sq += y * y;
  }
  const double n = static_cast<double>(d.val_columns.size());
  ASSERT_EQ(n, 64);  // a fifth of the 320 rows the test split left
  const double rmse = std::sqrt(sse / n);
  EXPECT_NEAR(m.at("val_rmse"), rmse, 1e-4 * rmse);
  EXPECT_NEAR(m.at("val_loss"), sse / n, 1e-4 * sse / n);
  EXPECT_NEAR(m.at("val_mae"), sae / n, 1e-4 * sae / n);
  EXPECT_NEAR(m.at("val_r2"), 1 - sse / (sum_sq - sum * sum / n), 1e-4);
  EXPECT_GT(m.at("val_r2"), 0.5) << "the linear model learned the linear target";
}

TEST(RegressionMetrics, PerfectAndConstantPredictors) {
  // Targets 1, 2, 3, 6 (standardised units; std 2 back to the target's): sum 12, squares 50.
  MetricMap perfect;
  regression_metrics(RegressionSums{4, 0, 0, 12, 50}, 2.0, "val", &perfect);
  EXPECT_DOUBLE_EQ(perfect.at("val_r2"), 1.0);
  EXPECT_DOUBLE_EQ(perfect.at("val_rmse"), 0.0);
  // Predicting the mean, 3, everywhere: squared errors 4+1+0+9 = 14, absolute 2+1+0+3 = 6.
  MetricMap constant;
  regression_metrics(RegressionSums{4, 14, 6, 12, 50}, 2.0, "test", &constant);
  EXPECT_NEAR(constant.at("test_r2"), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(constant.at("test_rmse"), std::sqrt(14.0 / 4) * 2);
  EXPECT_DOUBLE_EQ(constant.at("test_mae"), 6.0 / 4 * 2);
  EXPECT_DOUBLE_EQ(constant.at("test_loss"), 14.0 / 4 * 4);
  // All targets equal: nothing to explain.
  MetricMap flat;
  regression_metrics(RegressionSums{3, 0, 0, 6, 12}, 1.0, "val", &flat);
  EXPECT_DOUBLE_EQ(flat.at("val_r2"), 1.0);
  regression_metrics(RegressionSums{3, 0.3, 0.9, 6, 12}, 1.0, "val", &flat);
  EXPECT_DOUBLE_EQ(flat.at("val_r2"), 0.0);
}

// A checkpoint is removed only once the coordinator has stored a newer one: the next attempt
// resumes from the store's checkpoint epoch, and the reports after the last acknowledged one
// may be lost with the group.
TEST_F(TrainerTest, CheckpointsTheCoordinatorMayStillAskForAreKept) {
  if (world_size() != 1) GTEST_SKIP() << "single-rank test";
  TrialTask t = task();
  t.config.epochs = 5;
  t.checkpoint = (dir_ / "ckpt" / "lagging.ckpt").string();
  const auto exists = [&](int epoch) { return fs::exists(checkpoint_file(t.checkpoint, epoch)); };
  // The coordinator's Acks lag three epochs behind: after epoch 5 it has stored epoch 2.
  int epochs_done = 0;
  const Outcome lagging = train_once(t, MPI_COMM_WORLD, 0, [&] { return std::max(0, ++epochs_done - 3); });
  ASSERT_TRUE(lagging.status.ok()) << lagging.status.message();
  EXPECT_FALSE(exists(1));
  for (int e = 2; e <= 5; ++e) EXPECT_TRUE(exists(e)) << "epoch " << e;

  // A resumed attempt keeps the checkpoint it resumed from until a newer one is stored.
  TrialTask resumed = t;
  resumed.config.epochs = 7;
  resumed.resume = true;
  resumed.resume_epoch = 5;
  ASSERT_TRUE(train_once(resumed, MPI_COMM_WORLD, 0, [] { return 0; }).status.ok());
  for (int e = 5; e <= 7; ++e) EXPECT_TRUE(exists(e)) << "epoch " << e;
  EXPECT_FALSE(exists(2)) << "older than the resume point: no attempt can ask for it";

  // Without a coordinator (benchmarks, these tests) the last two are kept.
  TrialTask alone = task();
  alone.config.epochs = 4;
  alone.checkpoint = (dir_ / "ckpt" / "alone.ckpt").string();
  ASSERT_TRUE(train_once(alone).status.ok());
  EXPECT_FALSE(fs::exists(checkpoint_file(alone.checkpoint, 2)));
  EXPECT_TRUE(fs::exists(checkpoint_file(alone.checkpoint, 3)));
  EXPECT_TRUE(fs::exists(checkpoint_file(alone.checkpoint, 4)));
}

// SIGTERM mid-epoch: the group stops after the same step, checkpoints there, and the next
// attempt continues at that step; every metric equals the uninterrupted run's, bit for bit.
TEST_F(TrainerTest, APreemptedTrialResumesMidEpochExactly) {
  TrialTask t = task();
  t.config.dropout = 0.1;
  t.config.lr_schedule = "cosine";
  t.checkpoint = (dir_ / "preempt.ckpt").string();
  const Outcome whole = train_once(t);
  ASSERT_TRUE(whole.status.ok()) << whole.status.message();
  const int steps_per_epoch = whole.steps / 3;

  const int stop_at = steps_per_epoch + steps_per_epoch / 2;  // halfway through epoch 2
  const Outcome stopped = train_once(t, MPI_COMM_WORLD, stop_at);
  ASSERT_TRUE(stopped.status.ok()) << stopped.status.message();
  EXPECT_TRUE(stopped.result.preempted);
  EXPECT_EQ(stopped.steps, stop_at);
  EXPECT_EQ(stopped.epoch_numbers, (std::vector<int>{1}));
  EXPECT_TRUE(stopped.result.final_metrics.empty());
  if (world_rank() == 0) EXPECT_TRUE(stopped.result.checkpointed);

  TrialTask rest = t;
  rest.resume_epoch = 1;
  rest.resume = true;
  const Outcome resumed = train_once(rest);
  ASSERT_TRUE(resumed.status.ok()) << resumed.status.message();
  EXPECT_EQ(resumed.steps, 3 * steps_per_epoch - stop_at);
  ASSERT_EQ(resumed.epoch_numbers, (std::vector<int>{2, 3}));
  for (int i = 0; i < 2; ++i)
    for (const char* k : {"train_loss", "val_loss", "val_acc"})
      EXPECT_EQ(resumed.epochs[i].at(k), whole.epochs[i + 1].at(k)) << k << " epoch " << i + 2;
  EXPECT_EQ(resumed.result.final_metrics, whole.result.final_metrics);
}

TEST_F(TrainerTest, ACheckpointOfAnotherSetupOrEpochIsRefused) {
  TrialTask t = task();
  t.config.epochs = 1;
  t.checkpoint = (dir_ / "trial.ckpt").string();
  ASSERT_TRUE(train_once(t).status.ok());
  TrialTask wrong_epoch = t;
  wrong_epoch.config.epochs = 3;
  wrong_epoch.resume_epoch = 2;
  wrong_epoch.resume = true;
  Outcome r = train_once(wrong_epoch);
  ASSERT_FALSE(r.status.ok());
  EXPECT_TRUE(contains(r.status.message(), "trial.ckpt.epoch-2")) << r.status.message();
  TrialTask other_model = t;
  other_model.config.epochs = 3;
  other_model.config.hidden_units = 16;
  other_model.resume_epoch = 1;
  other_model.resume = true;
  r = train_once(other_model);
  ASSERT_FALSE(r.status.ok());
  EXPECT_TRUE(contains(r.status.message(), "another setup")) << r.status.message();
  TrialTask missing = t;
  missing.config.epochs = 3;
  missing.resume_epoch = 1;
  missing.resume = true;
  missing.checkpoint = (dir_ / "absent.ckpt").string();
  r = train_once(missing);
  ASSERT_FALSE(r.status.ok());
  EXPECT_TRUE(contains(r.status.message(), "absent.ckpt")) << r.status.message();
}

TEST_F(TrainerTest, RankZeroCanStopTheTrial) {
  TrialTask t = task();
  TrainerHooks hooks;
  int calls = 0;
  // Only rank 0's answer counts: the other ranks ask to go on.
  hooks.on_epoch = [&calls](int, const MetricMap&, bool) {
    return ++calls < 2 ? true : world_rank() != 0;
  };
  TrainResult result;
  std::unique_ptr<GroupComm> group;
  ASSERT_TRUE(GroupComm::Create(MPI_COMM_WORLD, {}, &group).ok());
  const Status s = train(t, *group, hooks, &result);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(result.epochs_run, 2);
  EXPECT_TRUE(result.stopped_early);
  EXPECT_EQ(result.final_metrics.count("test_acc"), 1u);
  EXPECT_TRUE(result.model.empty()) << "a pruned trial leaves no model";
}

TEST_F(TrainerTest, MissingDatasetNamesThePath) {
  TrialTask t = task();
  t.dataset.path = (dir_ / "no-such-dir").string();
  const Outcome r = train_once(t);
  ASSERT_FALSE(r.status.ok());
  EXPECT_TRUE(contains(r.status.message(), t.dataset.path)) << r.status.message();
  EXPECT_TRUE(contains(r.status.message(), "rank 0: ")) << r.status.message();
  EXPECT_TRUE(r.epochs.empty());
  // Named once: "dataset D: dataset D: ..." was what a researcher saw.
  const std::string named = "dataset " + t.dataset.path + ":";
  const std::string& m = r.status.message();
  EXPECT_EQ(m.find(named), m.rfind(named)) << m;
  // No trial can read it: the coordinator stops the sweep on this.
  EXPECT_TRUE(r.result.dataset_error);
}

// Labels that do not match the images: the dataset's fault, whatever the trial.
TEST_F(TrainerTest, LabelsThatDoNotMatchTheRowsAreTheDatasetsFault) {
  testing::IdxData train = testing::make_pattern_data(2000, 8, 1);
  train.labels.resize(1999);
  fs::remove(dir_ / "train-labels-idx1-ubyte.gz");
  testing::write_file(dir_ / "train-labels-idx1-ubyte", testing::labels_bytes(train), false);
  const Outcome r = train_once(task());
  ASSERT_FALSE(r.status.ok());
  EXPECT_TRUE(r.result.dataset_error) << r.status.message();
}

TEST_F(TrainerTest, DivergingLearningRateFailsWithNaN) {
  TrialTask t = task();
  t.config.optimizer = "sgd";
  t.config.lr = 1e30;
  const Outcome r = train_once(t);
  ASSERT_FALSE(r.status.ok());
  EXPECT_TRUE(contains(r.status.message(), "loss became NaN at epoch 1 step ")) << r.status.message();
  EXPECT_FALSE(r.result.dataset_error);  // this trial's lr: the sweep goes on
}

TEST_F(TrainerTest, BatchLargerThanTheTrainingSetIsRefused) {
  TrialTask t = task();
  t.config.batch_size = 100000;
  const Outcome r = train_once(t);
  ASSERT_FALSE(r.status.ok());
  EXPECT_TRUE(contains(r.status.message(), "batch_size 100000")) << r.status.message();
  EXPECT_FALSE(r.result.dataset_error);  // this trial's batch_size: a smaller one fits
}

// Fewer rows per step than there are virtual shards: most shards sit out each step, yet every
// row is still trained on once per epoch.
TEST_F(TrainerTest, BatchSmallerThanTheShardCountTrains) {
  TrialTask t = task();
  t.config.batch_size = 8;
  t.config.epochs = 1;
  const Outcome r = train_once(t);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  ASSERT_EQ(r.epochs.size(), 1u);
  EXPECT_GT(r.epochs[0].at("val_acc"), 0.5);
}

// The tests below need two ranks (ctest runs them under mpirun -np 2); on one rank they skip.


class TrainerGroup : public TrainerTest {
 protected:
  void SetUp() override {
    if (world_size() != 2) GTEST_SKIP() << "needs mpirun -np 2";
    TrainerTest::SetUp();
  }
};

// The shard plan gives every step the same samples whatever the rank count, so a two-rank run
// and a one-rank run agree up to float summation order.
TEST_F(TrainerGroup, TwoRanksMatchOneRank) {
  TrialTask t = task();
  t.config.epochs = 2;
  const Outcome two = train_once(t, MPI_COMM_WORLD);
  const Outcome one = train_once(t, MPI_COMM_SELF);  // each rank alone, on its own copy of the data
  ASSERT_TRUE(two.status.ok()) << two.status.message();
  ASSERT_TRUE(one.status.ok()) << one.status.message();
  EXPECT_EQ(two.steps, one.steps);
  ASSERT_EQ(two.epochs.size(), one.epochs.size());
  for (std::size_t e = 0; e < one.epochs.size(); ++e) {
    EXPECT_NEAR(two.epochs[e].at("train_loss"), one.epochs[e].at("train_loss"),
                1e-3 * one.epochs[e].at("train_loss"));
    EXPECT_NEAR(two.epochs[e].at("val_loss"), one.epochs[e].at("val_loss"),
                1e-3 * one.epochs[e].at("val_loss"));
    EXPECT_NEAR(two.epochs[e].at("val_acc"), one.epochs[e].at("val_acc"), 0.011);
  }
  EXPECT_NEAR(two.result.final_metrics.at("test_loss"), one.result.final_metrics.at("test_loss"),
              1e-3 * one.result.final_metrics.at("test_loss"));
  EXPECT_NEAR(two.result.final_metrics.at("test_acc"), one.result.final_metrics.at("test_acc"),
              0.01);
  // Every rank reports the same group metrics.
  double mine = two.result.final_metrics.at("val_loss"), theirs = mine;
  MPI_Bcast(&theirs, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  EXPECT_EQ(mine, theirs);
}

// Run under mpirun -np 2 and -np 4: the group and a lone rank, same global batch and seed, end
// with the same weights within 1e-5 relative (the shard plan feeds every step the same
// samples; only float summation order differs).
class TrainerMultiRank : public TrainerTest {
 protected:
  void SetUp() override {
    if (world_size() < 2) GTEST_SKIP() << "needs mpirun -np 2 or more";
    TrainerTest::SetUp();
  }
  // Trains `t` (2 epochs) on the whole group and on each rank alone and compares the weights.
  void expect_group_matches_lone_rank(const TrialTask& t);
};

std::vector<float> final_params(const std::string& checkpoint_base, int epoch) {
  Checkpoint c;
  const Status s = read_checkpoint(checkpoint_base + ".epoch-" + std::to_string(epoch), &c);
  EXPECT_TRUE(s.ok()) << s.message();
  const std::vector<float>* p = c.find("params");
  return p ? *p : std::vector<float>{};
}

// The epoch-2 weights of two runs agree within 1e-5 relative but not bit for bit (the group
// really summed its gradient in another order).
void expect_same_weights_up_to_summation_order(const std::string& lone, const std::string& group) {
  const std::vector<float> a = final_params(lone, 2);
  const std::vector<float> b = final_params(group, 2);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(a[i]) * a[i];
  }
  EXPECT_LE(std::sqrt(diff / norm), 1e-5) << world_size() << " ranks";
  EXPECT_GT(diff, 0.0) << "identical bits: the group did not really split the work";
}

void TrainerMultiRank::expect_group_matches_lone_rank(const TrialTask& t) {
  TrialTask group_task = t, lone_task = t;
  // Only rank 0 of a communicator writes: the group's file, and each lone rank its own.
  group_task.checkpoint = (dir_ / "group.ckpt").string();
  lone_task.checkpoint = (dir_ / "lone.ckpt").string();
  const Outcome group = train_once(group_task, MPI_COMM_WORLD);
  const Outcome lone = train_once(lone_task, MPI_COMM_SELF);
  ASSERT_TRUE(group.status.ok()) << group.status.message();
  ASSERT_TRUE(lone.status.ok()) << lone.status.message();
  if (world_rank() == 0)
    expect_same_weights_up_to_summation_order(lone_task.checkpoint, group_task.checkpoint);
}

TEST_F(TrainerMultiRank, GroupAndLoneRankEndWithTheSameWeights) {
  TrialTask t = task();
  t.config.epochs = 2;
  t.config.hidden = {32, 16};
  t.config.has_hidden = true;
  expect_group_matches_lone_rank(t);
}

// Flat groups reduce the gradient in buckets overlapped with backward (several here: the
// 512 x 256 layer is bigger than kGradientBucketBytes): two runs give the same bits, and the
// fused path (hierarchical: one blocking reduction after backward) the same weights up to
// float summation order.
TEST_F(TrainerMultiRank, OverlappedReductionRepeatsBitForBitAndMatchesTheFusedOne) {
  TrialTask t = task();
  t.config.epochs = 1;
  t.config.hidden = {512, 256};
  t.config.has_hidden = true;
  TrialTask first = t, second = t, fused = t;
  first.checkpoint = (dir_ / "first.ckpt").string();
  second.checkpoint = (dir_ / "second.ckpt").string();
  fused.checkpoint = (dir_ / "fused.ckpt").string();
  fused.config.allreduce = "hierarchical";
  for (const TrialTask* run : {&first, &second, &fused}) {
    const Outcome r = train_once(*run, MPI_COMM_WORLD);
    ASSERT_TRUE(r.status.ok()) << r.status.message();
  }
  if (world_rank() != 0) return;
  const std::vector<float> a = final_params(first.checkpoint, 1);
  const std::vector<float> b = final_params(second.checkpoint, 1);
  const std::vector<float> c = final_params(fused.checkpoint, 1);
  ASSERT_FALSE(a.empty());
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.size(), c.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (static_cast<double>(a[i]) - c[i]) * (static_cast<double>(a[i]) - c[i]);
    norm += static_cast<double>(a[i]) * a[i];
  }
  EXPECT_LE(std::sqrt(diff / norm), 1e-5) << world_size() << " ranks";
}

// Rank 1's rows of the training file are cut short; rank 0's are intact. Both ranks must
// return the same error, naming rank 1, instead of rank 0 waiting in the first all-reduce.
TEST_F(TrainerGroup, FailureOnOneRankIsAgreed) {
  const testing::IdxData train = testing::make_pattern_data(2000, 8, 1);
  auto bytes = testing::images_bytes(train);
  bytes.resize(16 + 64 * 1500);
  fs::remove(dir_ / "train-images-idx3-ubyte.gz");
  testing::write_file(dir_ / "train-images-idx3-ubyte", bytes, /*gz=*/false);
  const Outcome r = train_once(task());
  ASSERT_FALSE(r.status.ok());
  EXPECT_TRUE(contains(r.status.message(), "rank 1: ")) << r.status.message();
  EXPECT_TRUE(contains(r.status.message(), "truncated at row 1500")) << r.status.message();
  EXPECT_TRUE(r.epochs.empty());
  // Rank 1's verdict reaches every rank with its message, rank 0 (which tells the coordinator)
  // included.
  EXPECT_TRUE(r.result.dataset_error);
}

// model: cnn through the same trainer: the 8x8 pattern images are learnt, a resumed run
// continues bit for bit, and a group ends with a lone rank's weights (as the MLP does).
TrialTask cnn_task(TrialTask t) {
  t.config.model = "cnn";
  t.config.layers = "conv 4 3x3, relu, pool 2, dense 16, relu";
  return t;
}

TEST_F(TrainerTest, CnnLearnsAndResumesExactly) {
  if (world_size() != 1) GTEST_SKIP() << "single-rank test";
  TrialTask t = cnn_task(task());
  t.checkpoint = (dir_ / "ckpt" / "cnn.ckpt").string();
  const Outcome whole = train_once(t);
  ASSERT_TRUE(whole.status.ok()) << whole.status.message();
  ASSERT_EQ(whole.epochs.size(), 3u);
  EXPECT_GT(whole.result.final_metrics.at("test_acc"), 0.8);  // chance is 0.1
  TrialTask first = t;
  first.config.epochs = 1;
  ASSERT_TRUE(train_once(first).status.ok());
  TrialTask rest = t;
  rest.resume_epoch = 1;
  rest.resume = true;
  const Outcome resumed = train_once(rest);
  ASSERT_TRUE(resumed.status.ok()) << resumed.status.message();
  EXPECT_EQ(resumed.result.final_metrics, whole.result.final_metrics);
}

TEST_F(TrainerTest, CnnLayerErrorsNameTheLayer) {
  TrialTask t = cnn_task(task());
  t.config.layers = "conv 4 3x3, pool 2, pool 2, pool 2, pool 2";
  const Outcome r = train_once(t);
  ASSERT_FALSE(r.status.ok());
  EXPECT_TRUE(contains(r.status.message(), "layer 5 'pool 2' has a window larger than its 4x1x1"))
      << r.status.message();
}

TEST_F(TrainerMultiRank, CnnGroupAndLoneRankEndWithTheSameWeights) {
  TrialTask t = cnn_task(task());
  t.config.epochs = 2;
  expect_group_matches_lone_rank(t);
}

}  // namespace
}  // namespace trellis::worker
