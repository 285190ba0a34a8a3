#pragma once
// The dashboard's HTTP server: one page (dashboard_page.h, built into the binary) and the
// read-only JSON routes of DashboardApi, over cpp-httplib. Nothing else is served: any other
// path, and any method but GET, is 404.
//
// Safety (Ray's dashboard, reachable without auth, became CVE-2023-48022):
//   - it binds loopback unless told otherwise; a researcher on a laptop tunnels to it
//     (ssh -L 8080:127.0.0.1:8080 login-node);
//   - a non-loopback address needs allow_remote and a token, which every request must carry
//     (`Authorization: Bearer TOKEN`, or ?token=TOKEN on the page's URL);
//   - on loopback the Host header must name loopback too, so a web page elsewhere cannot
//     reach the server through DNS rebinding;
//   - the page's Content-Security-Policy lets it load nothing and talk to nothing but this
//     server;
//   - the store is opened read-only: the server cannot write it.

#include <atomic>
#include <functional>
#include <string>

#include "common/status.h"
#include "coordinator/dashboard/dashboard_api.h"

namespace trellis::dashboard {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (the bound one is passed to on_listening)
  bool allow_remote = false;
  std::string token;  // required for a non-loopback host; optional on loopback
};

// "HOST:PORT" (or "[V6]:PORT") into the options; the error names the bad part.
[[nodiscard]] Status parse_bind(const std::string& text, ServerOptions* out);

// Serves until `stop` becomes true (polled a few times a second). `on_listening(port)` runs
// once the socket is bound. Fails when the options are unsafe or the address cannot be bound.
[[nodiscard]] Status serve_dashboard(DashboardApi& api, const ServerOptions& options,
                                     const std::function<void(int port)>& on_listening,
                                     const std::function<bool()>& stop);

}  // namespace trellis::dashboard
