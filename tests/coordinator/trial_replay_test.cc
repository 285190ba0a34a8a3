// judge_replay: the verdict of `trellis reproduce` from two series and two provenances.

#include "coordinator/trial_replay.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace trellis::coordinator {
namespace {

const char* kProvenance =
    R"({"host":"a","dataset_hash":"crc32:0000abcd","blas":{"threads":2,"core":"SkylakeX"},)"
    R"("rank_layout":{"ranks":1,"nodes":1}})";

MetricSeries series(double loss2) {
  return {{"val_loss", {{1, 0.5}, {2, loss2}}},
          {"train_loss", {{1, 0.7}, {2, 0.6}}},
          {"epoch_s", {{1, 0.01}, {2, 0.02}}}};
}

TEST(TrialReplayTest, IdenticalSeriesWithTimingAsideReproduce) {
  MetricSeries rerun = series(0.25);
  rerun["epoch_s"] = {{1, 9.0}, {2, 9.5}};  // timing is never compared
  const ReplayVerdict v = judge_replay(series(0.25), rerun, kProvenance, kProvenance);
  EXPECT_TRUE(v.identical);
  EXPECT_EQ(v.epochs_compared, 2);
  EXPECT_TRUE(v.provenance.empty());
  EXPECT_EQ(v.exit_code(), kReproduced);
}

TEST(TrialReplayTest, TheLastBitCountsAndNanEqualsItself) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(judge_replay(series(nan), series(nan), kProvenance, kProvenance).identical);
  const double next = std::nextafter(0.25, 1.0);
  const ReplayVerdict v = judge_replay(series(0.25), series(next), kProvenance, kProvenance);
  ASSERT_FALSE(v.identical);
  EXPECT_EQ(v.first.epoch, 2);
  EXPECT_EQ(v.first.metric, "val_loss");
  EXPECT_EQ(v.first.recorded, 0.25);
  EXPECT_EQ(v.first.rerun, next);
  EXPECT_EQ(v.epochs_compared, 1);
  EXPECT_EQ(v.exit_code(), kDiffersUnexplained);
}

TEST(TrialReplayTest, AMissingEpochIsADifference) {
  MetricSeries shorter = series(0.25);
  for (auto& [metric, points] : shorter) points.pop_back();
  const ReplayVerdict v = judge_replay(series(0.25), shorter, kProvenance, kProvenance);
  ASSERT_FALSE(v.identical);
  EXPECT_EQ(v.first.epoch, 2);
  EXPECT_TRUE(v.first.recorded_present);
  EXPECT_FALSE(v.first.rerun_present);
}

TEST(TrialReplayTest, OnlyTheWorkersProvenanceIsComparedAndItExplains) {
  const std::string other_host =
      R"({"host":"b","dataset_hash":"crc32:0000abcd","blas":{"threads":1,"core":"SkylakeX"},)"
      R"("rank_layout":{"ranks":1,"nodes":1}})";
  // The re-run's Done carries no host: where it ran is not compared.
  const std::string done =
      R"({"dataset_hash":"crc32:0000abcd","blas":{"threads":1,"core":"SkylakeX"},)"
      R"("rank_layout":{"ranks":1,"nodes":1}})";
  const ReplayVerdict v = judge_replay(series(0.25), series(0.3), kProvenance, done);
  ASSERT_EQ(v.provenance.size(), 1u);
  EXPECT_EQ(v.provenance[0].field, "blas.threads");
  EXPECT_EQ(v.provenance[0].recorded, "2");
  EXPECT_EQ(v.provenance[0].rerun, "1");
  EXPECT_EQ(v.exit_code(), kDiffersExplained);
  EXPECT_TRUE(judge_replay(series(0.25), series(0.25), other_host, done).provenance.empty());
}

TEST(TrialReplayTest, AnOlderWorkersRecordLacksTheFieldsWhichExplainsAnything) {
  const ReplayVerdict v = judge_replay(series(0.25), series(0.3), R"({"host":"a"})", kProvenance);
  EXPECT_FALSE(v.provenance.empty());
  for (const auto& d : v.provenance) EXPECT_EQ(d.recorded, "(none)") << d.field;
  EXPECT_EQ(v.exit_code(), kDiffersExplained);
  EXPECT_TRUE(explains_difference("dataset_hash"));
  EXPECT_TRUE(explains_difference("build.git_revision"));
  EXPECT_TRUE(explains_difference("allreduce_bucket_bytes"));
  EXPECT_TRUE(explains_difference("split.validation_fraction"));
  EXPECT_FALSE(explains_difference("host"));
  EXPECT_FALSE(explains_difference("vector_path"));
}

}  // namespace
}  // namespace trellis::coordinator
