// What the broker counts for /metrics (written by the server thread, read by HTTP threads),
// and the broker's HTTP endpoints: /metrics (Prometheus text) and /healthz.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "broker/config.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "broker/queue_store.h"

namespace bud::broker {

struct BrokerMetrics {
  std::atomic<int64_t> loop_alive_mono_ms{0};  // last turn of the server loop (0: not serving)
  std::atomic<int64_t> sessions{0};
  std::atomic<int64_t> submits{0};
  std::atomic<int64_t> accepted{0};            // stored (new) or already stored (duplicate)
  std::atomic<int64_t> duplicates{0};
  std::atomic<int64_t> rejected{0};
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
  // ZAP key lookups answered from a stale cached entry while no registry answered; shared with
  // the ZAP handler's lookup thread, which may outlive this struct by a moment.
  std::shared_ptr<std::atomic<int64_t>> registry_served_stale =
      std::make_shared<std::atomic<int64_t>>(0);
  metrics::Histogram submit_to_accept{metrics::LatencyBuckets()};  // frame in -> ACCEPTED out
  metrics::Histogram commit_seconds{metrics::LatencyBuckets()};    // one group commit
};

// Serves /metrics and /healthz per config.http_*; the store is read through its own read-only
// opening of the store's read side (QueueStoreReader), made at the first scrape.
class BrokerHttp {
 public:
  BrokerHttp(const Config& config, const BrokerMetrics& metrics);
  Status Start();

 private:
  std::string Metrics();
  const Config& config_;
  const BrokerMetrics& metrics_;
  std::mutex reader_mu_;
  std::unique_ptr<QueueStoreReader> reader_;
  std::unique_ptr<HttpServer> server_;  // last: stops before the rest goes
};

}  // namespace bud::broker
