// The webhook pusher's settings ([webhooks] in the config, defaults here) and counters
// (/metrics). See webhook_pusher.h.
#pragma once

#include <atomic>
#include <cstdint>

namespace bud::ip::webhooks {

// [webhooks] in the config (defaults here).
struct WebhookOptions {
  int64_t connect_timeout_ms = 10000;             // connect_timeout_ms (eFormidling's default)
  int64_t read_timeout_ms = 10000;                // read_timeout_ms
  int64_t poll_ms = 500;                          // poll_ms: how often an idle subscription looks
  int64_t backoff_ms = 1000;                      // backoff_ms: the first pause after a failed push
  int64_t backoff_max_ms = 60000;                 // backoff_max_ms: the longest
  int64_t give_up_after_ms = 24 * 3600 * 1000ll;  // give_up_after_ms: an event's age at most
  int64_t max_subscriptions = 50;                 // max_subscriptions: more are refused (400)
};

// For /metrics: written by the pusher's threads and the ping, read by HTTP threads.
struct WebhookMetrics {
  std::atomic<int64_t> pushed{0};   // events a subscriber took (2xx)
  std::atomic<int64_t> failed{0};   // push attempts that failed (each retry counts)
  std::atomic<int64_t> dropped{0};  // events given up (older than give_up_after_ms)
  std::atomic<int64_t> pings_ok{0};
  std::atomic<int64_t> pings_failed{0};
  std::atomic<int64_t> failing{0};  // subscriptions whose last push failed
};

}  // namespace bud::ip::webhooks
