// The HTTP side of a process (cpp-httplib): the integration point's Next Move API and status
// page, and /metrics and /healthz on the integration point and the broker.
//
// Operation: Start binds (port 0 = the OS picks; the bound "host:port" is published to
// port_file), then serves on its own thread with a pool of `threads` workers. With a token
// file every path except "/" (the page itself) and "/healthz" needs "Authorization: Bearer
// <token>"; with tls_cert/tls_key it speaks HTTPS. Handlers run on the pool's threads: whatever
// they touch must be thread-safe (own SQLite connections, atomics, a mutex).
#pragma once

#include <httplib.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "common/config.h"
#include "common/status.h"

namespace bud {

struct HttpOptions {
  std::string listen;      // "host:port"; a bare port means 127.0.0.1
  std::string port_file;   // "" = none
  std::string token_file;  // "" = no authentication
  std::string tls_cert;    // "" = plain HTTP
  std::string tls_key;
  int threads = 16;  // a keep-alive connection holds a thread while it is open
  size_t max_body_bytes = 100u << 20;
  // Requests for which this is true are read by their handler as a stream (httplib's
  // ContentReader), never held whole: they may carry up to max_streamed_body_bytes, and their
  // handler enforces its own limits. Every other request's Content-Length is checked against
  // max_body_bytes before its body is read (413).
  std::function<bool(const httplib::Request&)> streams_body;
  size_t max_streamed_body_bytes = 0;
  std::string name = "http";  // for logs
};

class HttpServer {
 public:
  // Registers routes through `routes`, binds and starts serving.
  static Result<std::unique_ptr<HttpServer>> Start(const HttpOptions& options,
                                                   const std::function<void(httplib::Server&)>& routes);
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
};

// "9093" -> 127.0.0.1:9093; "host:port"; "[v6]:port".
Result<std::pair<std::string, int>> SplitHostPort(const std::string& listen);
bool IsLoopback(const std::string& host);

// Reads [http] listen, port_file, token_file, tls_cert, tls_key and threads into `o` (keeping
// its defaults for absent keys) and checks them: tls_cert and tls_key together, listen a valid
// host:port, and no listening beyond loopback without a token file.
Status LoadHttpOptions(ConfigFile& f, HttpOptions& o);

// A JSON error body in the shape Spring (and so eFormidling) uses:
// {"timestamp", "status", "error", "message", "path"}.
void SendError(httplib::Response& res, int http_status, const std::string& message,
               const std::string& path);
void SendJson(httplib::Response& res, const nlohmann::json& body, int http_status = 200);

}  // namespace bud
