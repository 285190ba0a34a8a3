#pragma once
// The one place ZeroMQ sockets are made, so every socket gets the same limits (and, later,
// the same CURVE keys): no other file calls zmq::socket_t's constructor.

#include <string>

#include <zmq.hpp>

namespace trellis {

// The coordinator's ROUTER. A reconnecting agent with the same identity takes over its route.
zmq::socket_t make_coordinator_socket(zmq::context_t& context);

// An agent's DEALER, identified to the coordinator by `group`.
zmq::socket_t make_agent_socket(zmq::context_t& context, const std::string& group);

}  // namespace trellis
