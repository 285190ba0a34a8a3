#pragma once
// ZapHandler: the ZeroMQ Authentication Protocol (RFC 27) handler of the coordinator's
// context. Every CURVE handshake on a socket of that context asks it; it admits exactly the
// worker public keys on the allow-list and logs every refusal with the peer's address.
//
// A client that does not speak CURVE at all never reaches it: libzmq drops a mechanism
// mismatch during the greeting, before authentication.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "common/status.h"

namespace trellis::coordinator {

class ZapHandler {
 public:
  // Endpoint libzmq sends ZAP requests to (RFC 27).
  static constexpr char kEndpoint[] = "inproc://zeromq.zap.01";

  // Binds kEndpoint in `context` and answers on a thread of its own until destroyed. Must
  // start before the coordinator's socket binds, and be destroyed before `context` is
  // terminated. Keys are Z85 text; a malformed one is an error naming it.
  [[nodiscard]] static Status Start(zmq::context_t& context, std::vector<std::string> allowed_keys,
                                    std::unique_ptr<ZapHandler>* out);
  ~ZapHandler();  // stops and joins the thread, closes the socket (linger 0)
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  // Handshakes answered so far; for tests and status lines.
  std::uint64_t admitted() const { return admitted_.load(); }
  std::uint64_t refused() const { return refused_.load(); }

 private:
  using BinaryKey = std::array<std::uint8_t, 32>;

  ZapHandler(zmq::socket_t socket, std::set<BinaryKey> allowed);
  void serve();
  // Answers one request (the frames RFC 27 defines); false if it was malformed.
  void answer(std::vector<zmq::message_t>& request);
  // Logs a refusal of `who` (a key or mechanism) from `address`, at most once per interval.
  void log_refusal(const std::string& address, const std::string& who, const std::string& why);

  struct RefusalLog {
    std::chrono::steady_clock::time_point last_logged;
    int suppressed = 0;
  };

  zmq::socket_t socket_;  // REP; only the thread touches it once started
  std::set<BinaryKey> allowed_;
  std::map<std::string, RefusalLog> refusal_log_;  // by address and key; the thread's own
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> admitted_{0};
  std::atomic<std::uint64_t> refused_{0};
  std::thread thread_;
};

}  // namespace trellis::coordinator
