#pragma once
// Agent: rank 0's link to the coordinator.
//
// A background I/O thread owns the DEALER socket, so the training thread never touches ZeroMQ
// and never blocks on the network:
//   * It says Hello until the coordinator answers, and again (backing off from 1 s to 10 s)
//     whenever the coordinator has been silent for `liveness`: a restarted coordinator learns
//     which trial this group is running and re-adopts it. Each repeated Hello goes down a fresh
//     connection: the coordinator ignores a connection under an identity it still holds a
//     (stale) connection for, rather than let one key take over another's group.
//   * Every Report and Done stays in an outbox until the coordinator's Ack, and goes again
//     after half a liveness period without one (the store ignores duplicates): a frame lost
//     with a coordinator that restarted faster than the agent could notice is still delivered.
//   * It sends a Heartbeat every `heartbeat` while the coordinator answers.
// Not ZMQ_IMMEDIATE: with it, libzmq drops the frames already received but not yet read when
// the connection closes, so the coordinator's last Ack and Shutdown could vanish. Frames queued
// during an outage arrive in a burst after the reconnect instead; the coordinator treats a
// repeated Hello, Report or Done as the same one.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "common/protocol.h"
#include "common/socket_factory.h"
#include "common/status.h"

namespace trellis::worker {

struct AgentOptions {
  std::string endpoint;
  std::string group;  // identity, e.g. "host:pid"
  SocketSecurity security;
  Hello hello;
  // Give up when the coordinator has not answered for this long while we wait for work.
  std::chrono::milliseconds answer_timeout{300000};
  // The coordinator is presumed gone (and Hello is sent again) after this much silence.
  std::chrono::milliseconds liveness{10000};
  std::chrono::milliseconds heartbeat{2000};
};

class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Blocks until the coordinator assigns a trial (Ok, *shutdown false) or ends the sweep
  // (Ok, *shutdown true), sending Request after each Wait. `give_up` (checked often) ends the
  // wait as a shutdown. Errors: refused by the coordinator, or no answer within answer_timeout.
  [[nodiscard]] Status next(Assign* assign, bool* shutdown,
                            const std::function<bool()>& give_up = {});

  void report(const Report& report);
  void done(const Done& done);
  // True if the coordinator said Stop for `trial` (pruned, or reassigned) since it was assigned.
  bool stop_requested(std::int64_t trial);
  // Waits up to `timeout` for the outbox to be acknowledged; true when it is empty.
  bool flush(std::chrono::milliseconds timeout);

 private:
  struct Pending {
    std::string frame;
    std::int64_t trial;
    std::int32_t attempt;
    std::int32_t epoch;  // 0: a Done
    std::chrono::steady_clock::time_point sent{};  // never, until the I/O thread sends it
  };
  void io_loop();
  void post(const Message& m);
  void post_acknowledged(const Message& m, std::int64_t trial, std::int32_t attempt,
                         std::int32_t epoch);
  bool take(Message* out, std::chrono::milliseconds timeout);

  AgentOptions options_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::condition_variable acked_;
  std::deque<std::string> outbox_;  // new frames that need no Ack (Request)
  std::deque<Pending> unacked_;     // Reports and Dones, in order, until their Ack
  std::deque<Message> inbox_;
  std::atomic<bool> running_{true};
  std::atomic<std::int64_t> current_trial_{-1};
  std::atomic<std::int32_t> current_attempt_{0};
  std::set<std::pair<std::int64_t, std::int32_t>> seen_;  // assignments already taken
  std::thread io_;
};

}  // namespace trellis::worker
