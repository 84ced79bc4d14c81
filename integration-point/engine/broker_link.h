// The integration point's link to the broker, as an explicit state machine
// (docs/protocol.md, "Integration point state machine (broker link)"):
//
//   [connecting] --Hello (resent with back-off 200 ms .. 5 s)--> Welcome --> [ready]
//   [ready] or [connecting] --no frame for 3 x heartbeat_ms (kSilence)--> new socket, to the
//     next endpoint of the list --> [connecting]
//   [ready] --Refused "no session" (kNoSession)--> [connecting]   (the broker restarted)
//   [ready] --heartbeat_ms without sending one--> Heartbeat
//
// Endpoints: the link holds one connection at a time, to one endpoint of its list (brokers that
// share one store; any serves any organisation). On the silence rule the endpoint that went
// silent is marked failed and the link moves to the next one (a failover, counted and logged;
// with one endpoint it reconnects to the same). Each endpoint has its own back-off: its first
// failure lets it be tried again at once, each further one doubles a pause (backoff_first_ms ..
// backoff_max_ms, jittered down by up to half so that many points do not return together); a new
// socket to an endpoint still in its pause says its first Hello only when the pause is over, and
// the silence rule counts from then. A Welcome clears the endpoint's failures.
//
// Operation: the loop hands every frame to OnFrame, which keeps the link's own messages
// (Welcome, Heartbeat, Refused) and returns the others for the parts; Tick runs the timers.
// Whoever must forget what it had in flight hears it through Listener: OnReset when the socket
// is replaced, OnReady on Welcome. The link knows nothing of messages, stores or parts.
//
// Batch frames (docs/protocol.md, "Batch"): Queue takes a Submit, Report or StatusAck; to a
// broker whose Welcome announced max_batch_items, queued items wait until Flush (the loop's end
// of turn) and go in Batch frames of at most that many items and kMaxBatchFrameBytes each (an
// item alone goes in a frame of its own, as before); to a broker that announced none, each goes
// at once. Each item's `sent` hears whether the frame carrying it was queued on the socket. A
// broker that refuses a Batch as too large ("a batch of N items is more than ...") lowers the
// limit to half of what was sent: the refused frame's items are lost as any unanswered frame is
// (resent by their parts' timers).
// Concurrency: the engine thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/orgnr.h"
#include "integration-point/engine/broker_transport.h"
#include "integration-point/engine/clock.h"
#include "integration-point/engine/metrics.h"
#include "proto/broker.pb.h"

namespace bud::ip {

enum class LinkState { kConnecting, kReady };
// What moved the link (the last event, for logs and tests).
enum class LinkEvent { kStart, kWelcome, kWrongWelcome, kSilence, kNoSession };

const char* LinkStateName(LinkState s);

struct LinkOptions {
  std::vector<std::string> endpoints;  // at least one; tried in this order
  uint32_t credit = 32;
  int64_t heartbeat_ms = 2000;
  int64_t hello_first_ms = 200;
  int64_t hello_max_ms = 5000;
  int64_t backoff_first_ms = 500;  // an endpoint's pause after its second failure in a row
  int64_t backoff_max_ms = 30000;  // the longest pause
  uint64_t jitter_seed = 0;        // 0: seeded from the clock
  // The point's message channel ("" = none), said in the Hello: the broker's session then takes
  // the deliveries and notices of (organisation, channel) only.
  std::string channel = {};
};

// What waits for the next Batch frame (above, "Batch frames"); the link's part.
class BatchQueue {
 public:
  // `transport` and `metrics` must outlive the queue.
  BatchQueue(BrokerTransport& transport, EngineMetrics& metrics)
      : transport_(transport), metrics_(metrics) {}
  void Queue(wire::ClientMessage msg, std::function<void(bool sent)> sent);
  void Flush();
  // A new socket: what waits is not sent (each item hears `sent` false); no Batch until a
  // Welcome says the limit.
  void Reset();
  // The Welcome's max_batch_items (0 or 1: single frames).
  void SetLimit(uint32_t max_batch_items);
  // The broker refused a Batch as too large: half of the largest one sent, down to single frames.
  void OnTooLarge();
  // Items a Batch frame carries at most now; 0: every item in a frame of its own.
  uint32_t max_batch_items() const { return max_items_; }
  size_t queued() const { return queued_.size(); }

