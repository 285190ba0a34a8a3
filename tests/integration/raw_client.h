#pragma once
// A test's own end of the wire: a DEALER that speaks the protocol frame by frame, for the
// cases a real agent never produces (garbage, impostors, an Assign that never arrived).

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/protocol.h"

namespace trellis::testing {

// A plaintext client (the coordinator runs --insecure).
class RawClient {
 public:
  RawClient(zmq::context_t& context, const std::string& endpoint, const std::string& name)
      : socket_(context, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::routing_id, name);
    socket_.connect(endpoint);
  }
  void send(const std::string& frame) { socket_.send(zmq::buffer(frame), zmq::send_flags::none); }
  void send(const Message& m) { send(encode(m)); }
  void send_parts(const std::vector<std::string>& parts) {
    std::vector<zmq::const_buffer> buffers;
    for (const auto& p : parts) buffers.push_back(zmq::buffer(p));
    zmq::send_multipart(socket_, buffers);
  }
  // The first message within `timeout` that decodes as T, if any.
  template <class T> std::optional<T> receive(std::chrono::milliseconds timeout) {
    socket_.set(zmq::sockopt::rcvtimeo, static_cast<int>(timeout.count()));
    zmq::message_t reply;
    while (socket_.recv(reply)) {
      Message m;
      if (decode(reply.data(), reply.size(), &m).ok() && std::holds_alternative<T>(m))
        return std::get<T>(m);
    }
    return std::nullopt;
  }

 private:
  zmq::socket_t socket_;
};

}  // namespace trellis::testing
