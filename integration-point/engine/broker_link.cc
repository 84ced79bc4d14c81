// See broker_link.h.
#include "integration-point/engine/broker_link.h"

#include <algorithm>

#include "common/log.h"
#include "common/wire/zmq.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }
}  // namespace

const char* LinkStateName(LinkState s) { return s == LinkState::kReady ? "ready" : "connecting"; }

wire::ClientMessage NewClientMessage() {
  wire::ClientMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  return m;
}

BrokerLink::BrokerLink(BrokerTransport& transport, const Clock& clock, Orgnr me,
                       LinkOptions options, EngineMetrics& metrics)
    : transport_(transport),
      clock_(clock),
      me_(std::move(me)),
      options_(std::move(options)),
      metrics_(metrics),
      hello_backoff_ms_(options_.hello_first_ms) {}

void BrokerLink::Start() { Reconnect(LinkEvent::kStart); }

void BrokerLink::Reconnect(LinkEvent why) {
  transport_.Connect();
  state_ = LinkState::kConnecting;
  last_event_ = why;
  metrics_.broker_connected.store(0);
  last_hello_mono_ = 0;
  last_heard_mono_ = clock_.MonoMs();
  if (listener_.on_reset) listener_.on_reset();
}

std::optional<wire::BrokerMessage> BrokerLink::OnFrame(const zmq::message_t& frame) {
  wire::BrokerMessage msg;
  Status parsed = wire::ParseProto(frame, msg, "BrokerMessage");
  if (!parsed.ok()) {
    Log()->warn("from broker: {}", parsed.message());
    return std::nullopt;
  }
  last_heard_mono_ = clock_.MonoMs();
  switch (msg.body_case()) {
    case wire::BrokerMessage::kWelcome:
      OnWelcome(msg.welcome());
      return std::nullopt;
    case wire::BrokerMessage::kHeartbeat:
      return std::nullopt;
    case wire::BrokerMessage::kRefused:
      Log()->warn("broker refused: {}", msg.refused().reason());
      if (msg.refused().reason().starts_with("no session")) {
        state_ = LinkState::kConnecting;
        last_event_ = LinkEvent::kNoSession;
      }
      return std::nullopt;
    default:
      return msg;
  }
}

void BrokerLink::OnWelcome(const wire::Welcome& welcome) {
  if (welcome.orgnr() != me_.wire()) {
    Log()->error("broker bound this connection to {}, not {}", welcome.orgnr(), me_.wire());
    last_event_ = LinkEvent::kWrongWelcome;
    return;
  }
  state_ = LinkState::kReady;
  last_event_ = LinkEvent::kWelcome;
  metrics_.broker_connected.store(1);
  hello_backoff_ms_ = options_.hello_first_ms;
  Log()->info("connected to broker {} as {}", options_.endpoint, me_.wire());
  if (listener_.on_ready) listener_.on_ready();
}

void BrokerLink::SendHello(int64_t now) {
  auto hello = NewClientMessage();
  hello.mutable_hello()->set_orgnr(me_.wire());
  hello.mutable_hello()->set_credit(options_.credit);
  if (last_hello_mono_ != 0 && hello_backoff_ms_ >= 8 * options_.hello_first_ms) {
    // The first few go unremarked (a broker starting); after that an operator should see it.
    Log()->warn("no Welcome from broker {} yet; sending Hello again", options_.endpoint);
  }
  Send(hello);
  last_hello_mono_ = now;
  hello_backoff_ms_ = std::min<int64_t>(hello_backoff_ms_ * 2, options_.hello_max_ms);
}

bool BrokerLink::Tick() {
  const int64_t now = clock_.MonoMs();
  if (now - last_heard_mono_ > 3 * options_.heartbeat_ms) {
    // Silent (or, before a Welcome, unanswered) that long: start over with a new socket.
    Log()->warn("{} broker {} for {} ms; reconnecting",
                ready() ? "nothing from" : "no Welcome from", options_.endpoint,
                now - last_heard_mono_);
    metrics_.reconnects.fetch_add(1, std::memory_order_relaxed);
    Reconnect(LinkEvent::kSilence);
    return false;
  }
  if (!ready()) {
    if (now - last_hello_mono_ >= hello_backoff_ms_) SendHello(now);
    return false;
  }
  if (now - last_heartbeat_mono_ >= options_.heartbeat_ms) {
    auto hb = NewClientMessage();
    hb.mutable_heartbeat()->set_at_unix_ms(clock_.NowMs());
    Send(hb);
    last_heartbeat_mono_ = now;
  }
  return true;
}

}  // namespace bud::ip
