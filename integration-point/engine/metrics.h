// What the engine's parts count, for /metrics: written by the engine thread, read by HTTP
// threads (atomics only).
#pragma once

#include <atomic>
#include <cstdint>

#include "common/metrics.h"

namespace bud::ip {

struct EngineMetrics {
  std::atomic<int64_t> broker_connected{0};
  // Wall-clock ms of the last frame from the broker (0: none yet), of the registry's last
  // answer (found or not found), and since when it has not answered (0 while it answers).
  std::atomic<int64_t> broker_last_frame_ms{0};
  std::atomic<int64_t> registry_last_answer_ms{0};
  std::atomic<int64_t> registry_unavailable_since_ms{0};
  std::atomic<int64_t> submits{0};  // envelopes sent to the broker (resubmits included)
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<int64_t> retry_later{0};
  std::atomic<int64_t> deliveries{0};    // envelopes the broker delivered to us
  std::atomic<int64_t> redeliveries{0};  // of which already received before
  std::atomic<int64_t> refused{0};       // of which refused (FEIL)
  std::atomic<int64_t> deferred{0};      // answered Defer (inbox or store cannot be written)
  std::atomic<int64_t> reconnects{0};
  std::atomic<int64_t> failovers{0};  // moves to the next broker endpoint (of reconnects)
  // Batch frames sent to the broker and the items they carried (submits, reports, status acks).
  std::atomic<int64_t> batch_frames{0};
  std::atomic<int64_t> batch_items{0};
  std::atomic<int64_t> registry_served_stale{0};  // lookups served from a stale cached entry
  // Bytes of streamed chunk records sent to brokers (uploads, resends included) and received
  // from them (downloads, duplicates included): over a resumed transfer, little more than the
  // stream's size; a transfer that started over would show the part sent twice.
  std::atomic<int64_t> stream_bytes_sent{0};
  std::atomic<int64_t> stream_bytes_received{0};
  metrics::Histogram submit_to_accept{metrics::LatencyBuckets()};
};

}  // namespace bud::ip
