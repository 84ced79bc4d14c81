// The integration point's link to the broker, as an explicit state machine
// (docs/protocol.md, "Integration point state machine (broker link)"):
//
//   [connecting] --Hello (resent with back-off 200 ms .. 5 s)--> Welcome --> [ready]
//   [ready] or [connecting] --no frame for 3 x heartbeat_ms (kSilence)--> new socket -->
//   [connecting] [ready] --Refused "no session" (kNoSession)--> [connecting]   (the broker
//   restarted) [ready] --heartbeat_ms without sending one--> Heartbeat
//
// Operation: the loop hands every frame to OnFrame, which keeps the link's own messages
// (Welcome, Heartbeat, Refused) and returns the others for the parts; Tick runs the timers.
// Whoever must forget what it had in flight hears it through Listener: OnReset when the socket
// is replaced, OnReady on Welcome. The link knows nothing of messages, stores or parts.
// Concurrency: the engine thread. Limitations: one broker endpoint.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
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
  std::string endpoint;  // for log lines
  uint32_t credit = 32;
  int64_t heartbeat_ms = 2000;
  int64_t hello_first_ms = 200;
  int64_t hello_max_ms = 5000;
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
  LinkState state() const { return state_; }
  bool ready() const { return state_ == LinkState::kReady; }
  LinkEvent last_event() const { return last_event_; }
  BrokerTransport& transport() { return transport_; }

 private:
  void Reconnect(LinkEvent why);
  void OnWelcome(const wire::Welcome& welcome);
  void SendHello(int64_t now);

  BrokerTransport& transport_;
  const Clock& clock_;
  const Orgnr me_;
  const LinkOptions options_;
  EngineMetrics& metrics_;
  Listener listener_;
  LinkState state_ = LinkState::kConnecting;
  LinkEvent last_event_ = LinkEvent::kStart;
  int64_t last_heard_mono_ = 0;
  int64_t last_heartbeat_mono_ = 0;
  int64_t last_hello_mono_ = 0;
  int64_t hello_backoff_ms_;
};

// A ClientMessage with the protocol version set.
wire::ClientMessage NewClientMessage();

}  // namespace bud::ip
