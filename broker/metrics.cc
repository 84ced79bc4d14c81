// The broker's /metrics and /healthz. See metrics.h.
#include "broker/metrics.h"

#include <fmt/format.h>

#include "common/clock.h"
#include "broker/store_factory.h"

namespace bud::broker {

BrokerHttp::BrokerHttp(const Config& config, const BrokerMetrics& metrics)
    : config_(config), metrics_(metrics) {}

Status BrokerHttp::Start() {
  BUD_ASSIGN_OR_RETURN(server_, HttpServer::Start(config_.http, [this](httplib::Server& srv) {
    srv.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(Metrics(), metrics::kContentType);
    });
    // For a load balancer or a supervisor: can this broker do its job? Its loop turns, and its
    // store is reachable and takes writes (PostgreSQL: a primary, not a standby).
    srv.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      const int64_t alive = metrics_.loop_alive_mono_ms.load();
      const bool loop_up = alive != 0 && MonoMs() - alive < 5000;
      std::string store_name;
      const Status store = CheckStore(&store_name);
      std::string reason;
      if (!loop_up)
        reason = alive == 0 ? "the broker is not serving yet" : "the loop is stuck";
      else if (!store.ok())
        reason = store.message();
      SendJson(res,
               {{"status", reason.empty() ? "UP" : "DOWN"},
                {"broker_id", metrics_.broker_id},
                {"store", store_name},
                {"store_writable", store.ok()},
                {"reason", reason},
                {"sessions", metrics_.sessions.load()}},
               reason.empty() ? 200 : 503);
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

Status BrokerHttp::CheckStore(std::string* describe) {
  std::lock_guard lock(reader_mu_);
  if (!reader_) {
    auto reader = OpenQueueReader(config_);
    if (!reader.ok()) return reader.status();
    reader_ = std::move(*reader);
  }
  *describe = reader_->Describe();
  return reader_->CheckWritable();
}

std::string BrokerHttp::Metrics() {
  metrics::Writer w;
  Result<StoreStats> stats = Status(Code::kNotFound, "no store yet");
  {
    std::lock_guard lock(reader_mu_);
    if (!reader_) {
      auto reader = OpenQueueReader(config_);
      if (reader.ok()) reader_ = std::move(*reader);
      else stats = reader.status();
    }
    // Without the history counts: those scan every message ever seen.
    if (reader_) stats = reader_->Stats(/*count_history=*/false);
  }
  const int64_t now = NowMs();
  w.Family("bud_broker_up", "gauge", "1 while the broker's loop turns, 0 otherwise.");
  const int64_t alive = metrics_.loop_alive_mono_ms.load();
  w.Sample("bud_broker_up", alive != 0 && MonoMs() - alive < 5000 ? 1 : 0);
  w.Family("bud_broker_store_readable", "gauge", "1 when this scrape could read the store.");
  w.Sample("bud_broker_store_readable", stats.ok() ? 1 : 0);
  static const StoreStats kEmpty;
  const StoreStats& st = stats.ok() ? *stats : kEmpty;
  w.Family("bud_broker_messages_queued", "gauge",
           "Messages stored and not yet acknowledged by their receiver (all receivers).");
  w.Sample("bud_broker_messages_queued", static_cast<double>(st.queued));
  w.Family("bud_broker_notices_pending", "gauge",
           "Status notices not yet acknowledged by their sender (all senders).");
  w.Sample("bud_broker_notices_pending", static_cast<double>(st.notices));
  auto per_receiver = [&](const char* name, const char* help, auto value) {
    w.Family(name, "gauge", help);
    for (const auto& q : st.receivers) {
      // A receiver's point with a message channel has its own queue (and label).
      if (q.channel.empty()) {
        w.Sample(name, {{"receiver", q.receiver}}, static_cast<double>(value(q)));
      } else {
        w.Sample(name, {{"receiver", q.receiver}, {"channel", q.channel}},
                 static_cast<double>(value(q)));
      }
    }
  };
  per_receiver("bud_broker_queue_depth", "Messages waiting for each receiver.",
               [](const ReceiverStats& q) { return q.queued; });
  per_receiver("bud_broker_queue_bytes", "Envelope bytes waiting for each receiver.",
               [](const ReceiverStats& q) { return q.bytes; });
  per_receiver("bud_broker_queue_oldest_age_seconds",
               "Age of the oldest message waiting for each receiver.",
               [now](const ReceiverStats& q) { return (now - q.oldest_received_ms) / 1000.0; });
  per_receiver("bud_broker_queue_retried",
               "Messages waiting for each receiver that had at least one failed delivery.",
               [](const ReceiverStats& q) { return q.retried; });
  w.Family("bud_broker_sessions", "gauge",
           "Connected integration points: the sessions (and their leases) this broker holds.");
  w.Sample("bud_broker_sessions", static_cast<double>(metrics_.sessions.load()));
  w.Family("bud_broker_session", "gauge",
           "1 for each mailbox (organisation, or organisation/channel) whose integration point has "
           "a session on this broker.");
  for (const auto& org : metrics_.SessionOrgs()) w.Sample("bud_broker_session", {{"org", org}}, 1);
  w.Family("bud_broker_submits_refused_total", "counter",
           "Submits refused, by reason: REJECTED (envelope, too_large, routing, id_conflict) or "
           "RETRY_LATER at a full queue (queue_full).");
  for (const auto& [reason, v] :
       {std::pair<const char*, const std::atomic<int64_t>*>{"envelope", &metrics_.rejected_envelope},
        {"too_large", &metrics_.rejected_too_large},
        {"routing", &metrics_.rejected_routing},
        {"id_conflict", &metrics_.rejected_id_conflict},
        {"queue_full", &metrics_.queue_full}}) {
    w.Sample("bud_broker_submits_refused_total", {{"reason", reason}},
             static_cast<double>(v->load(std::memory_order_relaxed)));
  }
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
  counter("bud_broker_commits_unknown_total",
          "Group commits whose outcome the store could not tell (connection lost mid-commit); "
          "their batch was not answered.",
          metrics_.commits_unknown);
  counter("bud_broker_queue_full_total",
          "Submits answered RETRY_LATER because a receiver's or a sender's queue is at its cap.",
          metrics_.queue_full);
  counter("bud_broker_registry_served_stale_total",
          "CURVE key lookups (ZAP) answered from a cached registry entry past its cache time "
          "because no registry answered.",
          *metrics_.registry_served_stale);
  counter("bud_broker_uploads_dropped_total",
          "Streamed uploads dropped with their spool: expired, or no chunk for upload_idle_ms.",
          metrics_.uploads_dropped);
  counter("bud_broker_session_takeovers_total",
          "Hellos that took a live session lease over from another broker.",
          metrics_.session_takeovers);
  counter("bud_broker_sessions_lost_total",
          "Sessions dropped because their lease went to another broker or could not be renewed.",
          metrics_.sessions_lost);
  counter("bud_broker_wakeups_total",
          "Wake-ups (NOTIFY) for sessions here from commits, this broker's or another's.",
          metrics_.wakeups);
  counter("bud_broker_history_pruned_total",
          "Message ids forgotten (seen and reports rows) after retention_ms.", metrics_.pruned);
  auto gauge = [&](const char* name, const char* help, const std::atomic<int64_t>& v) {
    w.Family(name, "gauge", help);
    w.Sample(name, static_cast<double>(v.load(std::memory_order_relaxed)));
  };
  gauge("bud_broker_uploads_open", "Streamed uploads in progress.", metrics_.uploads_open);
  gauge("bud_broker_upload_fds", "Streamed uploads holding an open spool file descriptor.",
        metrics_.upload_fds);
  gauge("bud_broker_spool_bytes",
        "Bytes of spool files, reserved for uploads in progress or held by queued messages.",
        metrics_.spool_bytes);
  if (metrics_.id_index_in_memory.load(std::memory_order_relaxed) >= 0) {
    gauge("bud_broker_id_index_in_memory",
          "Message ids of recent commits held in memory until a merge writes them to the id "
          "index file (submits are refused once it reaches 8 merges' worth).",
          metrics_.id_index_in_memory);
    counter("bud_broker_id_index_merges_total", "Merges of ids into the id index file.",
            metrics_.id_index_merges);
    counter("bud_broker_id_index_merge_failures_total",
            "Merges into the id index file that failed (retried; the ids stay in memory).",
            metrics_.id_index_merge_failures);
    counter("bud_broker_id_index_level_merges_total",
            "Merges of a level's runs of the id index file into one run of the next.",
            metrics_.id_index_level_merges);
    counter("bud_broker_id_index_file_reads_total",
            "Id lookups that read the id index file (its filter could not rule the id out).",
            metrics_.id_index_file_reads);
    gauge("bud_broker_id_index_filter_ready",
          "1 when the filter before the id index file is built, 0 while it is (re)built.",
          metrics_.id_index_filter_ready);
  }
  w.Histogram("bud_broker_submit_to_accept_seconds",
              "From a submit's arrival to its ACCEPTED, group commit included.",
              metrics_.submit_to_accept);
  w.Histogram("bud_broker_commit_seconds", "Duration of one group commit (fsync included).",
              metrics_.commit_seconds);
  return w.text();
}

}  // namespace bud::broker
