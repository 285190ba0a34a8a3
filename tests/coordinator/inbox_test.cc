#include "coordinator/inbox.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace trellis::coordinator {
namespace {

// Frames are tagged "group:label"; Reports are those pushed with report = true.
void push(Inbox& inbox, const std::string& group, const std::string& label, bool report) {
  inbox.push(group, zmq::message_t(group + ":" + label), report);
}

std::vector<std::string> drain(Inbox& inbox, bool reports_allowed) {
  std::vector<std::string> order;
  Inbox::Item item;
  while (inbox.pop(reports_allowed, &item)) order.push_back(item.frame.to_string());
  return order;
}

TEST(InboxTest, WhatIsNotAReportGoesFirstEachGroupInItsOwnOrder) {
  Inbox inbox;
  push(inbox, "a", "r1", true);
  push(inbox, "a", "r2", true);
  push(inbox, "a", "done", false);  // behind a's reports: must wait for them
  push(inbox, "b", "r1", true);
  push(inbox, "c", "hello", false);
  push(inbox, "d", "done", false);
  EXPECT_EQ(inbox.size(), 6u);
  EXPECT_EQ(inbox.bytes(), std::string("a:r1a:r2a:doneb:r1c:hellod:done").size());
  EXPECT_TRUE(inbox.has_urgent());

  // Without Reports allowed, only what heads its group's queue comes out.
  EXPECT_EQ(drain(inbox, false), (std::vector<std::string>{"c:hello", "d:done"}));
  EXPECT_FALSE(inbox.has_urgent());
  // Then a's turn takes all its Reports, and its Done right after them, before b's turn.
  EXPECT_EQ(drain(inbox, true), (std::vector<std::string>{"a:r1", "a:r2", "a:done", "b:r1"}));
  EXPECT_TRUE(inbox.empty());
  EXPECT_EQ(inbox.bytes(), 0u);
}

TEST(InboxTest, GroupsWithReportsTakeTurnsInArrivalOrder) {
  Inbox inbox;
  push(inbox, "a", "r1", true);
  push(inbox, "b", "r1", true);
  push(inbox, "a", "r2", true);
  Inbox::Item item;
  ASSERT_TRUE(inbox.pop(true, &item));
  EXPECT_EQ(item.frame.to_string(), "a:r1");
  EXPECT_EQ(item.identity, "a");
  // A group that sends again after its queue ran dry goes to the back of the line.
  ASSERT_TRUE(inbox.pop(true, &item));
  EXPECT_EQ(item.frame.to_string(), "a:r2");
  push(inbox, "a", "r3", true);
  push(inbox, "e", "request", false);
  EXPECT_EQ(drain(inbox, true), (std::vector<std::string>{"e:request", "b:r1", "a:r3"}));
}

}  // namespace
}  // namespace trellis::coordinator
