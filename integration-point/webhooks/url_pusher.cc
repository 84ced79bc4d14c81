// Pushes to a subscriber. See url_pusher.h.
#include "integration-point/webhooks/url_pusher.h"

#include <fmt/format.h>
#include <httplib.h>

#include <cctype>

namespace bud::ip::webhooks {

namespace {
constexpr size_t kMaxUrlBytes = 2048;

Status Bad(const std::string& url, const std::string& why) {
  return Status(Code::kInvalidArgument, fmt::format("pushEndpoint \"{}\": {}", url, why));
}

bool HostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}
}  // namespace

Result<PushUrl> ParsePushUrl(const std::string& url) {
  if (url.size() > kMaxUrlBytes) return Bad(url.substr(0, 64) + "...", "longer than 2048 bytes");
  for (unsigned char c : url) {
    if (c <= 0x20 || c >= 0x7f) return Bad(url, "has a space, control or non-ASCII character");
  }
  size_t colon = url.find("://");
  if (colon == std::string::npos) return Bad(url, "must be an absolute http:// or https:// URL");
  std::string scheme = url.substr(0, colon);
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "http" && scheme != "https") {
    return Bad(url, "only http and https are pushed to");
  }
  const size_t host_at = colon + 3;
  size_t end = url.find_first_of("/?#", host_at);
  if (end == std::string::npos) end = url.size();
  std::string authority = url.substr(host_at, end - host_at);
  if (authority.find('@') != std::string::npos) {
    return Bad(url, "a user name or password in the URL is not supported");
  }
  std::string host = authority, port;
  if (!authority.empty() && authority[0] == '[') {  // an IPv6 literal
    size_t close = authority.find(']');
    if (close == std::string::npos) return Bad(url, "an unclosed IPv6 literal");
    host = authority.substr(0, close + 1);
    std::string rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return Bad(url, "junk after the IPv6 literal");
      port = rest.substr(1);
    }
    for (char c : host.substr(1, host.size() - 2)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
        return Bad(url, "a malformed IPv6 literal");
      }
    }
  } else {
    size_t p = authority.rfind(':');
    if (p != std::string::npos) {
      host = authority.substr(0, p);
      port = authority.substr(p + 1);
    }
    for (char c : host) {
      if (!HostChar(c)) return Bad(url, "the host name has a character a host name cannot have");
    }
  }
  if (host.empty() || host == "[]") return Bad(url, "has no host");
  if (authority.find(':') != std::string::npos && authority.back() != ']') {
    if (port.empty() || port.size() > 5) return Bad(url, "a port must be 1 to 65535");
    for (char c : port) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return Bad(url, "the port is not a number");
    }
    const long n = std::stol(port);
    if (n < 1 || n > 65535) return Bad(url, "a port must be 1 to 65535");
  }
  std::string path = url.substr(end);
  if (size_t hash = path.find('#'); hash != std::string::npos) path.resize(hash);
  if (path.empty() || path[0] != '/') path = "/" + path;
  return PushUrl{scheme + "://" + authority, path};
}

Status UrlPusher::Push(const std::string& url, const std::string& json) {
  BUD_ASSIGN_OR_RETURN(PushUrl target, ParsePushUrl(url));
  httplib::Client client(target.origin);
  const auto connect = std::chrono::milliseconds(timeouts_.connect_ms);
  const auto read = std::chrono::milliseconds(timeouts_.read_ms);
  client.set_connection_timeout(connect);
  client.set_read_timeout(read);
  client.set_write_timeout(read);
  client.set_follow_location(false);
  client.set_keep_alive(false);
  {
    std::lock_guard lock(mu_);
    if (cancelled_) return Status(Code::kUnavailable, "stopped");
    in_flight_ = &client;
  }
  auto res = client.Post(target.path, json, "application/json");
  {
    std::lock_guard lock(mu_);
    in_flight_ = nullptr;
  }
  if (!res) {
    return Status(Code::kUnavailable,
                  fmt::format("no answer: {}", httplib::to_string(res.error())));
  }
  if (res->status < 200 || res->status > 299) {
    return Status(Code::kUnavailable, fmt::format("answered HTTP {}", res->status));
  }
  return Status::Ok();
}

void UrlPusher::Cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  if (in_flight_) in_flight_->stop();
}

}  // namespace bud::ip::webhooks
