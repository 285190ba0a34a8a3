#include "worker/agent.h"

#include <spdlog/spdlog.h>

#include <zmq.hpp>

#include "common/socket_factory.h"

namespace trellis::worker {

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

void Agent::report(const Report& report) { post(report); }

void Agent::done(const Done& done) {
  current_trial_ = -1;
  post(done);
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

Status Agent::next(Assign* assign, bool* shutdown) {
  *shutdown = false;
  if (!said_hello_) {
    post(options_.hello);
    said_hello_ = true;
  }
  constexpr std::chrono::milliseconds kNagEvery(10000);
  auto silent_since = std::chrono::steady_clock::now();
  for (;;) {
    Message m;
    const auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - silent_since);
    if (!take(&m, std::min(kNagEvery, options_.answer_timeout - silent))) {
      const auto now_silent = std::chrono::steady_clock::now() - silent_since;
      const auto secs = std::chrono::duration_cast<std::chrono::seconds>(now_silent).count();
      if (now_silent >= options_.answer_timeout)
        return Status::Error("no answer from the coordinator at " + options_.endpoint + " for " +
                             std::to_string(secs) +
                             " s; is `trellis serve` (or `trellis run`) running and reachable?");
      spdlog::warn("no answer from the coordinator at {} for {} s; still trying",
                   options_.endpoint, secs);
      continue;
    }
    silent_since = std::chrono::steady_clock::now();
    if (auto* a = std::get_if<Assign>(&m)) {
      current_trial_ = a->trial;
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
    // A Stop for a trial that already ended, for instance: nothing to do.
    spdlog::debug("ignoring '{}' while idle", message_name(m));
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
    // Surface through next(): an unusable endpoint reads as a coordinator that never answers.
    spdlog::error("cannot connect to '{}': {}", options_.endpoint, e.what());
    return;
  }
  auto last_heartbeat = std::chrono::steady_clock::now();
  constexpr auto kPoll = std::chrono::milliseconds(20);
  while (running_) {
    std::deque<std::string> sending;
    {
      std::lock_guard lock(mutex_);
      sending.swap(outbox_);
    }
    for (const auto& frame : sending) socket.send(zmq::buffer(frame), zmq::send_flags::none);

    const auto now = std::chrono::steady_clock::now();
    if (answered_ && now - last_heartbeat >= options_.heartbeat) {
      socket.send(zmq::buffer(encode(Heartbeat{current_trial_.load()})), zmq::send_flags::none);
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
      answered_ = true;
      std::lock_guard lock(mutex_);
      inbox_.push_back(std::move(m));
      arrived_.notify_one();
    }
  }
  // Flush what the trainer queued last (a final Done) before the socket's linger expires.
  std::lock_guard lock(mutex_);
  for (const auto& frame : outbox_) socket.send(zmq::buffer(frame), zmq::send_flags::dontwait);
}

}  // namespace trellis::worker
