#pragma once
// ZapHandler: the ZeroMQ Authentication Protocol (RFC 27) handler of the coordinator's
// context. Every CURVE handshake on a socket of that context asks it; it admits exactly the
// worker public keys on the allow-list and logs every refusal with the peer's address.

#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "common/status.h"

namespace trellis::coordinator {

class ZapHandler {
 public:
  // Binds inproc://zeromq.zap.01 in `context` and answers on a thread of its own until
  // destroyed. Must start before the coordinator's socket binds. Keys are Z85 text.
  [[nodiscard]] static Status Start(zmq::context_t& context, std::vector<std::string> allowed_keys,
                                    std::unique_ptr<ZapHandler>* out);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

 private:
  ZapHandler() = default;
};

}  // namespace trellis::coordinator
