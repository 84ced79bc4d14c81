// Several bud-broker processes on one PostgreSQL store (issue 17, the broker part), as real
// processes: a real PostgreSQL 15 started by the test, two or three brokers sharing its database
// (ExchangeOptions::extra_brokers), the registry for ZAP, and integration points driven by hand
// over CURVE with the agencies' real keys (no bud-ip: the receiving point's dedup would hide a
// double delivery, and these tests count what the brokers alone hand out).
//
// What they show: messages submitted on some brokers reach a receiver on another one, each
// exactly once, promptly (the brokers' fallback polling is set to a minute, so only the
// LISTEN/NOTIFY wake-up can deliver in time); a receiver that says Hello on another broker while
// the first lives is served there at once and the first hands out nothing more (its lease is
// fenced); a broker SIGKILLed while holding a receiver is taken over by the receiver's Hello on
// another one; /health answers 200 while the store is writable and 503 when PostgreSQL stops.
//
// The same hand-driven links show Batch frames on one broker over SQLite (the last test).
//
// Envelopes are not sealed: the broker routes on the cleartext header and never opens payloads
// (bench/broker_link.h does the same). Every wait has a deadline.
#include <httplib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/crypto/openssl.h"
#include "common/uuid.h"
#include "common/wire/curve.h"
#include "common/wire/zmq.h"
#include "proto/broker.pb.h"
#include "proto/envelope.pb.h"
#include "tests/integration/harness.h"
#include "tests/support/postgres.h"

namespace bud::test {
namespace {

using SteadyClock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr const char* kAgencyC = "991825827";

std::string Wire(const std::string& org) { return "0192:" + org; }

zmq::context_t& Context() {
  static zmq::context_t ctx(1);
  return ctx;
}

// A small envelope the broker routes: every header field valid, signature and payload filler.
std::string Envelope(const std::string& from, const std::string& to, std::string* id) {
  *id = NewUuid();
  wire::Header h;
  h.set_version(1);
  h.set_message_id(*id);
  h.set_conversation_id(NewUuid());
  h.set_sender(Wire(from));
  h.set_receiver(Wire(to));
  h.set_process(kProcess);
  h.set_document_type(kDocumentType);
  h.set_recipient_cert_sha256(std::string(32, '\x11'));
  h.set_created_unix_ms(NowMs());
  h.set_expires_unix_ms(NowMs() + 3600 * 1000);
  wire::Envelope env;
  env.set_payload("payload of " + *id);
  h.set_payload_size(env.payload().size());
  h.set_payload_sha256(crypto::Sha256(env.payload()));
  env.set_header(h.SerializeAsString());
  env.set_signature(std::string(256, '\x5a'));
  env.set_signer_cert_sha256(std::string(32, '\x22'));
  return env.SerializeAsString();
}

// One integration point's connection to one broker, driven by hand: Hello, Submit, Report,
// heartbeats while it pumps. Records every delivery it gets (message id, when). Owns its socket.
class Link {
 public:
  // With `auto_ack`, every delivery is answered MOTTATT as it arrives, from the first one: a
  // delivery can come in the same read as the Welcome.
  Link(Exchange& ex, const std::string& org, size_t broker, uint32_t credit = 16,
       bool auto_ack = false)
      : ex_(ex), org_(org), sock_(Context(), zmq::socket_type::dealer), auto_ack_(auto_ack) {
    sock_.set(zmq::sockopt::linger, 0);
    auto keys = wire::LoadCurveKeyFile(ex.CurveKeyFile(org));
    if (!keys.ok()) throw HarnessError("CURVE key of " + org + ": " + keys.status().ToString());
    wire::MakeCurveClient(sock_, *keys, ex.broker_public_key());
    sock_.connect(ex.broker_endpoint(broker));
    Live().insert(this);
    wire::ClientMessage m = Msg();
    m.mutable_hello()->set_orgnr(Wire(org));
    m.mutable_hello()->set_credit(credit);
    Send(m);
    if (!Pump(kDefaultWait, [&] { return welcomed_; })) {
      Live().erase(this);
      throw HarnessError("no Welcome for " + org + " from broker " + std::to_string(broker) + "\n" +
                         ex_.Diagnostics());
    }
  }

