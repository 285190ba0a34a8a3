// Group sessions and liveness (group_table.h), on a clock the test moves: no socket, no
// process.

#include "coordinator/group_table.h"

#include <gtest/gtest.h>

namespace trellis::coordinator {
namespace {

using namespace std::chrono_literals;
using Clock = GroupTable::Clock;

GroupTable::Options Options() {
  GroupTable::Options o;
  o.liveness = 10s;
  o.stall_floor = 60s;
  return o;
}

TEST(GroupTable, TheFirstKeyBindsAnIdentityAndAnotherIsRefusedAndCounted) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  ASSERT_TRUE(table.admit("g0", "keyA"));
  table.at("g0", "keyA", t0);
  EXPECT_TRUE(table.admit("g0", "keyA"));
  GroupTable::Refusal refused;
  EXPECT_FALSE(table.admit("g0", "keyB", &refused));
  EXPECT_EQ(refused.owner, "keyA");
  EXPECT_EQ(refused.count, 1u);
  EXPECT_FALSE(table.admit("g0", "keyB", &refused));
  EXPECT_EQ(refused.count, 2u);
  EXPECT_TRUE(table.admit("g1", "keyB"));  // another identity is another group
}

TEST(GroupTable, AnotherKeysFramesDoNotKeepAGroupAlive) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  table.at("g0", "keyA", t0);
  table.heard("g0", "keyB", t0 + 9s);
  const auto lost = table.expire(t0 + 10s);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_TRUE(lost[0].silent);
  EXPECT_EQ(lost[0].group, "g0");
  EXPECT_EQ(lost[0].trial, -1);
  EXPECT_TRUE(table.groups().empty());
}

TEST(GroupTable, ASilentBusyGroupIsLostWithItsTrialAndAHeardOneIsNot) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  GroupTable::Group& busy = table.at("busy", "", t0);
  table.join(busy, t0);
  table.started(busy, 7, 2, t0);
  GroupTable::Group& idle = table.at("idle", "", t0);
  table.join(idle, t0);
  table.heard("idle", "", t0 + 9s);
  EXPECT_TRUE(table.expire(t0 + 9s).empty());
  const auto lost = table.expire(t0 + 12s);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].group, "busy");
  EXPECT_EQ(lost[0].trial, 7);
  EXPECT_TRUE(lost[0].silent);
  EXPECT_NE(lost[0].reason.find("silent for 10000 ms"), std::string::npos) << lost[0].reason;
  ASSERT_EQ(table.groups().size(), 1u);
  EXPECT_EQ(table.groups().begin()->first, "idle");
  EXPECT_DOUBLE_EQ(table.group_seconds(), 12.0);  // the lost group's session, counted
}

TEST(GroupTable, AHeartbeatingGroupWithoutProgressLosesItsTrialButNotItsSession) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  GroupTable::Group& g = table.at("g0", "", t0);
  table.started(g, 3, 1, t0);
  for (int s = 5; s <= 65; s += 5) {
    table.heard("g0", "", t0 + std::chrono::seconds(s));
    table.heartbeat(g, 3, 1, /*steps=*/0, t0 + std::chrono::seconds(s));
  }
  EXPECT_TRUE(table.expire(t0 + 59s).empty());
  const auto lost = table.expire(t0 + 61s);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_FALSE(lost[0].silent);
  EXPECT_EQ(lost[0].trial, 3);
  EXPECT_NE(lost[0].reason.find("no training progress"), std::string::npos) << lost[0].reason;
  ASSERT_EQ(table.groups().count("g0"), 1u);
  EXPECT_EQ(table.groups().at("g0").trial, -1);
  EXPECT_TRUE(table.expire(t0 + 62s).empty());  // once
}

TEST(GroupTable, AHeartbeatOfAnotherAttemptIsNotProgress) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  GroupTable::Group& g = table.at("g0", "", t0);
  table.started(g, 3, 2, t0);
  table.heartbeat(g, 3, 1, /*steps=*/100, t0 + 30s);  // the old attempt's, late
  table.heard("g0", "", t0 + 61s);
  EXPECT_EQ(table.expire(t0 + 61s).size(), 1u);
}

