// The same workloads against RabbitMQ and NATS JetStream, started by scripts/bench on 127.0.0.1
// with their data in the bench work folder:
//   RabbitMQ: a quorum queue, persistent messages, publisher confirms (rabbitmq-c); pass-through
//             adds a consumer with prefetch = window that acks each message.
//   NATS:     a JetStream stream with file storage; publish with a reply subject and count the
//             JetStream acks; pass-through adds a push consumer (explicit ack, max_ack_pending =
//             window) that acks each message. Spoken over a plain TCP socket (text protocol).
// Message bodies are LoadSpec::envelope_bytes long; their first 8 bytes carry the send time.
// Scenarios: "ingest", "pass-through", "half-load" (as in scenarios.h). Throws
// std::runtime_error when the peer cannot be reached or misbehaves.
#pragma once

#include <string>

#include "bench/scenarios.h"
#include "bench/stats.h"

namespace bud::bench {

struct Peer {
  std::string system;  // "rabbitmq", "nats", "nats-sync"
  std::string host = "127.0.0.1";
  int port = 0;
  pid_t pid = 0;       // for its peak RSS (0: not reported)
  std::string note;    // e.g. whether it fsyncs before acknowledging
};

// What a peer's run measured, as Figures: in pass-through (`consume`) `completed` deliveries
// by `last_complete_ns`, else `accepted` acknowledgements by `last_accept_ns`, each counted
// from `start_ns` with its latencies; `ack_what` names the acknowledgement ("publisher
// confirm"). Adds the peer's note and the peak RSS of its process `process`.
struct PeerOutcome {
  int64_t start_ns = 0;
  int64_t accepted = 0, last_accept_ns = 0;
  int64_t completed = 0, last_complete_ns = 0;
  Latencies ack_latency, deliver_latency;
  bool saturated = false;  // the open loop could not keep its rate
};
Figures PeerFigures(const Peer& peer, const std::string& scenario, const LoadSpec& spec,
                    bool consume, PeerOutcome& o, const std::string& ack_what,
                    const std::string& process);

bool RabbitMqAvailable();  // built with rabbitmq-c
Figures RunRabbitMq(const Peer& peer, const std::string& scenario, const LoadSpec& spec, int run);
Figures RunNats(const Peer& peer, const std::string& scenario, const LoadSpec& spec, int run);

}  // namespace bud::bench
