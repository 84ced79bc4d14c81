// See http_server.h.
#include "common/http_server.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <strings.h>

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
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, h.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

namespace {

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The host part of a Host header: "name:port" -> name, "[v6]:port" -> v6; "" when malformed.
std::string HostName(const std::string& host_header) {
  std::string h = Lower(host_header);
  if (h.starts_with('[')) {
    auto end = h.find(']');
    if (end == std::string::npos) return "";
    std::string rest = h.substr(end + 1);
    if (!rest.empty() && (rest.front() != ':' || rest.size() == 1 ||
                          rest.find_first_not_of("0123456789", 1) != std::string::npos)) {
      return "";
    }
    return h.substr(1, end - 1);
  }
  if (auto colon = h.find(':'); colon != std::string::npos) {
    std::string port = h.substr(colon + 1);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos) return "";
    h = h.substr(0, colon);
  }
  return h;
}

}  // namespace

std::string CrossSiteRefusal(const httplib::Request& req, const HttpOptions& o, bool tls) {
  const bool status_page = (req.method == "GET" || req.method == "HEAD") && req.path == "/";
  if (req.has_header("Host")) {
    const std::string raw = req.get_header_value("Host");
    const std::string host = HostName(raw);
    bool ok = !host.empty() && IsLoopback(host);
    for (const auto& allowed : o.allowed_hosts) ok = ok || (!host.empty() && Lower(allowed) == host);
    if (!ok && o.allowed_hosts.empty()) {
      // Beyond loopback without a list the token is the guard; on loopback only loopback names.
      auto hp = SplitHostPort(o.listen);
      ok = !host.empty() && hp.ok() && !IsLoopback(hp->first);
    }
    if (!ok) {
      return fmt::format("Host '{}' is not a name of this server (refused as DNS rebinding); use "
                         "127.0.0.1 or localhost, or add the name to http.allowed_hosts",
                         EscapeControl(raw));
    }
  }
  if (req.has_header("Origin")) {
    const std::string origin = req.get_header_value("Origin");
    const std::string own = fmt::format("{}://{}", tls ? "https" : "http",
                                        req.get_header_value("Host"));
    if (Lower(origin) != Lower(own)) {
      return fmt::format("cross-origin request from '{}' refused: this API answers only its own "
                         "pages and programs that are not browsers",
                         EscapeControl(origin));
    }
  }
  if (req.has_header("Sec-Fetch-Site") && !status_page) {
    const std::string site = Lower(req.get_header_value("Sec-Fetch-Site"));
    if (site != "same-origin" && site != "none") {
      return fmt::format("request from a {} web page refused (Sec-Fetch-Site): this API answers "
                         "only its own pages and programs that are not browsers",
                         EscapeControl(site));
    }
  }
  return "";
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
  BUD_ASSIGN_OR_RETURN(o.basic_auth_file, f.Path("http.basic_auth_file", ""));
  BUD_ASSIGN_OR_RETURN(o.tls_cert, f.Path("http.tls_cert", ""));
  BUD_ASSIGN_OR_RETURN(o.tls_key, f.Path("http.tls_key", ""));
  BUD_ASSIGN_OR_RETURN(int64_t threads, f.Int("http.threads", o.threads, 1, 64));
  o.threads = static_cast<int>(threads);
  BUD_ASSIGN_OR_RETURN(o.allowed_hosts, f.StringList("http.allowed_hosts", o.allowed_hosts));
  for (const auto& h : o.allowed_hosts) {
    if (h.empty() || h.find_first_of(":/ []") != std::string::npos) {
      return f.Error("http.allowed_hosts",
                     fmt::format("'{}' is not a host name (give names without port or scheme, "
                                 "e.g. \"ip.example.no\")",
                                 h));
    }
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return f.Error("http.tls_cert", "tls_cert and tls_key go together");
  }
  if (o.listen.empty()) return Status::Ok();
  auto hp = SplitHostPort(o.listen);
  if (!hp.ok()) return f.Error("http.listen", hp.status().message());
  if (!IsLoopback(hp->first) && o.token_file.empty() && o.basic_auth_file.empty()) {
    return f.Error("http.listen",
                   fmt::format("'{}' is reachable from other machines; set http.basic_auth_file "
                               "or http.token_file (and http.tls_cert/tls_key) before listening "
                               "beyond 127.0.0.1",
                               o.listen));
  }
  return Status::Ok();
}

void SendJson(httplib::Response& res, const nlohmann::json& body, int http_status) {
  res.status = http_status;
  res.set_content(body.dump(), "application/json");
}

bool IsOpenPath(const std::string& path) {
  return path == "/" || path == "/healthz" || path == "/health" || path == "/manage/health";
}

