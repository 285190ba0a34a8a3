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

bool is_loopback_endpoint(const std::string& endpoint) {
  for (const char* prefix : {"ipc://", "inproc://", "tcp://127.", "tcp://localhost:", "tcp://[::1]:"})
    if (endpoint.rfind(prefix, 0) == 0) return true;
  return false;
}

// TODO(security): CURVE keys; being written.
Status make_coordinator_socket(zmq::context_t& context, const SocketSecurity& security,
                               zmq::socket_t* out) {
  zmq::socket_t socket(context, zmq::socket_type::router);
  apply_common_options(socket);
  socket.set(zmq::sockopt::router_handover, 1);
  *out = std::move(socket);
  return Status::Ok();
}

Status make_agent_socket(zmq::context_t& context, const std::string& group,
                         const SocketSecurity& security, zmq::socket_t* out) {
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  apply_common_options(socket);
  socket.set(zmq::sockopt::routing_id, group);
  socket.set(zmq::sockopt::reconnect_ivl, 200);
  socket.set(zmq::sockopt::reconnect_ivl_max, 5000);
  *out = std::move(socket);
  return Status::Ok();
}

}  // namespace trellis
