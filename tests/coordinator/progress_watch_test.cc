// The stall rule of progress_watch.h, on a clock the test moves.

#include "coordinator/progress_watch.h"

#include <gtest/gtest.h>

namespace trellis::coordinator {
namespace {

using namespace std::chrono_literals;
using Clock = ProgressWatch::Clock;
using Ms = ProgressWatch::Duration;

constexpr Ms kFloor = 60s;
constexpr Ms kAdaptive{0};

TEST(ProgressWatch, BeforeTheFirstStepOnlyTheFloorCounts) {
  const Clock::time_point t0{};
  ProgressWatch w;
  w.begin(3, 1, t0);
  EXPECT_TRUE(w.watching(3, 1));
  EXPECT_FALSE(w.watching(3, 2));
  w.observe(0, t0 + 50s);  // heartbeats while the data loads
  EXPECT_FALSE(w.stalled(t0 + 59s, kFloor, kAdaptive));
  ASSERT_TRUE(w.stalled(t0 + 61s, kFloor, kAdaptive));
  EXPECT_EQ(*w.stalled(t0 + 61s, kFloor, kAdaptive), Ms(61s));
}

TEST(ProgressWatch, SlowStepsEarnAProportionalAllowance) {
  const Clock::time_point t0{};
  ProgressWatch w;
  w.begin(3, 1, t0);
  // Loading took 100 s: longer than the floor would allow later, but it is not a step.
  w.observe(1, t0 + 100s);
  EXPECT_EQ(w.longest_wait(), Ms(0));
  EXPECT_EQ(w.allowance(kFloor, kAdaptive), kFloor);
  w.observe(2, t0 + 120s);  // a 20 s step
  EXPECT_EQ(w.allowance(kFloor, kAdaptive), ProgressWatch::kFactor * Ms(20s));
  const Clock::time_point last = t0 + 120s;
  EXPECT_FALSE(w.stalled(last + 199s, kFloor, kAdaptive));
  EXPECT_TRUE(w.stalled(last + 201s, kFloor, kAdaptive));
  // No progress (the same count again) does not move the clock.
  w.observe(2, last + 150s);
  EXPECT_TRUE(w.stalled(last + 201s, kFloor, kAdaptive));
}

TEST(ProgressWatch, FastStepsStillGetTheFloor) {
  const Clock::time_point t0{};
  ProgressWatch w;
  w.begin(3, 1, t0);
  for (int i = 1; i <= 100; ++i) w.observe(i * 50, t0 + i * 1s);
  const Clock::time_point last = t0 + 100s;
  EXPECT_FALSE(w.stalled(last + 59s, kFloor, kAdaptive));
  EXPECT_TRUE(w.stalled(last + 61s, kFloor, kAdaptive));
}

TEST(ProgressWatch, AnExplicitStallOverridesTheRuleInEveryPhase) {
  const Clock::time_point t0{};
  ProgressWatch w;
  w.begin(3, 1, t0);
  EXPECT_TRUE(w.stalled(t0 + 6s, kFloor, 5s));
  w.observe(1, t0 + 1s);
  w.observe(2, t0 + 31s);  // a 30 s step would allow 300 s adaptively
  EXPECT_EQ(w.allowance(kFloor, 5s), Ms(5s));
  EXPECT_TRUE(w.stalled(t0 + 37s, kFloor, 5s));
}

TEST(ProgressWatch, ANewAttemptStartsFromItsOwnBeginningButKeepsTheGroupsStepTimes) {
  const Clock::time_point t0{};
  ProgressWatch w;
  w.begin(3, 1, t0);
  w.observe(1, t0 + 1s);
  w.observe(2, t0 + 21s);
  w.begin(4, 1, t0 + 500s);  // the wait since the last step of trial 3 is no step of trial 4
  EXPECT_TRUE(w.watching(4, 1));
  EXPECT_EQ(w.longest_wait(), Ms(20s));
  EXPECT_EQ(w.allowance(kFloor, kAdaptive), kFloor) << "before its first step";
  EXPECT_FALSE(w.stalled(t0 + 559s, kFloor, kAdaptive));
  w.observe(1, t0 + 510s);
  EXPECT_EQ(w.allowance(kFloor, kAdaptive), ProgressWatch::kFactor * Ms(20s));
}

}  // namespace
}  // namespace trellis::coordinator
