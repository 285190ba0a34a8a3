#include "coordinator/dashboard/dashboard_server.h"

#include <chrono>
#include <thread>

#include <httplib.h>

#include "common/socket_factory.h"
#include "coordinator/dashboard/dashboard_page.h"

namespace trellis::dashboard {
namespace {

// Compared in time independent of where the first difference is.
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

bool loopback_host_header(const std::string& host) {
  std::string name = host;
  if (!name.empty() && name.front() == '[') {
    name = name.substr(0, name.find(']') + 1);
  } else if (const std::size_t colon = name.rfind(':'); colon != std::string::npos) {
    name = name.substr(0, colon);
  }
  return is_loopback_endpoint("tcp://" + name + ":1");
}

void not_found(httplib::Response& res) {
  res.status = 404;
  res.set_content("{\"error\":\"not found\"}", "application/json");
}

}  // namespace

Status parse_bind(const std::string& text, ServerOptions* out) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return Status::Error("--bind '" + text + "': expected HOST:PORT, e.g. 127.0.0.1:8080");
  std::string host = text.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = text.substr(colon + 1);
  char* rest = nullptr;
  const long value = std::strtol(port.c_str(), &rest, 10);
  if (*rest != '\0' || value < 0 || value > 65535)
    return Status::Error("--bind '" + text + "': port '" + port + "' is not 0 to 65535");
  out->host = host;
  out->port = static_cast<int>(value);
  return Status::Ok();
}

Status serve_dashboard(DashboardApi& api, const ServerOptions& options,
                       const std::function<void(int port)>& on_listening,
                       const std::function<bool()>& stop) {
  const bool loopback = is_loopback_endpoint(
      "tcp://" + (options.host.find(':') != std::string::npos ? "[" + options.host + "]"
                                                              : options.host) +
      ":1");
  if (!loopback && !options.allow_remote)
    return Status::Error("--bind " + options.host +
                         " is not a loopback address: anyone who can reach it could read the "
                         "store; pass --allow-remote (with a token) to mean it, or tunnel to "
                         "127.0.0.1 with ssh -L");
  if (!loopback && options.token.empty())
    return Status::Error("a dashboard on a non-loopback address needs a token (--token-file)");

  httplib::Server server;
  server.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (loopback && !loopback_host_header(req.get_header_value("Host"))) {
      res.status = 403;
      res.set_content("{\"error\":\"Host header is not loopback\"}", "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.method != "GET" && req.method != "HEAD") {
      not_found(res);
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!options.token.empty()) {
      std::string given = req.get_param_value("token");
      const std::string header = req.get_header_value("Authorization");
      if (header.rfind("Bearer ", 0) == 0) given = header.substr(7);
      if (!same_secret(given, options.token)) {
        res.status = 401;
        res.set_content("{\"error\":\"this dashboard needs its token\"}", "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    // No compression: cpp-httplib would brotli-compress at its highest quality, which costs a
    // 16 MB trials table a minute; on loopback or an ssh tunnel plain bytes are faster.
    const_cast<httplib::Request&>(req).headers.erase("Accept-Encoding");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Cache-Control", "no-store");
    res.set_header("Referrer-Policy", "no-referrer");
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy", std::string(kPagePolicy));
    res.set_content(std::string(dashboard_page()), "text/html; charset=utf-8");
  });
  server.Get(R"(/api/[a-z]+)", [&api](const httplib::Request& req, httplib::Response& res) {
    Query query;
    for (const auto& [name, value] : req.params)
      if (name != "token") query[name] = value;
    const ApiResponse answer = api.get(req.path, query);
    res.status = answer.http_status;
    res.set_content(answer.body, "application/json");
  });
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404 && res.body.empty()) not_found(res);
  });

  const int port = options.port == 0 ? server.bind_to_any_port(options.host)
                                     : (server.bind_to_port(options.host, options.port)
                                            ? options.port
                                            : -1);
  if (port < 0)
    return Status::Error("cannot listen on " + options.host + ":" + std::to_string(options.port) +
                         " (in use, or not an address of this machine)");
  std::thread listener([&server] { server.listen_after_bind(); });
  on_listening(port);
  while (!stop()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server.stop();
  listener.join();
  return Status::Ok();
}

}  // namespace trellis::dashboard