void SendError(httplib::Response& res, int http_status, const std::string& message,
               const std::string& path, const std::string& exception, const nlohmann::json& extra) {
  nlohmann::json body = {
      {"timestamp", FormatTime(NowMs())},
      {"status", http_status},
      {"error", Reason(http_status)},
      {"exception",
       exception.empty() ? "org.springframework.web.server.ResponseStatusException" : exception},
      {"message", message},
      {"path", path}};
  if (extra.is_object()) {
    for (const auto& [key, value] : extra.items()) body[key] = value;
  }
  SendJson(res, body, http_status);
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
  if (!o.basic_auth_file.empty()) {
    BUD_ASSIGN_OR_RETURN(BasicCredential credential, LoadBasicAuthFile(o.basic_auth_file));
    s->basic_ = std::make_shared<BasicAuth>(std::move(credential));
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

  srv.set_read_timeout(std::chrono::seconds(30));
  srv.set_write_timeout(std::chrono::seconds(30));
  srv.set_keep_alive_timeout(5);
  // httplib writes a response's headers and body with separate sends: with Nagle on, a
  // keep-alive client's delayed ACK held every answer back by about 40 ms.
  srv.set_tcp_nodelay(true);
  // httplib reads a chunked body, or one without Content-Length, into memory with no limit
  // (only Content-Length is checked against its payload maximum). So such a body is refused
  // before it is read, unless its handler streams it and keeps its own limit.
  auto unbounded = [o](const httplib::Request& req, httplib::Response& res) {
    const bool has_body = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
                          req.method == "DELETE";
    const bool chunked = req.has_header("Transfer-Encoding");  // checked to be "chunked" below
    const bool has_length = req.has_header("Content-Length");
    auto refuse = [&](int status, const std::string& message) {
      res.set_header("Connection", "close");  // the body is not read
      SendError(res, status, message, req.path);
      return true;
    };
    if (has_length) {
      const std::string len = req.get_header_value("Content-Length");
      if (len.empty() || len.size() > 19 ||
          len.find_first_not_of("0123456789") != std::string::npos ||
          req.get_header_value_count("Content-Length") != 1) {
        return refuse(400, "Content-Length must be one whole number");
      }
    }
    if (chunked) {
      const std::string te = req.get_header_value("Transfer-Encoding");
      if (req.get_header_value_count("Transfer-Encoding") != 1 ||
          strcasecmp(te.c_str(), "chunked") != 0) {
        return refuse(501, fmt::format("Transfer-Encoding '{}' is not supported (only chunked)",
                                       EscapeControl(te)));
      }
      if (has_length) return refuse(400, "both Transfer-Encoding and Content-Length were sent");
    }
    if (!has_body || (req.method == "DELETE" && !chunked)) return false;  // httplib reads none
    if (o.streams_body && o.streams_body(req)) return false;  // its handler bounds it
    if (chunked) {
      return refuse(411, fmt::format("a chunked body is not taken here: send Content-Length (at "
                                     "most {} bytes, http.max_upload_bytes); only file uploads "
                                     "(PUT /api/messages/out/<id>) may be chunked",
                                     o.max_body_bytes));
    }
    if (!has_length) {
      return refuse(411, "send Content-Length with the body (curl -d '' for an empty one)");
    }
    return false;
  };
  const std::string token = s->token_;
  const std::shared_ptr<BasicAuth> basic = s->basic_;
  const bool tls = !o.tls_cert.empty();
  // curl and others ask before sending a large (or chunked) body: a refusal then costs no upload.
  srv.set_expect_100_continue_handler([too_large, unbounded, o, tls](const httplib::Request& req,
                                                                     httplib::Response& res) {
    if (std::string why = CrossSiteRefusal(req, o, tls); !why.empty()) {
      res.set_header("Connection", "close");
      SendError(res, 403, why, req.path);
      return 403;
    }
    if (unbounded(req, res) || too_large(req, res)) return res.status;
    return 100;
  });
  srv.set_pre_routing_handler([token, basic, too_large, unbounded, o, tls](
                                  const httplib::Request& req, httplib::Response& res) {
    // Before anything else: a browser page of another site (CSRF) or a rebound name gets
    // nothing, token or not.
    if (std::string why = CrossSiteRefusal(req, o, tls); !why.empty()) {
      Logger(o.name)->warn("{} {} refused: {}", req.method, EscapeControl(req.path), why);
      res.set_header("Connection", "close");
      SendError(res, 403, why, req.path);
      return httplib::Server::HandlerResponse::Handled;
    }
    auto size_checked = [&] {
      return unbounded(req, res) || too_large(req, res)
                 ? httplib::Server::HandlerResponse::Handled
                 : httplib::Server::HandlerResponse::Unhandled;
    };
    if ((token.empty() && !basic) || IsOpenPath(req.path)) return size_checked();
    const std::string auth = req.get_header_value("Authorization");
    if (!token.empty()) {
      const std::string want = "Bearer " + token;
      if (auth.size() == want.size() && CRYPTO_memcmp(auth.data(), want.data(), want.size()) == 0) {
        return size_checked();
      }
    }
    if (basic && basic->Check(auth)) return size_checked();
    if (basic) res.set_header("WWW-Authenticate", R"(Basic realm="budstikke", charset="UTF-8")");
    if (!token.empty()) res.set_header("WWW-Authenticate", "Bearer");
    const std::string message =
        basic && !token.empty()
            ? "missing or wrong credentials: send 'Authorization: Basic' with the user and "
              "password of http.basic_auth_file, or the bearer token from http.token_file "
              "('Authorization: Bearer <token>')"
        : basic ? "missing or wrong user or password: send 'Authorization: Basic' with the user "
                  "and password of http.basic_auth_file"
                : "missing or wrong bearer token: send 'Authorization: Bearer <token>' with the "
                  "token from http.token_file";
    Logger(o.name)->warn("{} {} refused: missing or wrong credentials", req.method,
                         EscapeControl(req.path));
    SendError(res, 401, message, req.path,
              "org.springframework.security.authentication.BadCredentialsException");
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
                       s->address_,
                       s->basic_           ? " (Basic authentication required)"
                       : s->token_.empty() ? ""
                                           : " (bearer token required)");
  return s;
}

HttpServer::~HttpServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace bud
