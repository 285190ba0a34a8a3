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
//   * It sends a Heartbeat every `heartbeat` while the coordinator answers, carrying the
//     trial, attempt and training progress (steps done) the training thread last set: the
//     thread beats whatever the trainer does, so progress is what tells a group that trains
//     from one stuck inside a collective.
//   * The coordinator's heartbeats only say it is alive: they refresh the liveness clock and
//     are not queued, so the inbox holds only what next() or stop_requested() will take
//     (Assign, Wait, Shutdown, Refuse, Stop), however long a trial runs.
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

// The attempt rank 0 trains and how far it got, always read and written as one value: a
// Hello or Heartbeat that paired one trial with another trial's attempt would make the
// coordinator stop a live attempt (it would name an attempt that is not the group's).
class AttemptSlot {
 public:
  struct Value {
    std::int64_t trial = -1;  // -1: idle
    std::int32_t attempt = 0;
    std::int64_t progress = 0;  // steps done in this attempt
  };
  void start(std::int64_t trial, std::int32_t attempt) { set(Value{trial, attempt, 0}); }
  // Only if it still holds that attempt: the Ack of one attempt's Done may come after the
  // next attempt started.
  void clear(std::int64_t trial, std::int32_t attempt) {
    std::lock_guard lock(mutex_);
    if (value_.trial == trial && value_.attempt == attempt) value_ = Value{};
  }
  void set_progress(std::int64_t steps) {
    std::lock_guard lock(mutex_);
    if (value_.trial >= 0) value_.progress = steps;
  }
  Value get() const {
    std::lock_guard lock(mutex_);
    return value_;
  }

 private:
  void set(const Value& v) {
    std::lock_guard lock(mutex_);
    value_ = v;
  }
  // A mutex, not std::atomic<Value>: 24 bytes are not lock-free on x86-64 without libatomic,
  // and the lock is taken once per training step and per heartbeat, never contended for long.
  mutable std::mutex mutex_;
  Value value_;
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
  // The group goes on naming the attempt (in Hello and Heartbeat) until the Done's Ack, so a
  // restarted coordinator re-adopts it and hears the Done before it gives the group new work.
  void done(const Done& done);
  // Steps the current attempt has completed (monotonic within it), from the training thread;
  // the next Heartbeat carries it. Cheap enough to call after every step.
  void progress(std::int64_t steps) { current_.set_progress(steps); }
  // True if the coordinator said Stop for `trial` (pruned, or reassigned) since it was assigned.
  bool stop_requested(std::int64_t trial);
  // Waits up to `timeout` for the outbox to be acknowledged; true when it is empty.
  bool flush(std::chrono::milliseconds timeout);
  // Messages received and not yet taken; for tests of the inbox's bound.
  std::size_t inbox_size();
  // The newest epoch of (trial, attempt) whose checkpointed Report the coordinator has
  // acknowledged, so stored: a later attempt never resumes from an older checkpoint. 0: none.
  std::int32_t stored_checkpoint(std::int64_t trial, std::int32_t attempt);

 private:
  struct Pending {
    std::string frame;
    std::int64_t trial;
    std::int32_t attempt;
    std::int32_t epoch;  // 0: a Done
    bool checkpointed = false;  // a Report of an epoch whose checkpoint was written
    std::chrono::steady_clock::time_point sent{};  // never, until the I/O thread sends it
  };
  struct StoredCheckpoint {
    std::int64_t trial = -1;
    std::int32_t attempt = 0;
    std::int32_t epoch = 0;
  };
  void io_loop();
  void post(const Message& m);
  void post_acknowledged(const Message& m, std::int64_t trial, std::int32_t attempt,
                         std::int32_t epoch, bool checkpointed = false);
  bool take(Message* out, std::chrono::milliseconds timeout);

  AgentOptions options_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::condition_variable acked_;
  std::deque<std::string> outbox_;  // new frames that need no Ack (Request)
  std::deque<Pending> unacked_;     // Reports and Dones, in order, until their Ack
  StoredCheckpoint stored_;         // of the latest attempt that had a checkpointed Ack
  std::deque<Message> inbox_;
  std::atomic<bool> running_{true};
  AttemptSlot current_;
  std::set<std::pair<std::int64_t, std::int32_t>> seen_;  // assignments already taken
  std::thread io_;
};

}  // namespace trellis::worker
