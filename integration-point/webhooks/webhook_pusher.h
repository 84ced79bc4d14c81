// Pushes webhook events to the subscribers of /api/subscriptions (docs/http-api.md,
// "Webhooks").
//
// Operation: every new status line of a message (written by the engine or the HTTP API, each in
// the same transaction as the status) is an event; a subscription's cursor in the store
// (subscription_store.h) says which it has had, so nothing is handed from the engine's thread
// and events not yet pushed survive a restart. One thread per subscription pushes its events in
// history order (so in order per message), each through a UrlPusher with connect and read
// timeouts; a failed push is retried with doubling back-off (backoff_ms up to backoff_max_ms)
// until it succeeds or the status is older than give_up_after_ms, when it is dropped (counted
// and logged). A subscriber that is down or hangs holds only its own thread. Delivery is at
// least once: a push answered after the read timeout, or one whose cursor move was lost to a
// crash, is pushed again, with the same `eventId`.
//
// Concurrency: a supervisor thread starts and stops the subscription threads (every poll_ms, or
// at once on Wake); all of them share one store connection of their own behind a mutex (as the
// HTTP API's, api/shared_store.h), held for each store call and never during a push.
// Limitations: the subscription threads poll the history every poll_ms when idle.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "integration-point/api/shared_store.h"
#include "integration-point/webhooks/url_pusher.h"
#include "integration-point/webhooks/webhook_options.h"

namespace bud::ip::webhooks {

// POSTs the ping event to `url` once, within the options' timeouts, on the caller's thread;
// counts and logs its outcome. Never fails: eFormidling creates the subscription whatever the ping
// met.
void PingEndpoint(const std::string& url, const WebhookOptions& options, WebhookMetrics& metrics,
                  int64_t now_ms);

class WebhookPusher {
 public:
  // `store_path`: the point's store (a connection of its own is opened); `now`: wall-clock ms.
  WebhookPusher(std::string store_path, WebhookOptions options, WebhookMetrics& metrics,
                std::function<int64_t()> now);
  ~WebhookPusher();  // stops every thread (cancelling pushes in flight) and joins them
  WebhookPusher(const WebhookPusher&) = delete;
  WebhookPusher& operator=(const WebhookPusher&) = delete;

  Status Start();
  // The subscriptions changed: start or stop their threads now rather than at the next poll.
  void Wake();

 private:
  struct Worker {
    explicit Worker(PushTimeouts t) : pusher(t) {}
    UrlPusher pusher;
    std::mutex mu;
    std::condition_variable cv;
    bool stop = false;  // guarded by mu
    std::atomic<bool> done{false};
    std::thread thread;
    // The worker thread's own: the current streak of failed pushes.
    bool failing = false;
    int64_t failures = 0;
    int64_t logged_ms = 0;  // when the streak was last logged
    int64_t backoff_ms = 0;
  };

  void Supervise();
  void Reconcile();
  void RunSubscription(int64_t id, Worker& w);
  // Pushes `events` (after s.pushed_through, in order) that pass the filter and moves the cursor
  // past those handled; false when a push failed (the rest wait for the retry).
  bool PushBatch(const SubscriptionRow& s, const std::vector<StatusEventRow>& events, Worker& w);
  void Failed(const SubscriptionRow& s, const StatusEventRow& e, const Status& why, Worker& w);
  // Sleeps `ms` unless told to stop; false when stopping.
  static bool Pause(Worker& w, int64_t ms);
  static void StopWorker(Worker& w);

  const std::string store_path_;
  const WebhookOptions options_;
  WebhookMetrics& metrics_;
  std::function<int64_t()> now_;
  std::unique_ptr<api::SharedStore> store_;
  std::map<int64_t, std::unique_ptr<Worker>> workers_;  // supervisor thread only
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  bool woken_ = false;     // guarded by mu_
  std::thread supervisor_;
};

}  // namespace bud::ip::webhooks
