// The broker's /metrics and /healthz. See metrics.h.
#include "broker/metrics.h"

#include <fmt/format.h>

#include "common/clock.h"
#include "common/fs.h"

namespace bud::broker {

BrokerHttp::BrokerHttp(const Config& config, const BrokerMetrics& metrics)
    : config_(config), metrics_(metrics) {}

Status BrokerHttp::Start() {
  BUD_ASSIGN_OR_RETURN(server_, HttpServer::Start(config_.http, [this](httplib::Server& srv) {
    srv.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(Metrics(), metrics::kContentType);
    });
    srv.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      const int64_t alive = metrics_.loop_alive_mono_ms.load();
      const int64_t age = alive == 0 ? -1 : MonoMs() - alive;
      const bool up = alive != 0 && age < 5000;
      SendJson(res,
               {{"status", up ? "UP" : "DOWN"},
                {"loop", alive == 0 ? "not serving yet" : fmt::format("last turn {} ms ago", age)},
                {"sessions", metrics_.sessions.load()}},
               up ? 200 : 503);
    });
  }));
  return Status::Ok();
}

std::string BrokerHttp::Metrics() {
  metrics::Writer w;
  struct Queue {
    std::string receiver;
    int64_t count, bytes, oldest_ms, retried;
  };
  std::vector<Queue> queues;
  std::string store_error;
  {
    std::lock_guard lock(db_mu_);
    if (!db_ && Exists(config_.store)) {
      storage::Db::Options ro;
      ro.read_only = true;
      ro.synchronous_full = false;
      auto db = storage::Db::Open(config_.store, ro);
      if (db.ok()) db_ = std::move(*db);
      else store_error = db.status().ToString();
    }
    if (db_) {
      auto st = db_->Prepare(
          "SELECT receiver, count(*), sum(length(envelope)), min(received_ms), "
          "sum(attempts > 0) FROM messages GROUP BY receiver");
      if (st.ok()) {
        for (;;) {
          auto row = (*st)->Step();
          if (!row.ok()) {
            store_error = row.status().ToString();
            break;
          }
          if (!*row) break;
          queues.push_back({(*st)->Text(0), (*st)->Int(1), (*st)->Int(2), (*st)->Int(3),
                            (*st)->Int(4)});
        }
      } else {
        store_error = st.status().ToString();
      }
    }
  }
  const int64_t now = NowMs();
  int64_t total = 0;
  for (const auto& q : queues) total += q.count;
  w.Family("bud_broker_up", "gauge", "1 while the broker's loop turns, 0 otherwise.");
  const int64_t alive = metrics_.loop_alive_mono_ms.load();
  w.Sample("bud_broker_up", alive != 0 && MonoMs() - alive < 5000 ? 1 : 0);
  w.Family("bud_broker_store_readable", "gauge", "1 when this scrape could read the store.");
  w.Sample("bud_broker_store_readable", store_error.empty() && db_ ? 1 : 0);
  w.Family("bud_broker_messages_queued", "gauge",
           "Messages stored and not yet acknowledged by their receiver (all receivers).");
  w.Sample("bud_broker_messages_queued", static_cast<double>(total));
  w.Family("bud_broker_queue_depth", "gauge", "Messages waiting for each receiver.");
  for (const auto& q : queues) {
    w.Sample("bud_broker_queue_depth", {{"receiver", q.receiver}}, static_cast<double>(q.count));
  }
  w.Family("bud_broker_queue_bytes", "gauge", "Envelope bytes waiting for each receiver.");
  for (const auto& q : queues) {
    w.Sample("bud_broker_queue_bytes", {{"receiver", q.receiver}}, static_cast<double>(q.bytes));
  }
  w.Family("bud_broker_queue_oldest_age_seconds", "gauge",
           "Age of the oldest message waiting for each receiver.");
  for (const auto& q : queues) {
    w.Sample("bud_broker_queue_oldest_age_seconds", {{"receiver", q.receiver}},
             static_cast<double>(now - q.oldest_ms) / 1000.0);
  }
  w.Family("bud_broker_queue_retried", "gauge",
           "Messages waiting for each receiver that had at least one failed delivery.");
  for (const auto& q : queues) {
    w.Sample("bud_broker_queue_retried", {{"receiver", q.receiver}}, static_cast<double>(q.retried));
  }
  w.Family("bud_broker_sessions", "gauge", "Connected integration points.");
  w.Sample("bud_broker_sessions", static_cast<double>(metrics_.sessions.load()));
  auto counter = [&](const char* name, const char* help, const std::atomic<int64_t>& v) {
    w.Family(name, "counter", help);
    w.Sample(name, static_cast<double>(v.load(std::memory_order_relaxed)));
  };
  counter("bud_broker_submits_total", "Submits received.", metrics_.submits);
  counter("bud_broker_accepted_total", "Submits answered ACCEPTED (after their commit).",
          metrics_.accepted);
  counter("bud_broker_duplicates_total", "Of the accepted, ids already stored (not stored twice).",
          metrics_.duplicates);
  counter("bud_broker_rejected_total", "Submits answered REJECTED.", metrics_.rejected);
  counter("bud_broker_retry_later_total", "Submits answered RETRY_LATER (store full or failing).",
          metrics_.retry_later);
  counter("bud_broker_deliveries_total", "First deliveries to receivers.", metrics_.deliveries);
  counter("bud_broker_redeliveries_total",
          "Deliveries repeated after an ack timeout or a reconnect.", metrics_.redeliveries);
  counter("bud_broker_reports_total", "Receiver reports (MOTTATT, LEVERT, FEIL ...) taken.",
          metrics_.reports);
  counter("bud_broker_notices_total", "Status notices sent to senders.", metrics_.notices);
  counter("bud_broker_expired_total", "Messages ended LEVETID_UTLOPT by the sweep.",
          metrics_.expired);
  counter("bud_broker_exhausted_total", "Messages ended FEIL after max_attempts deliveries.",
          metrics_.exhausted);
  counter("bud_broker_commits_total", "Group commits (fsynced transactions).", metrics_.commits);
  w.Histogram("bud_broker_submit_to_accept_seconds",
              "From a submit's arrival to its ACCEPTED, group commit included.",
              metrics_.submit_to_accept);
  w.Histogram("bud_broker_commit_seconds", "Duration of one group commit (fsync included).",
              metrics_.commit_seconds);
  return w.text();
}

}  // namespace bud::broker
