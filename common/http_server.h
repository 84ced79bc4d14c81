// The HTTP side of a process (cpp-httplib): the integration point's Next Move API and status
// page, and /metrics and /healthz on the integration point and the broker.
//
// Operation: Start binds (port 0 = the OS picks; the bound "host:port" is published to
// port_file), then serves on its own thread with a pool of `threads` workers. With a token
// file and/or a basic auth file (http_auth.h) every path except "/" (the page itself),
// "/healthz", "/health" and "/manage/health" needs "Authorization: Bearer <token>" or
// "Authorization: Basic <user:password>" (either one when both are set); with tls_cert/tls_key it
// speaks HTTPS. Handlers run on the pool's threads: whatever they touch must be thread-safe (own
// SQLite connections, atomics, a mutex).
#pragma once

#include <httplib.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "common/http_auth.h"
#include "common/status.h"

namespace bud {

struct HttpOptions {
  std::string listen;           // "host:port"; a bare port means 127.0.0.1
  std::string port_file;        // "" = none
  std::string token_file;       // "" = no bearer token
  std::string basic_auth_file;  // "" = no Basic authentication (http_auth.h)
  std::string tls_cert;         // "" = plain HTTP
  std::string tls_key;
  int threads = 16;  // a keep-alive connection holds a thread while it is open
  size_t max_body_bytes = 100u << 20;
  // Requests for which this is true are read by their handler as a stream (httplib's
  // ContentReader), never held whole: they may carry up to max_streamed_body_bytes, and their
  // handler enforces its own limits. Every other request's Content-Length is checked against
  // max_body_bytes before its body is read (413).
  std::function<bool(const httplib::Request&)> streams_body;
  size_t max_streamed_body_bytes = 0;
  // Host names (without port) this server answers to besides loopback literals and "localhost"
  // ([http] allowed_hosts). Listening on loopback, a request for any other Host is refused: a web
  // page whose name was rebound to 127.0.0.1 (DNS rebinding) reaches the port with its own name
  // as Host. Listening beyond loopback with this empty, any Host is taken (the token guards it).
  std::vector<std::string> allowed_hosts;
  std::string name = "http";  // for logs
};

class HttpServer {
 public:
  // Registers routes through `routes`, binds and starts serving.
  static Result<std::unique_ptr<HttpServer>> Start(
      const HttpOptions& options, const std::function<void(httplib::Server&)>& routes);
  ~HttpServer();  // stops and joins
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const std::string& address() const { return address_; }  // "host:port" bound

 private:
  HttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string address_;
  std::string token_;
  std::shared_ptr<BasicAuth> basic_;  // null without a basic auth file
};

// Paths served without authentication: "/" (the status page's static shell; its data comes
// from the API), "/healthz" and "/manage/health" (monitoring).
bool IsOpenPath(const std::string& path);

// "9093" -> 127.0.0.1:9093; "host:port"; "[v6]:port".
Result<std::pair<std::string, int>> SplitHostPort(const std::string& listen);
// True for "localhost", an IPv4 literal in 127.0.0.0/8 (dotted quad, as inet_pton reads it) and
// "::1" (with or without brackets). Names are not resolved: "127.0.0.1.example" is not loopback.
bool IsLoopback(const std::string& host);

// Why a request must not be served, or "" when it may: its Host is not one of this server's
// names, or it comes from a page of another origin (an Origin that is not scheme://Host, or a
// browser's Sec-Fetch-Site that is not same-origin / none). `tls` gives the scheme. GET and HEAD
// of "/" (the status page, no data) may be opened from a link on another site.
std::string CrossSiteRefusal(const httplib::Request& req, const HttpOptions& options, bool tls);

// Reads [http] listen, port_file, token_file, basic_auth_file, tls_cert, tls_key, threads and
// allowed_hosts into `o` (keeping its defaults for absent keys) and checks them: tls_cert and
// tls_key together, listen a valid host:port, allowed_hosts plain names, and no listening beyond
// loopback without a token file or a basic auth file.
Status LoadHttpOptions(ConfigFile& f, HttpOptions& o);

// A JSON error body in the shape Spring (and so eFormidling) uses:
// {"timestamp", "status", "error", "exception", "message", "path"}. `exception` names the kind
// of failure as eFormidling's Java class would ("MessageNotFoundException"); empty picks one from
// the HTTP status. `extra` (an object) is merged in: "description", "errors": [...].
void SendError(httplib::Response& res, int http_status, const std::string& message,
               const std::string& path, const std::string& exception = "",
               const nlohmann::json& extra = nullptr);
void SendJson(httplib::Response& res, const nlohmann::json& body, int http_status = 200);

}  // namespace bud