 private:
  struct Queued {
    wire::ClientMessage msg;
    std::function<void(bool)> sent;
  };
  BrokerTransport& transport_;
  EngineMetrics& metrics_;
  uint32_t max_items_ = 0;     // from the Welcome, lowered by a refusal; 0 on a new socket
  uint32_t largest_sent_ = 0;  // the largest Batch sent since the limit was set
  std::vector<Queued> queued_;
};

class BrokerLink {
 public:
  struct Listener {
    std::function<void()> on_reset;  // a new socket: nothing sent before is answered
    std::function<void()> on_ready;  // Welcome: submit and report again
  };

  // `transport`, `clock` and `metrics` must outlive the link.
  BrokerLink(BrokerTransport& transport, const Clock& clock, Orgnr me, LinkOptions options,
             EngineMetrics& metrics);
  BrokerLink(const BrokerLink&) = delete;
  BrokerLink& operator=(const BrokerLink&) = delete;

  void SetListener(Listener listener) { listener_ = std::move(listener); }
  // kStart: connects a new socket; [connecting].
  void Start();
  // A frame from the broker: anything heard counts against the silence rule. Returns the
  // message when it is for the parts (not Welcome, Heartbeat or Refused); empty otherwise.
  std::optional<wire::BrokerMessage> OnFrame(const zmq::message_t& frame);
  // Timers: the silence rule, Hello with back-off, heartbeats. True when the link is ready
  // and was not replaced in this tick (the loop's other timers run then).
  bool Tick();
  bool Send(const wire::ClientMessage& msg) { return transport_.Send(msg); }
  // A Submit, Report or StatusAck, sent at once or in the next Flush's Batch frames (above).
  // `sent` (may be empty) runs with whether the frame carrying it was queued on the socket.
  void Queue(wire::ClientMessage msg, std::function<void(bool sent)> sent = {}) {
    batches_.Queue(std::move(msg), std::move(sent));
  }
  // Sends what Queue holds, in frames of at most max_batch_items items.
  void Flush() { batches_.Flush(); }
  const BatchQueue& batches() const { return batches_; }
  LinkState state() const { return state_; }
  bool ready() const { return state_ == LinkState::kReady; }
  LinkEvent last_event() const { return last_event_; }
  BrokerTransport& transport() { return transport_; }
  // The endpoint the current socket is connected to.
  const std::string& endpoint() const { return options_.endpoints[current_]; }
  // Its pause before the first Hello, from now (0 when none); for tests and logs.
  int64_t hello_wait_ms() const;

 private:
  void Reconnect(LinkEvent why);
  void OnWelcome(const wire::Welcome& welcome);
  void SendHello(int64_t now);
  // The pause after an endpoint's `failures`-th failure in a row, jittered.
  int64_t BackoffMs(int failures);

  struct EndpointState {
    int failures = 0;             // silences in a row since its last Welcome
    int64_t not_before_mono = 0;  // no Hello to it before this
  };

  BrokerTransport& transport_;
  const Clock& clock_;
  const Orgnr me_;
  LinkOptions options_;  // endpoints never empty (a "" stands in for a missing list)
  EngineMetrics& metrics_;
  Listener listener_;
  LinkState state_ = LinkState::kConnecting;
  LinkEvent last_event_ = LinkEvent::kStart;
  int64_t last_heard_mono_ = 0;
  int64_t last_heartbeat_mono_ = 0;
  int64_t last_hello_mono_ = 0;
  int64_t hello_backoff_ms_;
  std::vector<EndpointState> endpoints_;
  size_t current_ = 0;
  int64_t hello_not_before_mono_ = 0;
  std::mt19937_64 jitter_;
  BatchQueue batches_;
};

// A Batch frame's items together at most this many bytes (a larger item goes alone): well below
// the frame limit and the broker's max_batch_bytes (what one of its turns reads, at least 1 MiB
// and a frame whole), so a Batch does not take a broker's turn alone.
inline constexpr size_t kMaxBatchFrameBytes = 4u << 20;

// A ClientMessage with the protocol version set.
wire::ClientMessage NewClientMessage();

}  // namespace bud::ip
