// The broker link's state machine (integration-point/engine/broker_link.h) in virtual time: a
// real DEALER over inproc:// to a ROUTER the test holds, a ManualClock for the timers.
#include <catch2/catch.hpp>

#include "tests/ip/support/parts_rig.h"

namespace bud::ip {
namespace {

using rig::Rig;

wire::BrokerMessage WelcomeFor(const std::string& orgnr) {
  wire::BrokerMessage w;
  w.mutable_welcome()->set_orgnr(orgnr);
  return w;
}

// Frames waiting for the link, handed to it as the loop does; returns those for the parts.
std::vector<wire::BrokerMessage> Feed(Rig& r, int wait_ms = 200) {
  std::vector<wire::BrokerMessage> out;
  zmq::pollitem_t item{r.transport->PollHandle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, std::chrono::milliseconds(wait_ms));
  while (auto f = r.transport->TryReceive()) {
    if (auto m = r.link->OnFrame(*f)) out.push_back(*m);
  }
  return out;
}

TEST_CASE("link: starts connecting and says Hello with its orgnr and credit", "[ip][link]") {
  Rig r;
  r.link->Start();
  CHECK(r.link->state() == LinkState::kConnecting);
  CHECK(r.link->last_event() == LinkEvent::kStart);
  CHECK_FALSE(r.link->Tick());
  auto hello = r.broker->NextOf(wire::ClientMessage::kHello);
  REQUIRE(hello);
  CHECK(hello->hello().orgnr() == std::string("0192:") + rig::kMe);
  CHECK(hello->hello().credit() == 8);
  CHECK(hello->protocol_version() == wire::kProtocolVersion);
}

TEST_CASE("link: Hello is resent with doubling back-off until a Welcome", "[ip][link]") {
  Rig r;
  // A long heartbeat, so that the silence rule stays out of the way.
  LinkOptions o{{r.endpoint}, 8, 60'000, 200, 5000};
  DealerTransport t(r.ctx, DealerOptions{std::nullopt, ""});
  BrokerLink link(t, r.clock, r.config.me(), o, r.metrics);
  link.Start();
  std::vector<int64_t> sent_at;
  const int64_t t0 = r.clock.MonoMs();
  for (int ms = 0; ms <= 20'000; ms += 100) {
    link.Tick();
    if (r.broker->NextOf(wire::ClientMessage::kHello, 2)) sent_at.push_back(r.clock.MonoMs() - t0);
    r.clock.Advance(100);
  }
  // At once, then the pause doubles from 200 ms after each Hello, up to 5 s: 400, 800, 1600,
  // 3200, 5000, 5000 ... ms apart.
  REQUIRE(sent_at.size() >= 7);
  CHECK(sent_at[0] == 0);
  CHECK(sent_at[1] - sent_at[0] == 400);
  CHECK(sent_at[2] - sent_at[1] == 800);
  CHECK(sent_at[3] - sent_at[2] == 1600);
  CHECK(sent_at[4] - sent_at[3] == 3200);
  CHECK(sent_at[5] - sent_at[4] == 5000);
  CHECK(sent_at[6] - sent_at[5] == 5000);
  CHECK(link.state() == LinkState::kConnecting);
}

TEST_CASE("link: a Welcome for this organisation makes it ready and calls on_ready", "[ip][link]") {
  Rig r;
  int ready = 0, reset = 0;
  r.link->SetListener({[&] { ++reset; }, [&] { ++ready; }});
  r.Connect();
  CHECK(reset == 1);  // the first socket
  r.broker->Send(WelcomeFor(std::string("0192:") + rig::kMe));
  CHECK(Feed(r).empty());  // the link keeps its own messages
  CHECK(r.link->ready());
  CHECK(r.link->last_event() == LinkEvent::kWelcome);
  CHECK(ready == 1);
  CHECK(r.metrics.broker_connected.load() == 1);
}

TEST_CASE("link: a Welcome for another organisation is not taken", "[ip][link]") {
  Rig r;
  r.Connect();
  r.broker->Send(WelcomeFor(std::string("0192:") + rig::kThird));
  Feed(r);
  CHECK(r.link->state() == LinkState::kConnecting);
  CHECK(r.link->last_event() == LinkEvent::kWrongWelcome);
  CHECK(r.metrics.broker_connected.load() == 0);
}

TEST_CASE("link: heartbeats every heartbeat_ms while ready, none before", "[ip][link]") {
  Rig r;
  r.Connect();
  for (int i = 0; i < 4; ++i) {  // 2 s without a Welcome: Hellos only
    r.clock.Advance(500);
    r.link->Tick();
  }
  r.broker->Drain();
  CHECK(r.broker->heartbeats == 0);
  r.broker->Send(WelcomeFor(std::string("0192:") + rig::kMe));
  Feed(r);
  REQUIRE(r.link->ready());
  for (int i = 0; i < 10; ++i) {  // 5 s, the broker heard every 500 ms
    wire::BrokerMessage hb;
    hb.mutable_heartbeat()->set_at_unix_ms(r.clock.NowMs());
    r.broker->Send(hb);
    Feed(r, 50);
    CHECK(r.link->Tick());
    r.clock.Advance(500);
  }
  r.broker->Drain();
  CHECK(r.broker->heartbeats == 5);
  CHECK(r.metrics.reconnects.load() == 0);  // the broker was heard throughout
  CHECK(r.link->ready());
}

TEST_CASE("link: silence for 3 x heartbeat_ms replaces the socket and says Hello again",
          "[ip][link]") {
  Rig r;
  int resets = 0, readies = 0;
  r.link->SetListener({[&] { ++resets; }, [&] { ++readies; }});
  r.Welcome();
  REQUIRE(readies == 1);
  r.clock.Advance(3000);  // exactly 3 x heartbeat: not yet
  CHECK(r.link->Tick());
  r.clock.Advance(1);
  CHECK_FALSE(r.link->Tick());
  CHECK(r.link->state() == LinkState::kConnecting);
  CHECK(r.link->last_event() == LinkEvent::kSilence);
  CHECK(r.metrics.reconnects.load() == 1);
  CHECK(r.metrics.broker_connected.load() == 0);
  CHECK(resets == 2);
  r.link->Tick();
  CHECK(r.broker->NextOf(wire::ClientMessage::kHello));
  // The broker answers the new connection: ready again.
  r.broker->Send(WelcomeFor(std::string("0192:") + rig::kMe));
  Feed(r);
  CHECK(r.link->ready());
  CHECK(readies == 2);
}

TEST_CASE("link: no Welcome within 3 x heartbeat_ms reconnects too", "[ip][link]") {
  Rig r;
  r.Connect();
  for (int i = 0; i < 31; ++i) {
    r.clock.Advance(100);
    r.link->Tick();
  }
  CHECK(r.link->last_event() == LinkEvent::kSilence);
  CHECK(r.metrics.reconnects.load() == 1);
}

TEST_CASE("link: frames that do not parse do not count as heard", "[ip][link]") {
  Rig r;
  r.Welcome();
  r.clock.Advance(2000);
  zmq::message_t garbage(std::string("\xff\xff not a protobuf"));
  CHECK_FALSE(r.link->OnFrame(garbage).has_value());
  r.clock.Advance(1001);
  CHECK_FALSE(r.link->Tick());
  CHECK(r.link->last_event() == LinkEvent::kSilence);
}

TEST_CASE("link: Refused 'no session' goes back to connecting and says Hello", "[ip][link]") {
  Rig r;
  r.Welcome();
  wire::BrokerMessage refused;
  refused.mutable_refused()->set_reason("no session: send Hello first");
  r.broker->Send(refused);
  Feed(r);
  CHECK(r.link->state() == LinkState::kConnecting);
  CHECK(r.link->last_event() == LinkEvent::kNoSession);
  r.clock.Advance(200);  // the Hello back-off starts over at 200 ms after a Welcome
  r.link->Tick();
  CHECK(r.broker->NextOf(wire::ClientMessage::kHello));
}

TEST_CASE("link: other refusals leave a ready link ready", "[ip][link]") {
  Rig r;
  r.Welcome();
  wire::BrokerMessage refused;
  refused.mutable_refused()->set_reason("malformed frame");
  r.broker->Send(refused);
  Feed(r);
  CHECK(r.link->ready());
}

TEST_CASE("link: messages for the parts are handed back, the link's own are kept", "[ip][link]") {
  Rig r;
  r.Welcome();
  wire::BrokerMessage reply;
  reply.mutable_submit_reply()->set_message_id("m");
  reply.mutable_submit_reply()->set_code(wire::ACCEPTED);
  wire::BrokerMessage hb;
  hb.mutable_heartbeat();
  r.broker->Send(hb);
  r.broker->Send(reply);
  auto got = Feed(r);
  REQUIRE(got.size() == 1);
  CHECK(got[0].has_submit_reply());
  CHECK(got[0].submit_reply().message_id() == "m");
}

TEST_CASE("link: state names for logs", "[ip][link]") {
  CHECK(std::string(LinkStateName(LinkState::kReady)) == "ready");
  CHECK(std::string(LinkStateName(LinkState::kConnecting)) == "connecting");
}

// ---------------------------------------------------------------------------------------------
// A list of broker endpoints: one connection at a time, the next on the silence rule.

// A link over its own transport to two broker ends of the rig's context, heartbeat 1 s.
struct TwoBrokers {
  Rig r;
  std::string second_endpoint = r.endpoint + "-second";
  rig::BrokerEnd second{r.ctx, second_endpoint};
  DealerTransport transport{r.ctx, DealerOptions{std::nullopt, ""}};
  LinkOptions options = [this] {
    LinkOptions o{{r.endpoint, second_endpoint}, 8, 1000, 200, 5000};
    o.backoff_first_ms = 500;
    o.backoff_max_ms = 4000;
    o.jitter_seed = 42;
    return o;
  }();
  BrokerLink link{transport, r.clock, r.config.me(), options, r.metrics};

  // Ticks in 100 ms steps until the link has been silent past 3 x heartbeat_ms.
  void SilenceOnce() {
    const int64_t reconnects = r.metrics.reconnects.load();
    for (int i = 0; i < 100 && r.metrics.reconnects.load() == reconnects; ++i) {
      r.clock.Advance(100);
      link.Tick();
    }
  }
  void WelcomeFrom(rig::BrokerEnd& end) {
    REQUIRE(end.NextOf(wire::ClientMessage::kHello));
    end.Send(WelcomeFor(std::string("0192:") + rig::kMe));
    zmq::pollitem_t item{transport.PollHandle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(1000));
    while (auto f = transport.TryReceive()) (void)link.OnFrame(*f);
  }
};

TEST_CASE("link: with two endpoints, silence moves to the next one and counts a failover",
          "[ip][link][failover]") {
  TwoBrokers t;
  t.link.Start();
  CHECK(t.link.endpoint() == t.r.endpoint);
  t.link.Tick();
  t.WelcomeFrom(*t.r.broker);
  REQUIRE(t.link.ready());
  t.SilenceOnce();  // the first broker stops answering
  CHECK(t.link.last_event() == LinkEvent::kSilence);
  CHECK(t.link.endpoint() == t.second_endpoint);
  CHECK(t.r.metrics.failovers.load() == 1);
  CHECK(t.r.metrics.reconnects.load() == 1);
  CHECK(t.link.hello_wait_ms() == 0);  // the second has not failed: at once
  t.link.Tick();
  t.WelcomeFrom(t.second);  // the Hello went to the second broker, which welcomes us
  CHECK(t.link.ready());
  CHECK(t.link.endpoint() == t.second_endpoint);
  // Nothing more reaches the first broker: one connection at a time.
  CHECK_FALSE(t.r.broker->NextOf(wire::ClientMessage::kHello, 100));
  // The second falls silent: back to the first, whose one failure lets it be tried at once.
  t.SilenceOnce();
  CHECK(t.link.endpoint() == t.r.endpoint);
  CHECK(t.r.metrics.failovers.load() == 2);
  CHECK(t.link.hello_wait_ms() == 0);
}

TEST_CASE("link: an endpoint failing again and again waits a jittered, capped, doubling pause",
          "[ip][link][failover]") {
  Rig r;
  LinkOptions o{{r.endpoint}, 8, 1000, 200, 5000};
  o.backoff_first_ms = 500;
  o.backoff_max_ms = 4000;
  o.jitter_seed = 7;
  DealerTransport transport(r.ctx, DealerOptions{std::nullopt, ""});
  BrokerLink link(transport, r.clock, r.config.me(), o, r.metrics);
  link.Start();
  std::vector<int64_t> waits;
  for (int failure = 1; failure <= 7; ++failure) {
    const int64_t reconnects = r.metrics.reconnects.load();
    for (int i = 0; i < 200 && r.metrics.reconnects.load() == reconnects; ++i) {
      r.clock.Advance(100);
      link.Tick();
    }
    REQUIRE(r.metrics.reconnects.load() == reconnects + 1);
    waits.push_back(link.hello_wait_ms());
    // No Hello during the pause.
    if (waits.back() > 0) {
      r.broker->Drain(20);
      CHECK_FALSE(link.Tick());
      CHECK_FALSE(r.broker->NextOf(wire::ClientMessage::kHello, 50));
    }
  }
  CHECK(r.metrics.failovers.load() == 0);  // one endpoint: reconnects, never failovers
  // Failure 1: at once; then 500, 1000, 2000, 4000, 4000, 4000 ms, each jittered down by at most
  // half.
  const int64_t nominal[] = {0, 500, 1000, 2000, 4000, 4000, 4000};
  for (size_t i = 0; i < waits.size(); ++i) {
    INFO("failure " << i + 1 << " waited " << waits[i]);
    CHECK(waits[i] <= nominal[i]);
    CHECK(waits[i] >= nominal[i] / 2);
  }
  // A Welcome clears the failures: the next silence retries at once.
  r.clock.Advance(waits.back());
  link.Tick();
  REQUIRE(r.broker->NextOf(wire::ClientMessage::kHello));
  r.broker->Send(WelcomeFor(std::string("0192:") + rig::kMe));
  zmq::pollitem_t item{transport.PollHandle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, std::chrono::milliseconds(1000));
  while (auto f = transport.TryReceive()) (void)link.OnFrame(*f);
  REQUIRE(link.ready());
  for (int i = 0; i < 40 && link.ready(); ++i) {
    r.clock.Advance(100);
    link.Tick();
  }
  CHECK(link.hello_wait_ms() == 0);
}

// Batch frames (docs/protocol.md, "Batch").

wire::ClientMessage SubmitOf(const std::string& envelope) {
  auto m = NewClientMessage();
  m.mutable_submit()->set_envelope(envelope);
  return m;
}
wire::ClientMessage ReportOf(const std::string& id) {
  auto m = NewClientMessage();
  m.mutable_report()->set_message_id(id);
  m.mutable_report()->set_status(wire::MOTTATT);
  return m;
}
wire::ClientMessage AckOf(uint64_t notice_id) {
  auto m = NewClientMessage();
  m.mutable_status_ack()->set_notice_id(notice_id);
  return m;
}
// The next frame at the broker end (the test fails when none comes).
wire::ClientMessage Frame(Rig& r) {
  auto m = r.broker->Next();
  REQUIRE(m);
  return *m;
}

TEST_CASE("link: without max_batch_items in the Welcome every item goes at once, alone",
          "[ip][link][batch]") {
  Rig r;
  r.Welcome();
  CHECK(r.link->batches().max_batch_items() == 0);
  std::vector<bool> sent;
  r.link->Queue(SubmitOf("e1"), [&](bool ok) { sent.push_back(ok); });
  r.link->Queue(ReportOf("m1"), [&](bool ok) { sent.push_back(ok); });
  CHECK(r.link->batches().queued() == 0);
  CHECK(sent == std::vector<bool>{true, true});
  auto a = r.broker->Next();
  auto b = r.broker->Next();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->submit().envelope() == "e1");
  CHECK(b->report().message_id() == "m1");
  CHECK(r.metrics.batch_frames.load() == 0);
}

TEST_CASE("link: with max_batch_items, queued items go at Flush in frames of at most that many",
          "[ip][link][batch]") {
  Rig r;
  r.Welcome(3);
  CHECK(r.link->batches().max_batch_items() == 3);
  int sent = 0;
  const auto count = [&](bool ok) { sent += ok ? 1 : 0; };
  r.link->Queue(ReportOf("m1"), count);
  r.link->Queue(SubmitOf("e1"), count);
  CHECK(r.link->batches().queued() == 2);
  CHECK_FALSE(r.broker->Next(50));  // nothing before Flush or a full frame
  r.link->Queue(AckOf(7), count);   // the third: a full frame goes now
  CHECK(r.link->batches().queued() == 0);
  CHECK(sent == 3);
  auto first = r.broker->Next();
  REQUIRE(first);
  REQUIRE(first->has_batch());
  CHECK(first->protocol_version() == wire::kProtocolVersion);
  REQUIRE(first->batch().submits_size() == 1);
  CHECK(first->batch().submits(0).envelope() == "e1");
  REQUIRE(first->batch().reports_size() == 1);
  CHECK(first->batch().reports(0).message_id() == "m1");
  REQUIRE(first->batch().status_acks_size() == 1);
  CHECK(first->batch().status_acks(0).notice_id() == 7);

  for (int i = 0; i < 5; ++i) r.link->Queue(SubmitOf("x" + std::to_string(i)), count);
  CHECK(r.link->batches().queued() == 2);  // 3 went when the frame was full
  r.link->Flush();
  CHECK(sent == 8);
  auto second = r.broker->Next();
  auto third = r.broker->Next();
  REQUIRE(second);
  REQUIRE(third);
  CHECK(second->batch().submits_size() == 3);
  REQUIRE(third->batch().submits_size() == 2);
  CHECK(third->batch().submits(1).envelope() == "x4");  // in the order queued
  r.link->Queue(SubmitOf("alone"), count);
  r.link->Flush();  // one item: a frame of its own, as without batching
  auto alone = r.broker->Next();
  REQUIRE(alone);
  CHECK(alone->submit().envelope() == "alone");
  CHECK(r.metrics.batch_frames.load() == 3);
  CHECK(r.metrics.batch_items.load() == 8);
}

TEST_CASE("link: other messages go at once while items wait; a Batch frame is bounded in bytes",
          "[ip][link][batch]") {
  Rig r;
  r.Welcome(256);
  r.link->Queue(SubmitOf("e1"));
  auto defer = NewClientMessage();
  defer.mutable_defer()->set_message_id("d");
  r.link->Queue(defer);
  auto got = r.broker->Next();
  REQUIRE(got);
  CHECK(got->has_defer());
  CHECK(r.link->batches().queued() == 1);
  r.link->Flush();
  REQUIRE(r.broker->Next());

  const std::string big(kMaxBatchFrameBytes / 2 - 1024, 'b');  // two fit in a frame, not three
  for (int i = 0; i < 3; ++i) r.link->Queue(SubmitOf(big));
  r.link->Queue(SubmitOf(std::string(kMaxBatchFrameBytes + 1, 'h')));  // larger than a frame
  r.link->Flush();
  auto f1 = r.broker->Next();
  auto f2 = r.broker->Next();
  auto f3 = r.broker->Next();
  REQUIRE(f1);
  REQUIRE(f2);
  REQUIRE(f3);
  CHECK(f1->batch().submits_size() == 2);
  CHECK(f2->submit().envelope() == big);  // the next would not fit beside it: alone
  CHECK(f3->submit().envelope().size() == kMaxBatchFrameBytes + 1);  // alone
}

TEST_CASE("link: a Batch refused as too large halves the limit, down to single frames",
          "[ip][link][batch]") {
  Rig r;
  r.Welcome(8);
  for (int i = 0; i < 8; ++i) r.link->Queue(SubmitOf("e"));
  CHECK(Frame(r).batch().submits_size() == 8);
  // The broker's refusal (broker/server.cc, OnBatch): nothing of the frame was stored.
  wire::BrokerMessage refused;
  refused.mutable_refused()->set_reason(
      "a batch of 8 items is more than this broker takes in one frame (5)");
  r.broker->Send(refused);
  Feed(r);
  CHECK(r.link->ready());
  CHECK(r.link->batches().max_batch_items() == 4);
  for (int i = 0; i < 4; ++i) r.link->Queue(SubmitOf("e"));
  CHECK(Frame(r).batch().submits_size() == 4);
  refused.mutable_refused()->set_reason(
      "a batch of 4 items is more than this broker takes in one frame (1)");
  r.broker->Send(refused);
  Feed(r);
  CHECK(r.link->batches().max_batch_items() == 2);
  for (int i = 0; i < 2; ++i) r.link->Queue(SubmitOf("e"));
  CHECK(Frame(r).batch().submits_size() == 2);
  r.broker->Send(refused);
  Feed(r);
  CHECK(r.link->batches().max_batch_items() == 0);  // single frames from now on
  r.link->Queue(SubmitOf("single"));
  CHECK(r.link->batches().queued() == 0);
  CHECK(Frame(r).submit().envelope() == "single");
  // A new Welcome (the broker restarted) says its limit again.
  auto w = WelcomeFor(std::string("0192:") + rig::kMe);
  w.mutable_welcome()->set_max_batch_items(8);
  r.broker->Send(w);
  Feed(r);
  CHECK(r.link->batches().max_batch_items() == 8);
}

TEST_CASE("link: a new socket drops what waits for Flush and forgets the broker's limit",
          "[ip][link][batch]") {
  Rig r;
  r.Welcome(16);
  std::vector<bool> sent;
  r.link->Queue(SubmitOf("e1"), [&](bool ok) { sent.push_back(ok); });
  r.link->Queue(ReportOf("m1"), [&](bool ok) { sent.push_back(ok); });
  r.clock.Advance(3001);  // silence: a new socket
  CHECK_FALSE(r.link->Tick());
  CHECK(r.link->last_event() == LinkEvent::kSilence);
  CHECK(sent == std::vector<bool>{false, false});
  CHECK(r.link->batches().queued() == 0);
  CHECK(r.link->batches().max_batch_items() == 0);
  r.link->Flush();
  auto next = r.broker->Next(100);
  while (next && next->has_hello()) next = r.broker->Next(100);
  CHECK_FALSE(next);  // nothing of the old socket's items
}

}  // namespace
}  // namespace bud::ip
