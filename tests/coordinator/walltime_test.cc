// What fits before a batch job's time limit (walltime.h).

#include "coordinator/walltime.h"

#include <gtest/gtest.h>

namespace trellis::coordinator {
namespace {

TEST(EpochClock, NothingIsKnownBeforeTheFirstTimedEpoch) {
  EpochClock clock;
  EXPECT_FALSE(clock.known());
  EXPECT_EQ(clock.epochs_fitting(1e6, 0), 0);
  clock.epoch_took(0, 0);  // not a time
  clock.epoch_took(0, -1);
  clock.first_report_after(3.0);  // a start, not an epoch
  EXPECT_FALSE(clock.known());
}

TEST(EpochClock, TheSlowestTrialsMeanEpochAndTheSlowestStartWithSlackDecide) {
  EpochClock clock;
  clock.epoch_took(0, 2.0);
  clock.epoch_took(0, 4.0);
  clock.epoch_took(0, 3.0);
  EXPECT_DOUBLE_EQ(clock.epoch_seconds(), 3.0);
  clock.epoch_took(1, 4.0);  // a slower trial
  clock.epoch_took(1, 4.0);
  EXPECT_DOUBLE_EQ(clock.epoch_seconds(), 4.0);
  clock.epoch_took(0, 3.0);  // trial 0 stays faster: the slowest trial still decides
  EXPECT_DOUBLE_EQ(clock.epoch_seconds(), 4.0);
  clock.first_report_after(5.0);
  clock.first_report_after(2.0);
  EXPECT_DOUBLE_EQ(clock.startup_seconds(), 5.0);
  // 100 s left, 30 s margin, 5 s start-up: 65 s / (1.1 x 4 s) = 14.77 -> 14 epochs.
  EXPECT_EQ(clock.epochs_fitting(100, 30), 14);
  // Not even one: 30 + 5 + 4.4 > 39.
  EXPECT_EQ(clock.epochs_fitting(39, 30), 0);
  EXPECT_EQ(clock.epochs_fitting(39.5, 30), 1);
  EXPECT_EQ(clock.epochs_fitting(10, 30), 0);
}

// Short epochs, one of them slowed tenfold by something else on the core: the estimate is the
// trial's mean, not the spike, so the job's time is used (the spike's own cost is in the margin).
TEST(EpochClock, OneSlowEpochCostsOnlyItsShareOfTheMean) {
  EpochClock clock;
  for (int e = 0; e < 99; ++e) clock.epoch_took(7, 0.01);
  clock.epoch_took(7, 0.1);
  clock.first_report_after(1.0);
  EXPECT_NEAR(clock.epoch_seconds(), 0.0109, 1e-12);
  // 40 s after margin and a 1 s start-up: 39 / (1.1 x 0.0109) = 3252 epochs, where the spike
  // alone would have allowed 354.
  EXPECT_EQ(clock.epochs_fitting(60, 20), 3252);
}

// The same spike as an attempt's second epoch, its first timed one: the mean as it stands, not
// the largest mean it ever had, decides.
TEST(EpochClock, AnEarlySpikeIsDilutedByTheEpochsAfterIt) {
  EpochClock clock;
  clock.epoch_took(7, 0.1);
  EXPECT_DOUBLE_EQ(clock.epoch_seconds(), 0.1);
  for (int e = 0; e < 99; ++e) clock.epoch_took(7, 0.01);
  EXPECT_NEAR(clock.epoch_seconds(), 0.0109, 1e-12);
}

TEST(EpochClock, AnEndedAttemptsMeanStaysAndTheTrialsNextAttemptStartsAfresh) {
  EpochClock clock;
  clock.epoch_took(3, 1.0);
  clock.epoch_took(3, 1.0);
  clock.attempt_ended(3);
  EXPECT_DOUBLE_EQ(clock.epoch_seconds(), 1.0) << "an ended attempt still counts";
  clock.epoch_took(3, 3.0);  // its next attempt, on a slower node
  EXPECT_DOUBLE_EQ(clock.epoch_seconds(), 3.0) << "not the mean over both attempts, 5/3";
  clock.attempt_ended(3);
  clock.attempt_ended(3);  // a Done resent: nothing left to forget
  clock.epoch_took(4, 0.5);
  EXPECT_DOUBLE_EQ(clock.epoch_seconds(), 3.0);
  EXPECT_TRUE(clock.known());
}

}  // namespace
}  // namespace trellis::coordinator
