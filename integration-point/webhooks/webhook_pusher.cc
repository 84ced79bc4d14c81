// Pushing webhook events. See webhook_pusher.h.
#include "integration-point/webhooks/webhook_pusher.h"

#include <algorithm>
#include <set>

#include "common/log.h"
#include "integration-point/store/point_store.h"
#include "integration-point/webhooks/webhook_events.h"
#include "integration-point/webhooks/webhook_filter.h"

namespace bud::ip::webhooks {

namespace {
constexpr int64_t kBatch = 100;
constexpr int64_t kLogEveryMs = 60000;  // a failing subscriber is logged at most this often
}  // namespace

void PingEndpoint(const std::string& url, const WebhookOptions& options, WebhookMetrics& metrics,
                  int64_t now_ms) {
  UrlPusher pusher(PushTimeouts{options.connect_timeout_ms, options.read_timeout_ms});
  Status st = pusher.Push(url, PingJson(now_ms).dump());
  if (st.ok()) {
    ++metrics.pings_ok;
    Logger("webhooks")->info("ping to {} answered", url);
  } else {
    ++metrics.pings_failed;
    Logger("webhooks")->warn("ping to {} failed: {} (the subscription is kept)", url, st.message());
  }
}

WebhookPusher::WebhookPusher(std::string store_path, WebhookOptions options,
                             WebhookMetrics& metrics, std::function<int64_t()> now)
    : store_path_(std::move(store_path)),
      options_(options),
      metrics_(metrics),
      now_(std::move(now)) {}

WebhookPusher::~WebhookPusher() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
  for (auto& [id, w] : workers_) StopWorker(*w);
}

Status WebhookPusher::Start() {
  BUD_ASSIGN_OR_RETURN(auto store, PointStore::Open(store_path_));
  store_ = std::make_unique<api::SharedStore>(std::move(store));
  supervisor_ = std::thread([this] { Supervise(); });
  return Status::Ok();
}

void WebhookPusher::Wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void WebhookPusher::StopWorker(Worker& w) {
  {
    std::lock_guard lock(w.mu);
    w.stop = true;
  }
  w.cv.notify_all();
  w.pusher.Cancel();
  if (w.thread.joinable()) w.thread.join();
}

bool WebhookPusher::Pause(Worker& w, int64_t ms) {
  std::unique_lock lock(w.mu);
  w.cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return w.stop; });
  return !w.stop;
}

void WebhookPusher::Supervise() {
  for (;;) {
    Reconcile();
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(options_.poll_ms),
                 [this] { return stopping_ || woken_; });
    if (stopping_) return;
    woken_ = false;
  }
}

void WebhookPusher::Reconcile() {
  auto listed = store_->Run([&](PointStore& s) {
    return s.subscriptions.List(0, std::max<int64_t>(options_.max_subscriptions, 1) * 2);
  });
  if (!listed.ok()) {
    Logger("webhooks")->warn("cannot read the subscriptions: {}", listed.status().ToString());
    return;
  }
  std::set<int64_t> ids;
  for (const auto& s : listed->items) ids.insert(s.id);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (!ids.count(it->first) || it->second->done) {
      StopWorker(*it->second);
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  for (int64_t id : ids) {
    if (workers_.count(id)) continue;
    auto w = std::make_unique<Worker>(
        PushTimeouts{options_.connect_timeout_ms, options_.read_timeout_ms});
    Worker& ref = *w;
    w->thread = std::thread([this, id, &ref] { RunSubscription(id, ref); });
    workers_.emplace(id, std::move(w));
  }
}

void WebhookPusher::RunSubscription(int64_t id, Worker& w) {
  auto log = Logger("webhooks");
  w.backoff_ms = options_.backoff_ms;
  for (;;) {
    auto sub = store_->Run([&](PointStore& s) { return s.subscriptions.Get(id); });
    if (!sub.ok()) {
      log->warn("subscription {}: cannot read it: {}", id, sub.status().ToString());
      if (!Pause(w, options_.poll_ms)) break;
      continue;
    }
    if (!*sub) break;  // deleted
    const SubscriptionRow& s = **sub;
    auto events = store_->Run(
        [&](PointStore& p) { return p.subscriptions.EventsAfter(s.pushed_through, kBatch); });
    if (!events.ok()) {
      log->warn("subscription {}: cannot read the history: {}", id, events.status().ToString());
      if (!Pause(w, options_.poll_ms)) break;
      continue;
    }
    if (events->empty()) {
      if (!Pause(w, options_.poll_ms)) break;
      continue;
    }
    if (!PushBatch(s, *events, w)) {
      if (!Pause(w, w.backoff_ms)) break;
      w.backoff_ms = std::min(w.backoff_ms * 2, options_.backoff_max_ms);
    }
  }
  if (w.failing) --metrics_.failing;
  w.done = true;
}

bool WebhookPusher::PushBatch(const SubscriptionRow& s, const std::vector<StatusEventRow>& events,
                              Worker& w) {
  auto log = Logger("webhooks");
  auto parts = ParseFilter(s.filter);  // checked when stored; a bad one passes nothing
  int64_t handled = s.pushed_through;
  int64_t stored = s.pushed_through;  // the cursor as the store has it
  auto advance = [&] {
    Status moved =
        store_->Run([&](PointStore& p) { return p.subscriptions.Advance(s.id, handled); });
    if (moved.ok()) stored = handled;
    if (!moved.ok()) log->warn("subscription {}: cursor: {}", s.id, moved.ToString());
  };
  for (const auto& e : events) {
    if (!parts.ok() || !Matches(*parts, e)) {
      handled = e.history_id;
      continue;
    }
    if (now_() - e.at_ms > options_.give_up_after_ms) {
      ++metrics_.dropped;
      log->error(
          "subscription {} '{}' ({}): status {} of message {} dropped: not pushed within "
          "give_up_after_ms",
          s.id, s.name, s.push_endpoint, e.status, e.message_id);
      handled = e.history_id;
      continue;
    }
    Status pushed = w.pusher.Push(s.push_endpoint, StatusEventJson(e).dump());
    if (!pushed.ok()) {
      Failed(s, e, pushed, w);
      if (handled > stored) advance();
      return false;
    }
    ++metrics_.pushed;
    handled = e.history_id;
    advance();
    if (w.failing) {
      w.failing = false;
      --metrics_.failing;
      log->info("subscription {} '{}' ({}): pushing again after {} failed attempt(s)", s.id, s.name,
                s.push_endpoint, w.failures);
    }
    w.failures = 0;
    w.backoff_ms = options_.backoff_ms;
  }
  if (handled > stored) advance();
  return true;
}

void WebhookPusher::Failed(const SubscriptionRow& s, const StatusEventRow& e, const Status& why,
                           Worker& w) {
  ++metrics_.failed;
  ++w.failures;
  if (!w.failing) {
    w.failing = true;
    ++metrics_.failing;
  }
  const int64_t now = now_();
  if (w.failures == 1 || now - w.logged_ms >= kLogEveryMs) {
    w.logged_ms = now;
    Logger("webhooks")
        ->warn(
            "subscription {} '{}' ({}): push of status {} of message {} failed ({} attempt(s) "
            "so far): {}; retrying in {} ms",
            s.id, s.name, s.push_endpoint, e.status, e.message_id, w.failures, why.message(),
            w.backoff_ms);
  }
}

}  // namespace bud::ip::webhooks