  void Submit(const std::string& envelope) {
    wire::ClientMessage m = Msg();
    m.mutable_submit()->set_envelope(envelope);
    Send(m);
  }
  // Any message, as built by the test (a Batch, for one).
  void SendMessage(const wire::ClientMessage& m) { Send(m); }
  static wire::ClientMessage NewMessage() { return Msg(); }
  // MOTTATT for a delivered message.
  void Ack(const std::string& id) {
    wire::ClientMessage m = Msg();
    m.mutable_report()->set_message_id(id);
    m.mutable_report()->set_status(wire::MOTTATT);
    m.mutable_report()->set_at_unix_ms(NowMs());
    Send(m);
  }

  // Reads and answers until `done` or the timeout; false at the timeout. Every other live link
  // is served too (heartbeats, frames), so that no session goes silent while one link waits.
  bool Pump(Millis timeout, const std::function<bool()>& done) {
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
      if (done()) return true;
      if (SteadyClock::now() >= deadline) return false;
      std::vector<zmq::pollitem_t> items;
      std::vector<Link*> links(Live().begin(), Live().end());
      for (Link* l : links) {
        l->Beat();
        items.push_back({l->sock_.handle(), 0, ZMQ_POLLIN, 0});
      }
      zmq::poll(items.data(), items.size(), Millis(50));
      for (Link* l : links) l->Drain();
    }
  }
  // Pumps for `d` whatever comes.
  void PumpFor(Millis d) {
    (void)Pump(d, [] { return false; });
  }

  // Every delivery in order of arrival.
  const std::vector<std::string>& delivered() const { return delivered_; }
  size_t DeliveredCount(const std::string& id) const {
    return static_cast<size_t>(std::count(delivered_.begin(), delivered_.end(), id));
  }
  const std::map<std::string, wire::SubmitCode>& replies() const { return replies_; }
  const std::set<std::string>& acked() const { return acked_; }
  // Deliveries of a message whose MOTTATT the broker had already confirmed.
  const std::vector<std::string>& after_ack() const { return after_ack_; }
  bool refused_no_session() const { return refused_no_session_; }
  const std::vector<std::string>& refusals() const { return refusals_; }
  uint32_t max_batch_items() const { return max_batch_items_; }
  // Notices are acknowledged one by one as they come, unless turned off; their ids are kept.
  void set_auto_notice_ack(bool on) { auto_notice_ack_ = on; }
  const std::vector<uint64_t>& notices() const { return notices_; }
  void set_auto_ack(bool on) { auto_ack_ = on; }
  void set_heartbeats(bool on) { heartbeats_ = on; }

  ~Link() { Live().erase(this); }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

