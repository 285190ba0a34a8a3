// The agent against a scripted coordinator: a plaintext ROUTER on loopback.

#include "worker/agent.h"

#include <gtest/gtest.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <optional>
#include <thread>
#include <vector>

namespace trellis::worker {
namespace {

using namespace std::chrono_literals;

class FakeCoordinator {
 public:
  FakeCoordinator() : socket_(context_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::sndhwm, 0);  // a ROUTER drops past its high-water mark
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  }
  const std::string& endpoint() const { return endpoint_; }

  // The next message from the agent that `want` accepts, within `timeout`.
  template <class T>
  std::optional<T> next(std::chrono::milliseconds timeout,
                        const std::function<bool(const T&)>& want = {}) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, 20ms);
      std::vector<zmq::message_t> parts;
      while (zmq::recv_multipart(socket_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
        identity_ = parts[0].to_string();
        Message m;
        if (decode(parts[1].data(), parts[1].size(), &m).ok())
          if (const T* t = std::get_if<T>(&m); t && (!want || want(*t))) return *t;
        parts.clear();
      }
    }
    return std::nullopt;
  }
  void send(const Message& m) {
    const std::string frame = encode(m);
    std::array<zmq::const_buffer, 2> parts = {zmq::buffer(identity_), zmq::buffer(frame)};
    zmq::send_multipart(socket_, parts);
  }

 private:
  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::string endpoint_;
  std::string identity_;
};

AgentOptions options_for(const FakeCoordinator& coordinator) {
  AgentOptions options;
  options.endpoint = coordinator.endpoint();
  options.group = "test-group";
  options.security.curve = false;
  options.heartbeat = 20ms;
  options.liveness = 60s;  // the scripted coordinator heartbeats only when a test says so
  options.answer_timeout = 60s;
  return options;
}

// Says Hello, answers with Assign{trial, attempt}, and returns once the agent took it.
void assign(FakeCoordinator* coordinator, Agent* agent, std::int64_t trial,
            std::int32_t attempt) {
  ASSERT_TRUE(coordinator->next<Hello>(30s).has_value()) << "no Hello";
  Assign a;
  a.trial = trial;
  a.attempt = attempt;
  coordinator->send(a);
  Assign got;
  bool shutdown = true;
  ASSERT_TRUE(agent->next(&got, &shutdown).ok());
  ASSERT_FALSE(shutdown);
  ASSERT_EQ(got.trial, trial);
}

TEST(Agent, HeartbeatsCarryTheProgressTheTrainingThreadSet) {
  FakeCoordinator coordinator;
  Agent agent(options_for(coordinator));
  assign(&coordinator, &agent, 7, 2);
  const auto beat = coordinator.next<Heartbeat>(30s, [](const Heartbeat& b) {
    return b.trial == 7;
  });
  ASSERT_TRUE(beat.has_value());
  EXPECT_EQ(beat->attempt, 2);
  EXPECT_EQ(beat->progress, 0) << "no step was done yet";
  agent.progress(41);
  agent.progress(42);
  const auto later = coordinator.next<Heartbeat>(30s, [](const Heartbeat& b) {
    return b.progress != 0;
  });
  ASSERT_TRUE(later.has_value()) << "progress never reached the coordinator";
  EXPECT_EQ(later->trial, 7);
  EXPECT_EQ(later->attempt, 2);
  EXPECT_EQ(later->progress, 42);
  // The attempt is the group's until its Done is stored: a coordinator that restarted meanwhile
  // must re-adopt it and hear the Done before it hands out other work.
  agent.done(Done{7, 2, true, "", {}});
  const auto done = coordinator.next<Done>(30s, [](const Done& d) { return d.trial == 7; });
  ASSERT_TRUE(done.has_value());
  const auto unacknowledged = coordinator.next<Heartbeat>(30s, [](const Heartbeat&) {
    return true;
  });
  ASSERT_TRUE(unacknowledged.has_value());
  EXPECT_EQ(unacknowledged->trial, 7);
  EXPECT_EQ(unacknowledged->attempt, 2);
  // Its Ack ends the attempt: an idle group shows no trial and no progress.
  coordinator.send(Ack{7, 2, 0});
  const auto idle = coordinator.next<Heartbeat>(30s, [](const Heartbeat& b) {
    return b.trial == -1;
  });
  ASSERT_TRUE(idle.has_value());
  EXPECT_EQ(idle->progress, 0);
}

