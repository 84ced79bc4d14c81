// What the broker counts for /metrics (written by the server thread, read by HTTP threads),
// and the broker's HTTP endpoints: /metrics (Prometheus text), /healthz (the loop turns) and
// /health (the loop turns and the store is reachable and writable).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "broker/config.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "broker/queue_store.h"

namespace bud::broker {

struct BrokerMetrics {
  std::string broker_id;                       // set before the HTTP threads start, then fixed
  std::atomic<int64_t> loop_alive_mono_ms{0};  // last turn of the server loop (0: not serving)
  std::atomic<int64_t> sessions{0};
  std::atomic<int64_t> submits{0};
  std::atomic<int64_t> accepted{0};            // stored (new) or already stored (duplicate)
  std::atomic<int64_t> duplicates{0};
  std::atomic<int64_t> rejected{0};
  // Of the rejected, by reason (the label of bud_broker_submits_refused_total; queue_full below
  // counts the RETRY_LATERs of a full queue).
  std::atomic<int64_t> rejected_envelope{0};     // not an envelope, or its header unreadable
  std::atomic<int64_t> rejected_too_large{0};    // over max_envelope_bytes: to be streamed
  std::atomic<int64_t> rejected_routing{0};      // sender, receiver or expiry not acceptable
  std::atomic<int64_t> rejected_id_conflict{0};  // the id is another organisation's
  std::atomic<int64_t> retry_later{0};
  std::atomic<int64_t> deliveries{0};          // first deliveries
  std::atomic<int64_t> redeliveries{0};        // after an ack timeout or a reconnect
  std::atomic<int64_t> reports{0};
  std::atomic<int64_t> notices{0};             // status notices sent to senders
  std::atomic<int64_t> expired{0};             // LEVETID_UTLOPT
  std::atomic<int64_t> exhausted{0};           // FEIL after max_attempts
  std::atomic<int64_t> commits{0};
  std::atomic<int64_t> commits_unknown{0};     // commits whose outcome was unknown (not answered)
  std::atomic<int64_t> queue_full{0};          // RETRY_LATER: a receiver's or sender's queue cap
  std::atomic<int64_t> uploads_open{0};        // streamed uploads in progress (at the last sweep)
  std::atomic<int64_t> upload_fds{0};          // of them, holding a spool descriptor
  std::atomic<int64_t> uploads_dropped{0};     // expired or idle uploads swept
  std::atomic<int64_t> spool_bytes{0};         // reserved or held by spool files
  std::atomic<int64_t> pruned{0};              // message ids forgotten after the retention
  std::atomic<int64_t> session_takeovers{0};   // Hellos that took a live lease from another broker
  std::atomic<int64_t> sessions_lost{0};       // sessions dropped: their lease went elsewhere
  std::atomic<int64_t> wakeups{0};             // wake-ups from other brokers' commits
  // The store's id index (IdIndexStats), as the loop last published it; -1: the store has none.
  std::atomic<int64_t> id_index_in_memory{-1};
  std::atomic<int64_t> id_index_merges{0};
  std::atomic<int64_t> id_index_merge_failures{0};
  std::atomic<int64_t> id_index_level_merges{0};
  std::atomic<int64_t> id_index_file_reads{0};
  std::atomic<int64_t> id_index_filter_ready{0};
  // The organisations with a session here, as the loop last published them (SetSessionOrgs).
  void SetSessionOrgs(std::vector<std::string> orgs) {
    std::lock_guard lock(session_orgs_mu);
    session_orgs = std::move(orgs);
  }
  std::vector<std::string> SessionOrgs() const {
    std::lock_guard lock(session_orgs_mu);
    return session_orgs;
  }
  mutable std::mutex session_orgs_mu;
  std::vector<std::string> session_orgs;
  // ZAP key lookups answered from a stale cached entry while no registry answered; shared with
  // the ZAP handler's lookup thread, which may outlive this struct by a moment.
  std::shared_ptr<std::atomic<int64_t>> registry_served_stale =
      std::make_shared<std::atomic<int64_t>>(0);
  metrics::Histogram submit_to_accept{metrics::LatencyBuckets()};  // frame in -> ACCEPTED out
  metrics::Histogram commit_seconds{metrics::LatencyBuckets()};    // one group commit
};

// Serves /metrics, /healthz and /health per config.http_*; the store is read through its own
// read-only opening of the store's read side (QueueStoreReader), made at the first scrape.
class BrokerHttp {
 public:
  BrokerHttp(const Config& config, const BrokerMetrics& metrics);
  Status Start();

 private:
  std::string Metrics();
  // Ok when the store is reachable and writable; *describe names it.
  Status CheckStore(std::string* describe);
  const Config& config_;
  const BrokerMetrics& metrics_;
  std::mutex reader_mu_;
  std::unique_ptr<QueueStoreReader> reader_;
  std::unique_ptr<HttpServer> server_;  // last: stops before the rest goes
};

}  // namespace bud::broker
