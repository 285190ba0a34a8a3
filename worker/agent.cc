#include "worker/agent.h"

#include <spdlog/spdlog.h>

#include <zmq.hpp>

namespace trellis::worker {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kFirstBackoff{1000};
constexpr std::chrono::milliseconds kMaxBackoff{10000};
constexpr std::chrono::milliseconds kPoll{20};

}  // namespace

Agent::Agent(AgentOptions options) : options_(std::move(options)) {
  io_ = std::thread([this] { io_loop(); });
}

Agent::~Agent() {
  running_ = false;
  io_.join();
}

void Agent::post(const Message& m) {
  std::lock_guard lock(mutex_);
  outbox_.push_back(encode(m));
}

void Agent::post_acknowledged(const Message& m, std::int64_t trial, std::int32_t attempt,
                              std::int32_t epoch, bool checkpointed) {
  std::lock_guard lock(mutex_);
  unacked_.push_back(Pending{encode(m), trial, attempt, epoch, checkpointed});
}

void Agent::report(const Report& r) {
  post_acknowledged(r, r.trial, r.attempt, r.epoch, r.checkpointed);
}

std::int32_t Agent::stored_checkpoint(std::int64_t trial, std::int32_t attempt) {
  std::lock_guard lock(mutex_);
  return stored_.trial == trial && stored_.attempt == attempt ? stored_.epoch : 0;
}

void Agent::done(const Done& d) {
  post_acknowledged(d, d.trial, d.attempt, 0);
}

bool Agent::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return acked_.wait_for(lock, timeout, [this] { return unacked_.empty(); });
}

std::size_t Agent::inbox_size() {
  std::lock_guard lock(mutex_);
  return inbox_.size();
}

bool Agent::take(Message* out, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!arrived_.wait_for(lock, timeout, [this] { return !inbox_.empty(); })) return false;
  *out = std::move(inbox_.front());
  inbox_.pop_front();
  return true;
}

bool Agent::stop_requested(std::int64_t trial) {
  std::lock_guard lock(mutex_);
  for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
    if (const auto* stop = std::get_if<Stop>(&*it); stop && stop->trial == trial) {
      inbox_.erase(it);
      return true;
    }
  }
  return false;
}

Status Agent::next(Assign* assign, bool* shutdown, const std::function<bool()>& give_up) {
  *shutdown = false;
  constexpr std::chrono::milliseconds kNagEvery(10000);
  constexpr std::chrono::milliseconds kCheck(200);
  auto silent_since = Clock::now();
  auto last_nag = silent_since;
  // An idle group that hears heartbeats but no answer asks again: its Done (or Request) was
  // answered by a coordinator that died before the answer left, and the restarted one, which
  // the agent never saw go silent, has nothing to answer. A Hello is safe to repeat: it earns
  // the group's current Assign again or new work, and names what the group runs.
  const auto ask_again = std::max<std::chrono::milliseconds>(options_.liveness / 2, kCheck);
  auto last_ask = silent_since;
  for (;;) {
    if (give_up && give_up()) {
      *shutdown = true;
      return Status::Ok();
    }
    Message m;
    if (!take(&m, kCheck)) {
      const auto now = Clock::now();
      const auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - silent_since).count();
      if (now - silent_since >= options_.answer_timeout)
        return Status::Error("no answer from the coordinator at " + options_.endpoint + " for " +
                             std::to_string(secs) +
                             " s; is `trellis serve` (or `trellis run`) running and reachable?");
      if (now - last_ask >= ask_again) {
        Hello hello = options_.hello;
        const AttemptSlot::Value current = current_.get();
        hello.trial = current.trial;
        hello.attempt = current.attempt;
        post(hello);
        last_ask = now;
      }
      if (now - last_nag >= kNagEvery) {
        spdlog::warn("no answer from the coordinator at {} for {} s; still trying",
                     options_.endpoint, secs);
        last_nag = now;
      }
      continue;
    }
    silent_since = last_nag = last_ask = Clock::now();
    if (auto* a = std::get_if<Assign>(&m)) {
      // A Hello repeated before its answer came can earn the same assignment twice.
      if (!seen_.insert({a->trial, a->attempt}).second) continue;
      current_.start(a->trial, a->attempt);
      *assign = std::move(*a);
      return Status::Ok();
    }
    if (const auto* w = std::get_if<Wait>(&m)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::max(w->retry_ms, 10)));
      post(Request{});
      continue;
    }
    if (std::holds_alternative<Shutdown>(m)) {
      *shutdown = true;
      return Status::Ok();
    }
    if (const auto* r = std::get_if<Refuse>(&m))
      return Status::Error("the coordinator at " + options_.endpoint + " refused us: " + r->reason);
    // A Stop for a trial that already ended: nothing to do while idle.
  }
}

