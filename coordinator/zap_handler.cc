#include "coordinator/zap_handler.h"

#include <spdlog/spdlog.h>

#include <zmq_addon.hpp>

#include <chrono>
#include <cstring>

#include "common/keys.h"

namespace trellis::coordinator {
namespace {

// How often the thread looks at the stop flag between requests.
constexpr std::chrono::milliseconds kPollInterval{100};
constexpr char kZapVersion[] = "1.0";
constexpr std::size_t kRequestFrames = 6;  // version .. mechanism; credentials follow
// A refused client reconnects every few hundred ms; one line per peer and key per interval
// keeps the log readable (and a hostile client from filling the disk).
constexpr std::chrono::seconds kRefusalLogInterval{10};
constexpr std::size_t kMaxTrackedRefusals = 1024;

void reply(zmq::socket_t& socket, const zmq::message_t& request_id, const std::string& code,
           const std::string& text, const std::string& user_id) {
  std::array<zmq::const_buffer, 6> frames = {
      zmq::str_buffer(kZapVersion), zmq::buffer(request_id.data(), request_id.size()),
      zmq::buffer(code),            zmq::buffer(text),
      zmq::buffer(user_id),         zmq::const_buffer()};
  zmq::send_multipart(socket, frames);
}

}  // namespace

Status ZapHandler::Start(zmq::context_t& context, std::vector<std::string> allowed_keys,
                         std::unique_ptr<ZapHandler>* out) {
  std::set<BinaryKey> allowed;
  for (const auto& key : allowed_keys) {
    BinaryKey binary;
    if (Status s = decode_z85_key(key, &binary); !s.ok()) return s.With("authorized workers");
    allowed.insert(binary);
  }
  if (allowed.empty())
    spdlog::warn("no worker key is authorized: every worker group will be refused");
  zmq::socket_t socket(context, zmq::socket_type::rep);
  // Nothing may keep zmq_ctx_term waiting on this socket.
  socket.set(zmq::sockopt::linger, 0);
  try {
    socket.bind(kEndpoint);
  } catch (const zmq::error_t& e) {
    return Status::Error(std::string("cannot bind the ZAP handler at ") + kEndpoint + ": " +
                         e.what());
  }
  out->reset(new ZapHandler(std::move(socket), std::move(allowed)));
  return Status::Ok();
}

ZapHandler::ZapHandler(zmq::socket_t socket, std::set<BinaryKey> allowed)
    : socket_(std::move(socket)), allowed_(std::move(allowed)) {
  thread_ = std::thread([this] { serve(); });
}

ZapHandler::~ZapHandler() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  socket_.close();
}

void ZapHandler::serve() {
  while (!stopping_) {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
    std::vector<zmq::message_t> request;
    try {
      zmq::poll(items, 1, kPollInterval);
      if ((items[0].revents & ZMQ_POLLIN) == 0) continue;
      if (!zmq::recv_multipart(socket_, std::back_inserter(request), zmq::recv_flags::dontwait))
        continue;
      answer(request);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;  // the context is going away under us
      if (e.num() == EINTR) continue;
      spdlog::error("ZAP handler: {}", e.what());
      return;
    }
  }
}

void ZapHandler::answer(std::vector<zmq::message_t>& request) {
  if (request.size() < kRequestFrames || request[0].to_string_view() != kZapVersion) {
    // libzmq never sends this; answer anyway so the REP socket stays in step.
    spdlog::warn("ZAP handler: malformed request of {} frames refused", request.size());
    ++refused_;
    const zmq::message_t no_id;
    reply(socket_, request.size() > 1 ? request[1] : no_id, "500", "malformed ZAP request", "");
    return;
  }
  const zmq::message_t& request_id = request[1];
  const std::string address = request[3].to_string();
  const std::string mechanism = request[5].to_string();
  if (mechanism != "CURVE" || request.size() < kRequestFrames + 1 ||
      request[kRequestFrames].size() != kBinaryKeyBytes) {
    log_refusal(address, mechanism, "a " + mechanism + " client: only CURVE clients are served");
    ++refused_;
    reply(socket_, request_id, "400", "CURVE required", "");
    return;
  }
  BinaryKey key;
  std::memcpy(key.data(), request[kRequestFrames].data(), kBinaryKeyBytes);
  const std::string z85 = encode_z85_key(key.data());
  if (allowed_.count(key) == 0) {
    log_refusal(address, z85, "CURVE client " + z85 + ": key not in authorized_workers");
    ++refused_;
    reply(socket_, request_id, "400", "key not authorized", "");
    return;
  }
  spdlog::debug("admitted worker key {} from {}", z85, address);
  ++admitted_;
  reply(socket_, request_id, "200", "OK", z85);
}

void ZapHandler::log_refusal(const std::string& address, const std::string& who,
                             const std::string& why) {
  const auto now = std::chrono::steady_clock::now();
  if (refusal_log_.size() >= kMaxTrackedRefusals) refusal_log_.clear();
  auto [it, first] = refusal_log_.try_emplace(address + " " + who, RefusalLog{now, 0});
  if (!first && now - it->second.last_logged < kRefusalLogInterval) {
    ++it->second.suppressed;
    return;
  }
  const int again = it->second.suppressed;
  it->second = RefusalLog{now, 0};
  if (again > 0)
    spdlog::warn("refused {} from {} ({} more refusals since the last line)", why, address, again);
  else
    spdlog::warn("refused {} from {}", why, address);
}

}  // namespace trellis::coordinator