 private:
  // The links alive in this test (the test's thread only).
  static std::set<Link*>& Live() {
    static std::set<Link*> live;
    return live;
  }
  void Beat() {
    const auto now = SteadyClock::now();
    if (welcomed_ && heartbeats_ && now - last_heartbeat_ >= Millis(300)) {
      wire::ClientMessage hb = Msg();
      hb.mutable_heartbeat()->set_at_unix_ms(NowMs());
      Send(hb);
      last_heartbeat_ = now;
    }
  }
  void Drain() {
    zmq::message_t frame;
    while (sock_.recv(frame, zmq::recv_flags::dontwait)) Take(frame);
  }
  static wire::ClientMessage Msg() {
    wire::ClientMessage m;
    m.set_protocol_version(wire::kProtocolVersion);
    return m;
  }
  void Send(const wire::ClientMessage& m) {
    const std::string bytes = m.SerializeAsString();
    if (!sock_.send(zmq::buffer(bytes), zmq::send_flags::dontwait)) {
      throw HarnessError("link of " + org_ + ": send would block");
    }
  }
  void Take(const zmq::message_t& frame) {
    wire::BrokerMessage m;
    if (!m.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
      throw HarnessError("a broker sent an unparseable frame");
    }
    switch (m.body_case()) {
      case wire::BrokerMessage::kWelcome:
        welcomed_ = true;
        max_batch_items_ = m.welcome().max_batch_items();
        last_heartbeat_ = SteadyClock::now();
        break;
      case wire::BrokerMessage::kSubmitReply:
        replies_[m.submit_reply().message_id()] = m.submit_reply().code();
        break;
      case wire::BrokerMessage::kDeliver: {
        wire::Envelope env;
        wire::Header h;
        if (!env.ParseFromString(m.deliver().envelope()) || !h.ParseFromString(env.header())) {
          throw HarnessError("a delivery that does not parse");
        }
        const std::string& id = h.message_id();
        if (acked_.contains(id)) after_ack_.push_back(id);
        delivered_.push_back(id);
        if (auto_ack_) Ack(id);
        break;
      }
      case wire::BrokerMessage::kReportReply:
        if (m.report_reply().ok()) acked_.insert(m.report_reply().message_id());
        break;
      case wire::BrokerMessage::kStatusNotice: {
        notices_.push_back(m.status_notice().notice_id());
        if (!auto_notice_ack_) break;
        wire::ClientMessage ack = Msg();
        ack.mutable_status_ack()->set_notice_id(m.status_notice().notice_id());
        Send(ack);
        break;
      }
      case wire::BrokerMessage::kRefused:
        if (m.refused().reason().starts_with("no session")) refused_no_session_ = true;
        refusals_.push_back(m.refused().reason());
        break;
      default:
        break;
    }
  }

  Exchange& ex_;
  std::string org_;
  zmq::socket_t sock_;
  bool welcomed_ = false;
  bool auto_ack_ = false;
  bool heartbeats_ = true;
  bool refused_no_session_ = false;
  bool auto_notice_ack_ = true;
  uint32_t max_batch_items_ = 0;
  std::vector<std::string> refusals_;
  std::vector<uint64_t> notices_;
  SteadyClock::time_point last_heartbeat_{};
  std::vector<std::string> delivered_;
  std::vector<std::string> after_ack_;
  std::set<std::string> acked_;
  std::map<std::string, wire::SubmitCode> replies_;
};

// Submits `n` messages from `link` to `to`; returns their ids once all are ACCEPTED.
std::vector<std::string> SubmitAll(Exchange& ex, Link& link, const std::string& from,
                                   const std::string& to, int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    std::string id;
    link.Submit(Envelope(from, to, &id));
    ids.push_back(id);
  }
  const bool all = link.Pump(kDefaultWait, [&] {
    for (const auto& id : ids) {
      auto it = link.replies().find(id);
      if (it == link.replies().end()) return false;
      if (it->second != wire::ACCEPTED) {
        throw HarnessError("message " + id + " answered " + std::to_string(it->second));
      }
    }
    return true;
  });
  if (!all) throw HarnessError("not every submit was accepted\n" + ex.Diagnostics());
  return ids;
}

ExchangeOptions MultiBrokerOptions(const PostgresServer& pg, int brokers) {
  ExchangeOptions o;
  o.agencies = {kAgencyA, kAgencyB, kAgencyC};
  o.start_ips = false;
  o.broker_pg_url = pg.ConnString();
  o.broker_pg_password_file = pg.PasswordFile();
  o.extra_brokers = brokers - 1;
  return o;
}

