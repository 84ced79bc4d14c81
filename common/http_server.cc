// See http_server.h.
#include "common/http_server.h"

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cstdlib>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/runtime.h"

namespace bud {

Result<std::pair<std::string, int>> SplitHostPort(const std::string& listen) {
  std::string host = "127.0.0.1", port = listen;
  if (auto colon = listen.rfind(':'); colon != std::string::npos) {
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
  }
  char* end = nullptr;
  long n = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || n < 0 || n > 65535 || host.empty()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("'{}' is not host:port (e.g. \"127.0.0.1:9093\")", listen));
  }
  return std::make_pair(host, static_cast<int>(n));
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

namespace {
const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return status >= 500 ? "Server Error" : "Client Error";
  }
}
}  // namespace

Status LoadHttpOptions(ConfigFile& f, HttpOptions& o) {
  BUD_ASSIGN_OR_RETURN(o.listen, f.String("http.listen", o.listen));
  BUD_ASSIGN_OR_RETURN(o.port_file, f.Path("http.port_file", ""));
  BUD_ASSIGN_OR_RETURN(o.token_file, f.Path("http.token_file", ""));
  BUD_ASSIGN_OR_RETURN(o.tls_cert, f.Path("http.tls_cert", ""));
  BUD_ASSIGN_OR_RETURN(o.tls_key, f.Path("http.tls_key", ""));
  BUD_ASSIGN_OR_RETURN(int64_t threads, f.Int("http.threads", o.threads, 1, 64));
  o.threads = static_cast<int>(threads);
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return f.Error("http.tls_cert", "tls_cert and tls_key go together");
  }
  if (o.listen.empty()) return Status::Ok();
  auto hp = SplitHostPort(o.listen);
  if (!hp.ok()) return f.Error("http.listen", hp.status().message());
  if (!IsLoopback(hp->first) && o.token_file.empty()) {
    return f.Error("http.listen",
                   fmt::format("'{}' is reachable from other machines; set http.token_file (and "
                               "http.tls_cert/tls_key) before listening beyond 127.0.0.1",
                               o.listen));
  }
  return Status::Ok();
}

void SendJson(httplib::Response& res, const nlohmann::json& body, int http_status) {
  res.status = http_status;
  res.set_content(body.dump(), "application/json");
}

