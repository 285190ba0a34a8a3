// What fits before a batch job's time limit (walltime.h).

#include "coordinator/walltime.h"

#include <gtest/gtest.h>

namespace trellis::coordinator {
namespace {

TEST(EpochClock, NothingIsKnownBeforeTheFirstTimedEpoch) {
  EpochClock clock;
  EXPECT_FALSE(clock.known());
  EXPECT_EQ(clock.epochs_fitting(1e6, 0), 0);
  clock.epoch_took(0);  // not a time
  clock.epoch_took(-1);
  EXPECT_FALSE(clock.known());
}

TEST(EpochClock, TheSlowestEpochAndStartUpWithSlackDecide) {
  EpochClock clock;
  clock.epoch_took(2.0);
  clock.epoch_took(4.0);
  clock.epoch_took(3.0);
  EXPECT_DOUBLE_EQ(clock.epoch_seconds(), 4.0);
  clock.first_report_after(9.0, 4.0);  // 5 s to start
  clock.first_report_after(6.0, 4.0);
  EXPECT_DOUBLE_EQ(clock.startup_seconds(), 5.0);
  // 100 s left, 30 s margin, 5 s start-up: 65 s / (1.1 x 4 s) = 14.77 -> 14 epochs.
  EXPECT_EQ(clock.epochs_fitting(100, 30), 14);
  // Not even one: 30 + 5 + 4.4 > 39.
  EXPECT_EQ(clock.epochs_fitting(39, 30), 0);
  EXPECT_EQ(clock.epochs_fitting(39.5, 30), 1);
  EXPECT_EQ(clock.epochs_fitting(10, 30), 0);
}

}  // namespace
}  // namespace trellis::coordinator