// A Prometheus sample's value in `broker`'s /metrics (-1 when missing).
double Metric(Exchange& ex, size_t broker, const std::string& name) {
  httplib::Client c(ex.BrokerHttpBase(broker));
  c.set_connection_timeout(5);
  c.set_read_timeout(10);
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return -1;
  std::istringstream lines(r->body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

json Health(Exchange& ex, size_t broker, int* status) {
  httplib::Client c(ex.BrokerHttpBase(broker));
  c.set_connection_timeout(5);
  c.set_read_timeout(15);
  auto r = c.Get("/health");
  if (!r) throw HarnessError("no answer from the broker's /health");
  *status = r->status;
  return json::parse(r->body);
}

}  // namespace

TEST_CASE(
    "three brokers on one PostgreSQL: senders on two, the receiver on the third; each "
    "message delivered once, woken by NOTIFY",
    "[integration][multi-broker][pg]") {
  PostgresServer pg;
  ExchangeOptions o = MultiBrokerOptions(pg, 3);
  // Only the wake-up can deliver in time: the fallback look comes once a minute.
  o.broker_settings["wake_poll_ms"] = "60000";
  Exchange ex(o);

  Link receiver(ex, kAgencyB, 2, /*credit=*/32, /*auto_ack=*/true);
  Link a(ex, kAgencyA, 0);
  Link c(ex, kAgencyC, 1);
  constexpr int kEach = 100;
  std::vector<std::string> ids = SubmitAll(ex, a, kAgencyA, kAgencyB, kEach);
  for (auto& id : SubmitAll(ex, c, kAgencyC, kAgencyB, kEach)) ids.push_back(id);
  const bool all = receiver.Pump(Millis(30000), [&] {
    for (const auto& id : ids) {
      if (!receiver.acked().contains(id)) return false;
    }
    return true;
  });
  INFO(ex.Diagnostics());
  REQUIRE(all);
  // A while longer: nothing comes again (the brokers' ack timeout is 5 s).
  receiver.PumpFor(Millis(6000));
  CHECK(receiver.delivered().size() == ids.size());
  for (const auto& id : ids) CHECK(receiver.DeliveredCount(id) == 1);
  CHECK(receiver.after_ack().empty());
  CHECK(pg.AdminQuery("SELECT count(*)::text FROM broker_messages", pg.Database()) == "0");
  CHECK(ex.broker(2).LogSinceStart().find("lease epoch") != std::string::npos);
}

TEST_CASE(
    "the receiver moves to another broker while the first lives: the first is fenced at "
    "once, the second delivers the unacknowledged ones",
    "[integration][multi-broker][pg]") {
  PostgresServer pg;
  ExchangeOptions o = MultiBrokerOptions(pg, 2);
  o.http = true;
  o.broker_settings["session_lease_ms"] = "3000";
  Exchange ex(o);

  Link sender(ex, kAgencyA, 0);
  Link first(ex, kAgencyB, 0, /*credit=*/8);
  std::vector<std::string> ids = SubmitAll(ex, sender, kAgencyA, kAgencyB, 8);
  REQUIRE(first.Pump(kDefaultWait, [&] { return first.delivered().size() >= 8; }));
  for (const auto& id : ids) CHECK(first.DeliveredCount(id) == 1);

  // The receiver says Hello on broker 1; its connection to broker 0 stays open (and keeps
  // sending heartbeats), as a point that moved without closing would.
  Link second(ex, kAgencyB, 1, /*credit=*/8);
  const size_t first_before = first.delivered().size();
  REQUIRE(second.Pump(kDefaultWait, [&] { return second.delivered().size() >= 8; }));
  for (const auto& id : ids) CHECK(second.DeliveredCount(id) == 1);
  // Half of them acknowledged on broker 1; four more messages come in through broker 0.
  for (size_t i = 0; i < 4; ++i) second.Ack(ids[i]);
  std::vector<std::string> more = SubmitAll(ex, sender, kAgencyA, kAgencyB, 4);
  REQUIRE(second.Pump(kDefaultWait, [&] {
    for (const auto& id : more) {
      if (second.DeliveredCount(id) == 0) return false;
    }
    return true;
  }));
  // Beyond broker 0's ack timeout (5 s): were it not fenced, it would redeliver its 8 now.
  first.PumpFor(Millis(6000));
  CHECK(first.delivered().size() == first_before);
  CHECK(first.refused_no_session());  // broker 0 dropped the session it lost
  // Broker 1 acknowledges everything now; it redelivered only unacknowledged ones.
  second.set_auto_ack(true);
  for (const auto& id : ids) second.Ack(id);
  for (const auto& id : more) second.Ack(id);
  REQUIRE(second.Pump(kDefaultWait, [&] { return second.acked().size() >= 12; }));
  second.PumpFor(Millis(2500));
  CHECK(second.after_ack().empty());
  CHECK(first.delivered().size() == first_before);
  CHECK(Metric(ex, 1, "bud_broker_session_takeovers_total") >= 1);
  CHECK(Metric(ex, 0, "bud_broker_sessions_lost_total") >= 1);
  CHECK(pg.AdminQuery("SELECT count(*)::text FROM broker_messages", pg.Database()) == "0");
}

TEST_CASE(
    "a broker SIGKILLed while it holds the receiver: the receiver's Hello on another "
    "broker takes over; every message arrives and is acknowledged once",
    "[integration][multi-broker][pg]") {
  PostgresServer pg;
  ExchangeOptions o = MultiBrokerOptions(pg, 2);
  o.broker_settings["session_lease_ms"] = "2000";
  Exchange ex(o);

  Link sender(ex, kAgencyA, 1);
  std::vector<std::string> ids;
  {
    Link held(ex, kAgencyB, 0, /*credit=*/4);
    ids = SubmitAll(ex, sender, kAgencyA, kAgencyB, 10);
    REQUIRE(held.Pump(kDefaultWait, [&] { return held.delivered().size() >= 4; }));
    ex.broker(0).Kill();  // four deliveries in flight, never acknowledged
  }
  const std::string holder_before = pg.AdminQuery(
      "SELECT holder FROM broker_sessions WHERE org = '0192:" + std::string(kAgencyB) + "'",
      pg.Database());
  CHECK_FALSE(holder_before.empty());  // the dead broker's lease, still in the table

  Link receiver(ex, kAgencyB, 1, /*credit=*/4, /*auto_ack=*/true);
  std::vector<std::string> later = SubmitAll(ex, sender, kAgencyA, kAgencyB, 5);
  for (const auto& id : later) ids.push_back(id);
  REQUIRE(receiver.Pump(kDefaultWait, [&] {
    for (const auto& id : ids) {
      if (!receiver.acked().contains(id)) return false;
    }
    return true;
  }));
  receiver.PumpFor(Millis(1500));
  for (const auto& id : ids) CHECK(receiver.DeliveredCount(id) == 1);
  CHECK(receiver.after_ack().empty());
  const std::string holder_after = pg.AdminQuery(
      "SELECT holder FROM broker_sessions WHERE org = '0192:" + std::string(kAgencyB) + "'",
      pg.Database());
  CHECK_FALSE(holder_after.empty());
  CHECK(holder_after != holder_before);
  CHECK(pg.AdminQuery("SELECT count(*)::text FROM broker_messages", pg.Database()) == "0");
  // The killed broker starts again and serves the sender; the receiver stays where it is.
  ex.StartBroker(0);
  Link back(ex, kAgencyA, 0);
  std::vector<std::string> last = SubmitAll(ex, back, kAgencyA, kAgencyB, 3);
  REQUIRE(receiver.Pump(kDefaultWait, [&] {
    for (const auto& id : last) {
      if (!receiver.acked().contains(id)) return false;
    }
    return true;
  }));
  for (const auto& id : last) CHECK(receiver.DeliveredCount(id) == 1);
}

TEST_CASE(
    "a broker's /health: 200 while its PostgreSQL store is writable, 503 with the reason "
    "when the server is stopped, 200 again when it is back",
    "[integration][multi-broker][pg]") {
  PostgresServer pg;
  ExchangeOptions o = MultiBrokerOptions(pg, 1);
  o.http = true;
  Exchange ex(o);
  int status = 0;
  json h;
  WaitUntil("broker 0 healthy", kDefaultWait, [&] {
    h = Health(ex, 0, &status);
    return status == 200;
  });
  CHECK(h["status"] == "UP");
  CHECK(h["store_writable"] == true);
  CHECK(h["broker_id"].get<std::string>().find('/') != std::string::npos);
  CHECK_THAT(h["store"].get<std::string>(), Catch::Contains("PostgreSQL"));

  pg.Stop();
  h = Health(ex, 0, &status);
  CHECK(status == 503);
  CHECK(h["status"] == "DOWN");
  CHECK(h["store_writable"] == false);
  CHECK_FALSE(h["reason"].get<std::string>().empty());
  INFO(h.dump());

  pg.Start();
  WaitUntil("broker 0 healthy again", kDefaultWait, [&] {
    h = Health(ex, 0, &status);
    return status == 200;
  });
  CHECK(h["status"] == "UP");
}

}  // namespace bud::test