void SendError(httplib::Response& res, int http_status, const std::string& message,
               const std::string& path) {
  SendJson(res,
           {{"timestamp", FormatTime(NowMs())},
            {"status", http_status},
            {"error", Reason(http_status)},
            {"message", message},
            {"path", path}},
           http_status);
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(
    const HttpOptions& o, const std::function<void(httplib::Server&)>& routes) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  BUD_ASSIGN_OR_RETURN(auto hp, SplitHostPort(o.listen));
  if (!o.token_file.empty()) {
    BUD_ASSIGN_OR_RETURN(std::string token, ReadFile(o.token_file));
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
      token.pop_back();
    }
    if (token.size() < 16) {
      return Status(Code::kConfig, fmt::format("token file '{}' holds fewer than 16 characters; "
                                               "use a long random token",
                                               o.token_file));
    }
    s->token_ = std::move(token);
  }
  if (!o.tls_cert.empty()) {
    auto ssl = std::make_unique<httplib::SSLServer>(o.tls_cert.c_str(), o.tls_key.c_str());
    if (!ssl->is_valid()) {
      return Status(Code::kConfig, fmt::format("cannot load TLS certificate '{}' / key '{}'",
                                               o.tls_cert, o.tls_key));
    }
    s->server_ = std::move(ssl);
  } else {
    s->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& srv = *s->server_;
  const int threads = o.threads;
  srv.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  // httplib's own limit must let the streamed requests through; the others are held to
  // max_body_bytes by the check below, before their body is read.
  srv.set_payload_max_length(std::max(o.max_body_bytes, o.max_streamed_body_bytes));
  auto too_large = [o](const httplib::Request& req, httplib::Response& res) {
    const bool streamed = o.streams_body && o.streams_body(req);
    const size_t limit = streamed ? o.max_streamed_body_bytes : o.max_body_bytes;
    if (!req.has_header("Content-Length")) return false;
    const std::string len = req.get_header_value("Content-Length");
    char* end = nullptr;
    const unsigned long long n = std::strtoull(len.c_str(), &end, 10);
    if (end != len.c_str() + len.size() || n <= limit) return false;
    res.set_header("Connection", "close");  // the body is not read
    SendError(res, 413,
              fmt::format("request body of {} bytes is larger than the limit of {} bytes (see {})",
                          n, limit, streamed ? "outbox.max_message_bytes" : "http.max_upload_bytes"),
              req.path);
    return true;
  };
  // curl and others ask before sending a large body: a refusal then costs no upload.
  srv.set_expect_100_continue_handler([too_large](const httplib::Request& req,
                                                  httplib::Response& res) {
    return too_large(req, res) ? 413 : 100;
  });
  srv.set_read_timeout(std::chrono::seconds(30));
  srv.set_write_timeout(std::chrono::seconds(30));
  srv.set_keep_alive_timeout(5);
  // httplib writes a response's headers and body with separate sends: with Nagle on, a
  // keep-alive client's delayed ACK held every answer back by about 40 ms.
  srv.set_tcp_nodelay(true);
  const std::string token = s->token_;
  srv.set_pre_routing_handler([token, too_large](const httplib::Request& req,
                                                 httplib::Response& res) {
    auto size_checked = [&] {
      return too_large(req, res) ? httplib::Server::HandlerResponse::Handled
                                 : httplib::Server::HandlerResponse::Unhandled;
    };
    if (token.empty() || req.path == "/" || req.path == "/healthz") return size_checked();
    const std::string auth = req.get_header_value("Authorization");
    const std::string want = "Bearer " + token;
    if (auth.size() == want.size() && CRYPTO_memcmp(auth.data(), want.data(), want.size()) == 0) {
      return size_checked();
    }
    res.set_header("WWW-Authenticate", "Bearer");
    SendError(res, 401, "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                        "with the token from http.token_file", req.path);
    return httplib::Server::HandlerResponse::Handled;
  });
  srv.set_exception_handler([](const httplib::Request& req, httplib::Response& res,
                               std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    Logger("http")->error("{} {}: {}", req.method, req.path, what);
    SendError(res, 500, "internal error: " + what, req.path);
  });
  srv.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own error body
    if (res.status == 404) {
      SendError(res, 404, fmt::format("no such endpoint: {} {}", req.method, req.path), req.path);
    } else if (res.status == 413) {
      SendError(res, 413, "request body too large (see http.max_upload_bytes)", req.path);
    } else {
      SendError(res, res.status, Reason(res.status), req.path);
    }
  });
  routes(srv);
  int port = hp.second;
  if (port == 0) {
    port = srv.bind_to_any_port(hp.first);
    if (port < 0) {
      return Status(Code::kIo, fmt::format("{}: cannot bind {}", o.name, o.listen));
    }
  } else if (!srv.bind_to_port(hp.first, port)) {
    return Status(Code::kIo, fmt::format("{}: cannot bind {} (in use?)", o.name, o.listen));
  }
  s->address_ = fmt::format("{}:{}", hp.first.find(':') != std::string::npos
                                         ? "[" + hp.first + "]" : hp.first, port);
  httplib::Server* raw = s->server_.get();
  s->thread_ = std::thread([raw] { raw->listen_after_bind(); });
  BUD_RETURN_IF_ERROR(PublishEndpoint(o.port_file, s->address_));
  Logger(o.name)->info("{} listening on {}://{}{}", o.name, o.tls_cert.empty() ? "http" : "https",
                       s->address_, s->token_.empty() ? "" : " (bearer token required)");
  return s;
}

HttpServer::~HttpServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace bud
