#pragma once
// The one place ZeroMQ sockets are made, so every socket gets the same limits and the same
// CURVE keys: no other file calls zmq::socket_t's constructor.

#include <string>

#include <zmq.hpp>

#include "common/status.h"

namespace trellis {

// The ZAP domain of the coordinator's socket; a non-empty domain is what makes libzmq consult
// the ZAP handler.
constexpr char kZapDomain[] = "trellis";

// How a socket authenticates. CURVE is the default; plaintext (`curve = false`) exists only
// for loopback development (--insecure), and the coordinator refuses it on other addresses.
struct SocketSecurity {
  bool curve = true;
  std::string public_key;         // this side's key pair, Z85 (40 characters each)
  std::string secret_key;
  std::string server_public_key;  // agents only: the coordinator's public key
};

// True for tcp://127.x.x.x, tcp://localhost, tcp://[::1], ipc:// and inproc:// endpoints; the
// whole host must be one of those (not a DNS name that starts with "127.", nor "src;dst").
bool is_loopback_endpoint(const std::string& endpoint);

// The coordinator's ROUTER, a CURVE server when security.curve (needs secret_key). Its ZAP
// handler (coordinator/zap_handler.h) decides who gets in and must be bound on `context` before
// the socket binds: without one, libzmq admits any CURVE client that knows the server key.
// A second connection under an identity that is still connected is ignored (no
// router_handover: it would let one key take over another's group); an agent reconnecting after
// its connection closed is served again. A missing or malformed key is an error, never a silent
// fallback to plaintext.
[[nodiscard]] Status make_coordinator_socket(zmq::context_t& context, const SocketSecurity& security,
                                             zmq::socket_t* out);

// An agent's DEALER, identified to the coordinator by `group`; a CURVE client when
// security.curve (needs public_key, secret_key and server_public_key).
[[nodiscard]] Status make_agent_socket(zmq::context_t& context, const std::string& group,
                                       const SocketSecurity& security, zmq::socket_t* out);

}  // namespace trellis
