#pragma once
// Agent: rank 0's link to the coordinator.
//
// A background I/O thread owns the DEALER socket: it sends what the trainer queues, delivers
// what arrives, and sends a heartbeat every `heartbeat` while the coordinator is answering, so
// a long epoch or a slow data load never looks like a dead group. The training thread never
// touches ZeroMQ and never blocks on the network.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

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
  std::chrono::milliseconds answer_timeout{60000};
  std::chrono::milliseconds heartbeat{2000};
};

class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Blocks until the coordinator assigns a trial (returns Ok, *shutdown false) or ends the
  // sweep (Ok, *shutdown true). Sends Hello the first time and Request after each Wait.
  // Errors: refused by the coordinator, or no answer within answer_timeout.
  [[nodiscard]] Status next(Assign* assign, bool* shutdown);

  void report(const Report& report);
  void done(const Done& done);
  // True if the coordinator said Stop for `trial` (pruned) since it was assigned.
  bool stop_requested(std::int64_t trial);

 private:
  void io_loop();
  void post(const Message& m);
  // Waits up to `timeout` for an incoming message.
  bool take(Message* out, std::chrono::milliseconds timeout);

  AgentOptions options_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::deque<std::string> outbox_;
  std::deque<Message> inbox_;
  std::atomic<bool> running_{true};
  std::atomic<bool> answered_{false};
  std::atomic<std::int64_t> current_trial_{-1};
  bool said_hello_ = false;
  std::thread io_;
};

}  // namespace trellis::worker