namespace bud::test {

// Batch frames (docs/protocol.md): the broker reads a bounded number of frames per connection, so
// a client with many messages ready sends them in one frame. Each item is handled and answered as
// if it came alone (a duplicate and a malformed envelope among them included); a frame beyond the
// Welcome's max_batch_items is refused whole and nothing of it is stored.
TEST_CASE("one frame carries many submits, reports and status acks; a larger one is refused whole",
          "[integration][batch]") {
  ExchangeOptions o;
  o.start_ips = false;
  o.broker_settings["max_credit"] = "256";  // every delivery out before the reports
  Exchange ex(o);
  Link a(ex, kAgencyA, 0);
  Link b(ex, kAgencyB, 0, /*credit=*/256);
  a.set_auto_notice_ack(false);
  REQUIRE(a.max_batch_items() == 256);

  wire::ClientMessage m = Link::NewMessage();
  std::vector<std::string> ids;
  for (int i = 0; i < 198; ++i) {
    std::string id;
    m.mutable_batch()->add_submits()->set_envelope(Envelope(kAgencyA, kAgencyB, &id));
    ids.push_back(id);
  }
  m.mutable_batch()->add_submits()->set_envelope(m.batch().submits(0).envelope());  // a 2nd copy
  m.mutable_batch()->add_submits()->set_envelope("not an envelope");
  a.SendMessage(m);
  REQUIRE(a.Pump(kDefaultWait, [&] { return a.replies().size() == ids.size() + 1; }));
  for (const auto& id : ids) CHECK(a.replies().at(id) == wire::ACCEPTED);
  CHECK(a.replies().at("") == wire::REJECTED);

  REQUIRE(b.Pump(kDefaultWait, [&] { return b.delivered().size() == ids.size(); }));
  for (const auto& id : ids) CHECK(b.DeliveredCount(id) == 1);
  wire::ClientMessage reports = Link::NewMessage();
  for (const auto& id : b.delivered()) {
    auto* r = reports.mutable_batch()->add_reports();
    r->set_message_id(id);
    r->set_status(wire::MOTTATT);
    r->set_at_unix_ms(NowMs());
  }
  b.SendMessage(reports);
  REQUIRE(b.Pump(kDefaultWait, [&] { return b.acked().size() == ids.size(); }));

  // The sender's notices (one MOTTATT each), acknowledged in one frame: a new session of the
  // sender gets none of them again.
  REQUIRE(a.Pump(kDefaultWait, [&] { return a.notices().size() == ids.size(); }));
  wire::ClientMessage acks = Link::NewMessage();
  for (uint64_t n : a.notices()) acks.mutable_batch()->add_status_acks()->set_notice_id(n);
  a.SendMessage(acks);
  a.PumpFor(Millis(500));
  {
    Link again(ex, kAgencyA, 0);
    again.set_auto_notice_ack(false);
    again.PumpFor(Millis(1500));
    CHECK(again.notices().empty());
  }

  // 257 items: refused whole, nothing of it stored or delivered.
  Link a2(ex, kAgencyA, 0);
  wire::ClientMessage big = Link::NewMessage();
  std::vector<std::string> big_ids;
  for (int i = 0; i < 257; ++i) {
    std::string id;
    big.mutable_batch()->add_submits()->set_envelope(Envelope(kAgencyA, kAgencyB, &id));
    big_ids.push_back(id);
  }
  a2.SendMessage(big);
  REQUIRE(a2.Pump(kDefaultWait, [&] { return !a2.refusals().empty(); }));
  CHECK_THAT(a2.refusals().back(), Catch::Contains("a batch of 257 items is more than this broker "
                                                   "takes in one frame (256)"));
  b.PumpFor(Millis(1500));
  CHECK(a2.replies().empty());
  CHECK(b.delivered().size() == ids.size());
}

}  // namespace bud::test
