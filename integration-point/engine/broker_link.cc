// See broker_link.h.
#include "integration-point/engine/broker_link.h"

#include <fmt/format.h>

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
      hello_backoff_ms_(options_.hello_first_ms),
      jitter_(options_.jitter_seed != 0
                  ? options_.jitter_seed
                  : static_cast<uint64_t>(clock_.MonoMs()) ^ std::random_device{}()),
      batches_(transport, metrics) {
  if (options_.endpoints.empty()) options_.endpoints.push_back("");  // Load refuses this
  endpoints_.resize(options_.endpoints.size());
}

void BrokerLink::Start() { Reconnect(LinkEvent::kStart); }

int64_t BrokerLink::BackoffMs(int failures) {
  if (failures <= 1) return 0;  // the first retry at once: the broker may only have restarted
  int64_t pause = options_.backoff_first_ms;
  for (int i = 2; i < failures && pause < options_.backoff_max_ms; ++i) pause *= 2;
  pause = std::min(pause, options_.backoff_max_ms);
  // Down by up to half, so that points that lost one broker together do not come back together.
  std::uniform_int_distribution<int64_t> down(0, pause / 2);
  return pause - down(jitter_);
}

int64_t BrokerLink::hello_wait_ms() const {
  return std::max<int64_t>(0, hello_not_before_mono_ - clock_.MonoMs());
}

void BrokerLink::Reconnect(LinkEvent why) {
  const int64_t now = clock_.MonoMs();
  if (why == LinkEvent::kSilence) {
    EndpointState& failed = endpoints_[current_];
    ++failed.failures;
    failed.not_before_mono = now + BackoffMs(failed.failures);
    if (endpoints_.size() > 1) {
      const std::string& from = endpoint();
      current_ = (current_ + 1) % endpoints_.size();
      metrics_.failovers.fetch_add(1, std::memory_order_relaxed);
      Log()->warn("broker {} silent ({} failure(s) in a row): moving to broker {} ({} of {}){}",
                  from, failed.failures, endpoint(), current_ + 1, endpoints_.size(),
                  endpoints_[current_].not_before_mono > now
                      ? fmt::format(", after its back-off of {} ms",
                                    endpoints_[current_].not_before_mono - now)
                      : "");
    } else if (failed.not_before_mono > now) {
      Log()->warn("broker {} silent {} times in a row: trying again in {} ms", endpoint(),
                  failed.failures, failed.not_before_mono - now);
    }
  }
  batches_.Reset();
  transport_.Connect(endpoint());
  state_ = LinkState::kConnecting;
  last_event_ = why;
  metrics_.broker_connected.store(0);
  last_hello_mono_ = 0;
  hello_not_before_mono_ = std::max(now, endpoints_[current_].not_before_mono);
  last_heard_mono_ = hello_not_before_mono_;  // the silence rule starts with the first Hello
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
      } else if (msg.refused().reason().starts_with("a batch of") &&
                 batches_.max_batch_items() > 0) {
        // It takes fewer than its Welcome said. What the refused frame carried is resent by its
        // parts' timers.
        batches_.OnTooLarge();
        Log()->warn("broker {} refused a Batch frame as too large: at most {} item(s) a frame now",
                    endpoint(), std::max<uint32_t>(batches_.max_batch_items(), 1));
      }
      return std::nullopt;
    case wire::BrokerMessage::kDeliver:
    case wire::BrokerMessage::kDeliverStream:
    case wire::BrokerMessage::kStatusNotice:
      // Only a session this point was welcomed to carries its traffic: after a wrong Welcome
      // (another organisation, or a broker that left our message channel out) it may be
      // another mailbox's, which must stay queued for the point it belongs to.
      if (last_event_ == LinkEvent::kWrongWelcome) return std::nullopt;
      return msg;
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
  if (welcome.channel() != options_.channel) {
    // A broker that does not know message channels binds the session to the organisation's
    // point without one: its deliveries are not ours (docs/protocol.md, "Message channels").
    Log()->error(
        "broker {} bound this connection to message channel '{}', not '{}' (a broker "
        "without message channels? upgrade it); its deliveries are not taken",
        endpoint(), welcome.channel().substr(0, 64), options_.channel);
    last_event_ = LinkEvent::kWrongWelcome;
    return;
  }
  state_ = LinkState::kReady;
  last_event_ = LinkEvent::kWelcome;
  batches_.SetLimit(welcome.max_batch_items());
  metrics_.broker_connected.store(1);
  hello_backoff_ms_ = options_.hello_first_ms;
  endpoints_[current_] = EndpointState{};
  Log()->info("connected to broker {} as {}", endpoint(), me_.wire());
  if (listener_.on_ready) listener_.on_ready();
}

