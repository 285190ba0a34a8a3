#include "common/socket_factory.h"

#include "common/protocol.h"

namespace trellis {
namespace {

// Pending messages to a peer are dropped at close after this long, so a process never hangs
// on exit waiting for a peer that is gone.
constexpr int kLingerMs = 2000;

void apply_common_options(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::linger, kLingerMs);
  socket.set(zmq::sockopt::maxmsgsize, kMaxFrameBytes);
}

}  // namespace

zmq::socket_t make_coordinator_socket(zmq::context_t& context) {
  zmq::socket_t socket(context, zmq::socket_type::router);
  apply_common_options(socket);
  socket.set(zmq::sockopt::router_handover, 1);
  return socket;
}

zmq::socket_t make_agent_socket(zmq::context_t& context, const std::string& group) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  apply_common_options(socket);
  socket.set(zmq::sockopt::routing_id, group);
  socket.set(zmq::sockopt::reconnect_ivl, 200);
  socket.set(zmq::sockopt::reconnect_ivl_max, 5000);
  return socket;
}

}  // namespace trellis