void Agent::io_loop() {
  zmq::context_t context(1);
  zmq::socket_t socket;
  if (Status s = make_agent_socket(context, options_.group, options_.security, &socket); !s.ok()) {
    spdlog::error("{}", s.message());
    return;
  }
  try {
    socket.connect(options_.endpoint);
  } catch (const zmq::error_t& e) {
    // Surfaces through next(): an unusable endpoint reads as a coordinator that never answers.
    spdlog::error("cannot connect to '{}': {}", options_.endpoint, e.what());
    return;
  }
  const auto send = [&](const std::string& frame) {
    try {
      return socket.send(zmq::buffer(frame), zmq::send_flags::dontwait).has_value();
    } catch (const zmq::error_t&) {
      return false;
    }
  };
  bool connected = false;
  bool said_hello = false;
  auto last_heard = Clock::now();
  auto last_heartbeat = last_heard;
  auto next_hello = last_heard;
  auto backoff = kFirstBackoff;
  while (running_) {
    const auto now = Clock::now();
    if (connected && now - last_heard > options_.liveness) {
      connected = false;
      next_hello = now;
      backoff = kFirstBackoff;
      spdlog::warn("the coordinator at {} has been silent for {} ms; reconnecting",
                   options_.endpoint, options_.liveness.count());
    }
    if (!connected && now >= next_hello) {
      if (said_hello) {
        // Our identity may still hold a stale connection at the coordinator, which then ignores
        // this one (it refuses to hand an identity over): a fresh connection gets another look.
        try {
          socket.disconnect(options_.endpoint);
          socket.connect(options_.endpoint);
        } catch (const zmq::error_t& e) {
          spdlog::warn("cannot reconnect to '{}': {}", options_.endpoint, e.what());
        }
      }
      said_hello = true;
      Hello hello = options_.hello;
      const AttemptSlot::Value current = current_.get();
      hello.trial = current.trial;
      hello.attempt = current.attempt;
      send(encode(hello));
      next_hello = now + backoff;
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
    std::deque<std::string> sending;
    {
      std::lock_guard lock(mutex_);
      sending.swap(outbox_);
      // New ones go now; unacknowledged ones again once they had time to be acknowledged.
      // A Done goes right behind every report of its attempt not yet acknowledged: one sent on
      // a connection that dropped since (the coordinator restarted) would otherwise come again
      // only liveness/2 later, when the coordinator may have ended the trial, or the sweep,
      // without that epoch. The store ignores a report it already holds.
      for (auto& p : unacked_) {
        if (!connected) break;
        if (p.epoch == 0 && p.sent == Clock::time_point{}) {
          for (auto& r : unacked_) {
            if (r.epoch > 0 && r.trial == p.trial && r.attempt == p.attempt &&
                r.sent != Clock::time_point{}) {
              send(r.frame);
              r.sent = now;
            }
          }
        }
        if (now - p.sent >= options_.liveness / 2) {
          send(p.frame);
          p.sent = now;
        }
      }
    }
    if (connected)
      for (const auto& frame : sending) send(frame);
    if (connected && now - last_heartbeat >= options_.heartbeat) {
      const AttemptSlot::Value current = current_.get();
      send(encode(Heartbeat{current.trial, current.attempt, current.progress}));
      last_heartbeat = now;
    }

    zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 1, kPoll);
    } catch (const zmq::error_t&) {
      continue;  // EINTR
    }
    zmq::message_t frame;
    while (socket.recv(frame, zmq::recv_flags::dontwait)) {
      Message m;
      if (Status s = decode(frame.data(), frame.size(), &m); !s.ok()) {
        spdlog::warn("dropped a frame from the coordinator: {}", s.message());
        continue;
      }
      last_heard = Clock::now();
      spdlog::debug("received {}", message_name(m));
      std::lock_guard lock(mutex_);
      if (!connected) {
        connected = true;
        // Whatever the coordinator may not have stored goes again, after our Hello.
        for (auto& p : unacked_) {
          send(p.frame);
          p.sent = last_heard;
        }
      }
      if (const auto* ack = std::get_if<Ack>(&m)) {
        std::erase_if(unacked_, [&](const Pending& p) {
          const bool match =
              p.trial == ack->trial && p.attempt == ack->attempt && p.epoch == ack->epoch;
          if (match && p.epoch == 0) current_.clear(p.trial, p.attempt);
          if (match && p.checkpointed) {
            if (stored_.trial != p.trial || stored_.attempt != p.attempt) {
              stored_ = StoredCheckpoint{p.trial, p.attempt, 0};
            }
            stored_.epoch = std::max(stored_.epoch, p.epoch);
          }
          return match;
        });
        if (unacked_.empty()) acked_.notify_all();
        continue;
      }
      // Heard (last_heard above) is all a heartbeat says; queued, one would stay for the whole
      // trial, since nothing takes from the inbox while the trainer runs.
      if (std::holds_alternative<Heartbeat>(m)) continue;
      inbox_.push_back(std::move(m));
      arrived_.notify_one();
    }
  }
}

}  // namespace trellis::worker