void BrokerLink::SendHello(int64_t now) {
  auto hello = NewClientMessage();
  hello.mutable_hello()->set_orgnr(me_.wire());
  hello.mutable_hello()->set_credit(options_.credit);
  hello.mutable_hello()->set_channel(options_.channel);
  if (last_hello_mono_ != 0 && hello_backoff_ms_ >= 8 * options_.hello_first_ms) {
    // The first few go unremarked (a broker starting); after that an operator should see it.
    Log()->warn("no Welcome from broker {} yet; sending Hello again", endpoint());
  }
  Send(hello);
  last_hello_mono_ = now;
  hello_backoff_ms_ = std::min<int64_t>(hello_backoff_ms_ * 2, options_.hello_max_ms);
}

void BatchQueue::SetLimit(uint32_t max_batch_items) {
  // A Batch of one is a single frame: 1 and 0 both mean single frames.
  max_items_ = max_batch_items > 1 ? max_batch_items : 0;
  largest_sent_ = 0;
}

void BatchQueue::OnTooLarge() {
  max_items_ = std::min(max_items_, std::max<uint32_t>(largest_sent_ / 2, 1));
  if (max_items_ == 1) max_items_ = 0;
  largest_sent_ = 0;
}

void BatchQueue::Queue(wire::ClientMessage msg, std::function<void(bool)> sent) {
  const auto body = msg.body_case();
  const bool batchable = body == wire::ClientMessage::kSubmit ||
                         body == wire::ClientMessage::kReport ||
                         body == wire::ClientMessage::kStatusAck;
  if (max_items_ == 0 || !batchable) {
    const bool ok = transport_.Send(msg);
    if (sent) sent(ok);
    return;
  }
  queued_.push_back({std::move(msg), std::move(sent)});
  if (queued_.size() >= max_items_) Flush();
}

void BatchQueue::Flush() {
  std::vector<Queued> queued;
  queued.swap(queued_);
  size_t begin = 0;
  while (begin < queued.size()) {
    // One frame: as many items as the limits allow (at least one).
    size_t end = begin;
    size_t bytes = 0;
    while (end < queued.size() && end - begin < std::max<uint32_t>(max_items_, 1)) {
      const size_t size = queued[end].msg.ByteSizeLong();
      if (end > begin && bytes + size > kMaxBatchFrameBytes) break;
      bytes += size;
      ++end;
    }
    bool ok;
    if (end - begin == 1) {
      ok = transport_.Send(queued[begin].msg);
    } else {
      auto frame = NewClientMessage();
      wire::Batch* batch = frame.mutable_batch();
      // The broker handles a Batch's submits, then its reports, then its acks: each kind keeps
      // its order, and no kind depends on another's in one turn.
      for (size_t i = begin; i < end; ++i) {
        wire::ClientMessage& m = queued[i].msg;
        switch (m.body_case()) {
          case wire::ClientMessage::kSubmit:
            batch->add_submits()->Swap(m.mutable_submit());
            break;
          case wire::ClientMessage::kReport:
            batch->add_reports()->Swap(m.mutable_report());
            break;
          case wire::ClientMessage::kStatusAck:
            batch->add_status_acks()->Swap(m.mutable_status_ack());
            break;
          default:
            break;  // Queue sends the others at once
        }
      }
      ok = transport_.Send(frame);
      if (ok) {
        const auto items = static_cast<uint32_t>(end - begin);
        largest_sent_ = std::max(largest_sent_, items);
        metrics_.batch_frames.fetch_add(1, std::memory_order_relaxed);
        metrics_.batch_items.fetch_add(items, std::memory_order_relaxed);
      }
    }
    for (size_t i = begin; i < end; ++i) {
      if (queued[i].sent) queued[i].sent(ok);
    }
    begin = end;
  }
}

void BatchQueue::Reset() {
  max_items_ = 0;
  largest_sent_ = 0;
  std::vector<Queued> dropped;
  dropped.swap(queued_);
  for (auto& q : dropped) {
    if (q.sent) q.sent(false);
  }
}

bool BrokerLink::Tick() {
  const int64_t now = clock_.MonoMs();
  if (now < hello_not_before_mono_) return false;  // this endpoint's back-off
  if (now - last_heard_mono_ > 3 * options_.heartbeat_ms) {
    // Silent (or, before a Welcome, unanswered) that long: start over with a new socket.
    Log()->warn("{} broker {} for {} ms; reconnecting",
                ready() ? "nothing from" : "no Welcome from", endpoint(), now - last_heard_mono_);
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