TEST(GroupTable, AnIdleGroupNamingAnOrphanAdoptsItOnce) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  table.add_orphan(5, 3, "g0", "");
  EXPECT_EQ(table.orphans(), 1u);
  GroupTable::Group& g = table.at("g0", "", t0);
  EXPECT_EQ(table.holds(g, 5, 2), GroupTable::Holding::kNo);  // another attempt
  EXPECT_EQ(table.holds(g, 5, 3), GroupTable::Holding::kAdopted);
  EXPECT_EQ(g.trial, 5);
  EXPECT_EQ(g.attempt, 3);
  EXPECT_EQ(table.holds(g, 5, 3), GroupTable::Holding::kYes);
  EXPECT_EQ(table.orphans(), 0u);
  GroupTable::Group& other = table.at("g1", "", t0);
  EXPECT_EQ(table.holds(other, 5, 3), GroupTable::Holding::kNo);
  ASSERT_NE(table.running(5, 3), nullptr);
  EXPECT_EQ(table.running(5, 3)->name, "g0");
}

TEST(GroupTable, ABusyGroupAdoptsNoOrphan) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  table.add_orphan(5, 1, "g1", "");
  GroupTable::Group& g = table.at("g0", "", t0);
  table.started(g, 8, 1, t0);
  EXPECT_EQ(table.holds(g, 5, 1), GroupTable::Holding::kNo);
  EXPECT_EQ(table.orphans(), 1u);
}

TEST(GroupTable, TheOrphanOfAGroupThatCameBackIdleIsTakenAndOnlyItsOwn) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  table.add_orphan(5, 1, "g0", "");
  table.add_orphan(6, 1, "g1", "");
  GroupTable::Group& g1 = table.at("g1", "", t0);
  EXPECT_EQ(table.take_orphan_of(g1), std::optional<std::int64_t>(6));
  EXPECT_EQ(table.take_orphan_of(g1), std::nullopt);
  EXPECT_EQ(table.orphans(), 1u);
}

TEST(GroupTable, OrphansLeftAtTheDeadlineExpireOnce) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  table.add_orphan(5, 1, "g0", "");
  table.add_orphan(6, 2, "g1", "");
  table.set_orphan_deadline(t0 + 20s);
  EXPECT_TRUE(table.end_orphan(6, 2));
  EXPECT_FALSE(table.end_orphan(6, 2));
  EXPECT_FALSE(table.end_orphan(5, 2));  // not that attempt
  EXPECT_TRUE(table.expired_orphans(t0 + 19s).empty());
  EXPECT_EQ(table.expired_orphans(t0 + 20s), std::vector<std::int64_t>{5});
  EXPECT_TRUE(table.expired_orphans(t0 + 21s).empty());
}

TEST(GroupTable, AnOrphansKeyBindsItsIdentityUntilItsGroupSpeaks) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  table.add_orphan(5, 1, "g0", "keyA");
  GroupTable::Refusal refused;
  EXPECT_FALSE(table.admit("g0", "keyB", &refused));
  EXPECT_EQ(refused.owner, "keyA");
  EXPECT_EQ(refused.count, 1u);
  ASSERT_TRUE(table.admit("g0", "keyA"));
  GroupTable::Group& g = table.at("g0", "keyA", t0);
  EXPECT_EQ(g.key, "keyA");
  EXPECT_EQ(g.refused_frames, 1u);  // the count carries over
  EXPECT_FALSE(table.admit("g0", "keyB", &refused));
  EXPECT_EQ(refused.count, 2u);
}

TEST(GroupTable, GroupTimeRunsFromTheFirstJoinAndIdleTimeFromTheFirstWait) {
  GroupTable table(Options());
  const Clock::time_point t0{};
  GroupTable::Group& g = table.at("g0", "", t0);
  table.at("g0", "", t0 + 1s);
  EXPECT_TRUE(table.join(g, t0 + 2s));
  EXPECT_FALSE(table.join(g, t0 + 3s));  // a repeated Hello is no new session
  EXPECT_TRUE(table.waits_for_results(g, t0 + 4s));
  EXPECT_FALSE(table.waits_for_results(g, t0 + 5s));  // still the same wait
  table.started(g, 1, 1, t0 + 7s);
  EXPECT_DOUBLE_EQ(table.idle_for_results_seconds(), 3.0);
  EXPECT_DOUBLE_EQ(table.group_seconds(), 0.0);
  GroupTable::Group& late = table.at("g1", "", t0 + 8s);
  table.join(late, t0 + 8s);
  table.end_sessions(t0 + 12s);
  EXPECT_DOUBLE_EQ(table.group_seconds(), 10.0 + 4.0);
  table.end_sessions(t0 + 12s);  // counted once
  EXPECT_DOUBLE_EQ(table.group_seconds(), 14.0);
}

}  // namespace
}  // namespace trellis::coordinator
