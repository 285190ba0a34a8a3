#include "common/socket_factory.h"

#include <arpa/inet.h>

#include <string_view>

#include "common/keys.h"
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

Status check_key(const std::string& key, const std::string& what) {
  if (key.empty())
    return Status::Error("CURVE is on but " + what +
                         " is missing (create keys with `trellis keys init`; plaintext is "
                         "--insecure, loopback only)");
  if (!is_z85_key(key))
    return Status::Error("CURVE is on but " + what + " is not a key (expected 40 characters of "
                         "Z85, got " + std::to_string(key.size()) + ")");
  return Status::Ok();
}

}  // namespace

bool is_loopback_endpoint(const std::string& endpoint) {
  for (const char* prefix : {"ipc://", "inproc://"})
    if (endpoint.rfind(prefix, 0) == 0) return true;
  constexpr std::string_view kTcp = "tcp://";
  if (endpoint.rfind(kTcp, 0) != 0) return false;
  const std::size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon < kTcp.size()) return false;
  // The whole host must be loopback: a prefix test would pass "tcp://127.0.0.1.example.org:1"
  // (a DNS name) and "tcp://127.0.0.1;10.0.0.1:1" (source;destination) on to another machine.
  const std::string host = endpoint.substr(kTcp.size(), colon - kTcp.size());
  if (host == "localhost" || host == "[::1]") return true;
  in_addr address{};
  return inet_pton(AF_INET, host.c_str(), &address) == 1 &&
         (ntohl(address.s_addr) >> 24) == 127;
}

Status make_coordinator_socket(zmq::context_t& context, const SocketSecurity& security,
                               zmq::socket_t* out) {
  if (security.curve) {
    if (Status s = check_key(security.secret_key, "the coordinator's secret key"); !s.ok())
      return s;
  }
  zmq::socket_t socket(context, zmq::socket_type::router);
  apply_common_options(socket);
  // No router_handover: with it, any authorized key connecting under a group's identity takes
  // the group's route, and the group's own connection goes dead without noticing (libzmq drops
  // its pipe but keeps the TCP connection). Without it, libzmq ignores a second connection
  // under a connected identity; the coordinator binds each identity to its key for the rest.
  socket.set(zmq::sockopt::router_handover, 0);
  if (security.curve) {
    socket.set(zmq::sockopt::curve_server, 1);
    socket.set(zmq::sockopt::curve_secretkey, security.secret_key);
    // A non-empty domain makes libzmq ask the ZAP handler for every handshake.
    socket.set(zmq::sockopt::zap_domain, std::string(kZapDomain));
  }
  *out = std::move(socket);
  return Status::Ok();
}

Status make_agent_socket(zmq::context_t& context, const std::string& group,
                         const SocketSecurity& security, zmq::socket_t* out) {
  if (security.curve) {
    for (const auto& [key, what] :
         {std::pair{&security.server_public_key, "the coordinator's public key"},
          std::pair{&security.public_key, "the worker's public key"},
          std::pair{&security.secret_key, "the worker's secret key"}}) {
      if (Status s = check_key(*key, what); !s.ok()) return s;
    }
  }
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  apply_common_options(socket);
  socket.set(zmq::sockopt::routing_id, group);
  socket.set(zmq::sockopt::reconnect_ivl, 200);
  socket.set(zmq::sockopt::reconnect_ivl_max, 5000);
  if (security.curve) {
    socket.set(zmq::sockopt::curve_serverkey, security.server_public_key);
    socket.set(zmq::sockopt::curve_publickey, security.public_key);
    socket.set(zmq::sockopt::curve_secretkey, security.secret_key);
  }
  *out = std::move(socket);
  return Status::Ok();
}

}  // namespace trellis
