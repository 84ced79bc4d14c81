// One POST of a JSON body to a subscriber's push endpoint, with a bound on every wait: the
// connection (connect_ms) and each read and write (read_ms). Redirects are not followed.
//
// Operation: one UrlPusher per thread that pushes; Cancel may be called from any other thread
// and ends the push in flight at once (used when the point stops or the subscription goes).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "common/status.h"

namespace httplib {
class Client;
}

namespace bud::ip::webhooks {

// A push endpoint split for the HTTP client: "http://host:port" and the path with its query.
struct PushUrl {
  std::string origin;
  std::string path;
};

// kInvalidArgument unless `url` is an absolute http or https URL with a host name (or an IP
// literal), an optional port, and no user name or password, spaces or control characters.
Result<PushUrl> ParsePushUrl(const std::string& url);

struct PushTimeouts {
  int64_t connect_ms = 10000;
  int64_t read_ms = 10000;
};

class UrlPusher {
 public:
  explicit UrlPusher(PushTimeouts timeouts) : timeouts_(timeouts) {}
  UrlPusher(const UrlPusher&) = delete;
  UrlPusher& operator=(const UrlPusher&) = delete;

  // POSTs `json` (Content-Type application/json) to `url`: Ok on a 2xx answer; otherwise
  // kUnavailable saying what happened ("HTTP 500", "connection refused or timed out").
  Status Push(const std::string& url, const std::string& json);
  // Ends a push in flight now (it fails) and every later one.
  void Cancel();

 private:
  PushTimeouts timeouts_;
  std::mutex mu_;
  httplib::Client* in_flight_ = nullptr;  // guarded by mu_; owned by Push's frame
  bool cancelled_ = false;                // guarded by mu_
};

}  // namespace bud::ip::webhooks