// Nothing takes from the inbox while a trial trains, so what stays there must be bounded by
// what the trainer will ask for, not by how long the trial runs.
TEST(Agent, InboxDoesNotKeepTheCoordinatorsHeartbeatsDuringATrial) {
  FakeCoordinator coordinator;
  Agent agent(options_for(coordinator));
  assign(&coordinator, &agent, 7, 1);
  constexpr int kBeats = 2000;
  for (int i = 0; i < kBeats; ++i) coordinator.send(Heartbeat{});
  // Frames arrive in order: once the Stop that follows them is seen, every heartbeat was
  // received too.
  coordinator.send(Stop{7, "pruned"});
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  bool stopped = false;
  while (!(stopped = agent.stop_requested(7)) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(stopped) << "the Stop never arrived";
  EXPECT_EQ(agent.inbox_size(), 0u);
}

// What the trainer may delete follows the coordinator's Acks of checkpointed Reports only:
// an unacknowledged or uncheckpointed epoch, or another attempt's, does not count.
TEST(Agent, StoredCheckpointIsTheNewestAcknowledgedCheckpointedEpoch) {
  FakeCoordinator coordinator;
  Agent agent(options_for(coordinator));
  assign(&coordinator, &agent, 7, 1);
  EXPECT_EQ(agent.stored_checkpoint(7, 1), 0);
  agent.report(Report{7, 1, 1, {{"val_acc", 0.1}}, true});
  agent.report(Report{7, 1, 2, {{"val_acc", 0.2}}, false});
  agent.report(Report{7, 1, 3, {{"val_acc", 0.3}}, true});
  for (int epoch = 1; epoch <= 3; ++epoch) {
    ASSERT_TRUE(coordinator.next<Report>(30s, [&](const Report& r) { return r.epoch == epoch; }))
        << "epoch " << epoch;
  }
  coordinator.send(Ack{7, 1, 2});  // not checkpointed
  coordinator.send(Ack{7, 1, 1});
  const auto wait_for = [&](std::int32_t want) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (agent.stored_checkpoint(7, 1) != want && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    return agent.stored_checkpoint(7, 1);
  };
  EXPECT_EQ(wait_for(1), 1);
  EXPECT_EQ(agent.stored_checkpoint(7, 2), 0) << "another attempt";
  coordinator.send(Ack{7, 1, 3});
  EXPECT_EQ(wait_for(3), 3);
  coordinator.send(Ack{7, 1, 1});  // a duplicate Ack never moves it back
  coordinator.send(Ack{7, 1, 2});
  EXPECT_TRUE(agent.flush(30s));
  EXPECT_EQ(agent.stored_checkpoint(7, 1), 3);
}

// A report whose frame was lost (sent to a coordinator killed before it stored it) goes again
// right before its attempt's Done, not liveness/2 later: by then the restarted coordinator
// could have ended the trial, or the sweep, without that epoch.
TEST(Agent, ADoneFollowsTheUnacknowledgedReportsOfItsAttempt) {
  FakeCoordinator coordinator;
  Agent agent(options_for(coordinator));  // liveness 60 s: no resend by age within the test
  assign(&coordinator, &agent, 7, 1);
  agent.report(Report{7, 1, 1, {{"val_acc", 0.1}}, false});
  agent.report(Report{7, 1, 2, {{"val_acc", 0.2}}, false});
  for (int epoch = 1; epoch <= 2; ++epoch) {
    ASSERT_TRUE(coordinator.next<Report>(30s, [&](const Report& r) { return r.epoch == epoch; }))
        << "epoch " << epoch;
  }
  coordinator.send(Ack{7, 1, 2});  // epoch 1's Ack never comes: as if it was never stored
  agent.done(Done{7, 1, true, "", {}});
  // next<Report> passes over what is not a Report, so a Done ahead of the resent report would
  // be gone when it is looked for.
  EXPECT_TRUE(coordinator.next<Report>(10s, [](const Report& r) { return r.epoch == 1; }))
      << "epoch 1 was not sent again with the Done";
  EXPECT_TRUE(coordinator.next<Done>(10s, [](const Done& d) { return d.trial == 7; }))
      << "no Done after the resent report";
}

// The slot is what Hello and Heartbeat are built from: whatever a concurrent reader sees is
// one attempt's (trial, attempt) pair, never one trial with another's attempt.
TEST(AttemptSlot, IsReadAsOneValue) {
  AttemptSlot slot;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (std::int32_t i = 1; i <= 200000; ++i) {
      slot.start(i, i);
      slot.set_progress(i);
    }
    done = true;
  });
  std::int64_t torn = 0, reads = 0;
  while (!done) {
    const AttemptSlot::Value v = slot.get();
    ++reads;
    if (v.trial >= 0 && v.trial != v.attempt) ++torn;
    if (v.progress != 0 && v.progress != v.trial) ++torn;
  }
  writer.join();
  EXPECT_EQ(torn, 0) << "of " << reads << " reads";
  slot.clear(200000, 199999);  // another attempt's end leaves this one
  EXPECT_EQ(slot.get().trial, 200000);
  slot.clear(200000, 200000);
  slot.set_progress(5);  // progress of no attempt is not kept
  EXPECT_EQ(slot.get().trial, -1);
  EXPECT_EQ(slot.get().progress, 0);
}

}  // namespace
}  // namespace trellis::worker
