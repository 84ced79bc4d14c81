// Message channels at the broker (docs/protocol.md, "Message channels"), in process with real
// sockets: one organisation's two sessions (no channel, and "arkiv2") each get only the
// deliveries and notices of their mailbox, and the broker refuses a Hello with a bad channel
// name and a submit whose sender_channel is not the session's.
#include <catch2/catch.hpp>
#include <thread>

#include "broker/server.h"
#include "common/clock.h"
#include "common/crypto/envelope.h"
#include "common/uuid.h"
#include "common/wire/zmq.h"
#include "tests/broker/server_harness.h"

namespace bud::broker {
namespace {

using test_server::Envelope;
using test_server::kA;
using test_server::kB;
using test_server::Peer;
using test_server::RunningBroker;

// The ids of the deliveries among `frames`.
std::vector<std::string> Delivered(const std::vector<wire::BrokerMessage>& frames) {
  std::vector<std::string> out;
  for (const auto& m : frames) {
    if (!m.has_deliver()) continue;
    wire::Envelope env;
    REQUIRE(env.ParseFromString(m.deliver().envelope()));
    wire::Header h;
    REQUIRE(h.ParseFromString(env.header()));
    out.push_back(h.message_id());
  }
  return out;
}

std::vector<std::pair<std::string, wire::MessageStatus>> Notices(
    const std::vector<wire::BrokerMessage>& frames) {
  std::vector<std::pair<std::string, wire::MessageStatus>> out;
  for (const auto& m : frames) {
    if (m.has_status_notice()) {
      out.emplace_back(m.status_notice().message_id(), m.status_notice().status());
    }
  }
  return out;
}

}  // namespace

TEST_CASE("broker: each mailbox (organisation, channel) gets only its deliveries and notices",
          "[broker][channels]") {
  RunningBroker broker;
  Peer a(broker.ctx, broker.endpoint), a2(broker.ctx, broker.endpoint),
      b(broker.ctx, broker.endpoint);
  REQUIRE(a.Hello(kA, "").has_welcome());
  auto welcome = a2.Hello(kA, "arkiv2");
  REQUIRE(welcome.has_welcome());
  CHECK(welcome.welcome().orgnr() == kA);
  CHECK(welcome.welcome().channel() == "arkiv2");
  REQUIRE(b.Hello(kB, "").has_welcome());

  // A/arkiv2 -> B: an ordinary message, for B's point without a channel.
  const std::string from_a2 = NewUuid();
  CHECK(a2.SubmitEnvelope(Envelope(from_a2, kA, kB, "arkiv2", "")).code() == wire::ACCEPTED);
  auto at_b = b.Drain(5000);
  REQUIRE(Delivered(at_b) == std::vector<std::string>{from_a2});
  b.Report(from_a2, wire::MOTTATT);
  b.Report(from_a2, wire::LEVERT);
  // B's receipt goes back to A/arkiv2; B -> A (no channel) to A's default point.
  const std::string receipt = NewUuid(), to_a = NewUuid();
  CHECK(b.SubmitEnvelope(Envelope(receipt, kB, kA, "", "arkiv2")).code() == wire::ACCEPTED);
  CHECK(b.SubmitEnvelope(Envelope(to_a, kB, kA, "", "")).code() == wire::ACCEPTED);

  auto at_a2 = a2.Drain(5000);
  CHECK(Delivered(at_a2) == std::vector<std::string>{receipt});
  auto notices = Notices(at_a2);
  CHECK(std::count(notices.begin(), notices.end(), std::pair{from_a2, wire::MOTTATT}) == 1);
  CHECK(std::count(notices.begin(), notices.end(), std::pair{from_a2, wire::LEVERT}) == 1);
  auto at_a = a.Drain(3000);
  CHECK(Delivered(at_a) == std::vector<std::string>{to_a});
  CHECK(Notices(at_a).empty());  // nothing about A/arkiv2's message

  // A's default point cannot report on A/arkiv2's delivery.
  a.Report(receipt, wire::MOTTATT);
  auto refused = a.Receive(5000);
  REQUIRE(refused);
  REQUIRE(refused->has_report_reply());
  CHECK_THAT(refused->report_reply().reason(), Catch::Contains(std::string(kA) + "/arkiv2"));
  a2.Report(receipt, wire::MOTTATT);
  auto notices_b = Notices(b.Drain(5000));
  CHECK(std::count(notices_b.begin(), notices_b.end(), std::pair{receipt, wire::MOTTATT}) == 1);
}

TEST_CASE("broker: a Hello with a bad channel name and a submit on another channel are refused",
          "[broker][channels]") {
  RunningBroker broker;
  for (const std::string& bad : {std::string("arkiv/2"), std::string(26, 'x'), std::string("a b"),
                                 std::string("\x01\x7f")}) {
    Peer p(broker.ctx, broker.endpoint);
    auto answer = p.Hello(kA, bad);
    REQUIRE(answer.has_refused());
    CHECK_THAT(answer.refused().reason(), Catch::Contains("not a message channel name"));
  }
  {
    Peer p(broker.ctx, broker.endpoint);  // not even UTF-8: the frame does not parse
    REQUIRE(p.Hello(kA, "\xff\xfe").has_refused());
  }
  Peer a2(broker.ctx, broker.endpoint), b(broker.ctx, broker.endpoint);
  REQUIRE(a2.Hello(kA, "arkiv2").has_welcome());
  REQUIRE(b.Hello(kB, "").has_welcome());
  // Another channel, or none, than the session's.
  auto other = a2.SubmitEnvelope(Envelope(NewUuid(), kA, kB, "arkiv3", ""));
  CHECK(other.code() == wire::REJECTED);
  CHECK_THAT(other.reason(), Catch::Contains("sender_channel 'arkiv3'"));
  CHECK_THAT(other.reason(), Catch::Contains("'arkiv2'"));
  auto none = a2.SubmitEnvelope(Envelope(NewUuid(), kA, kB, "", ""));
  CHECK(none.code() == wire::REJECTED);
  CHECK_THAT(none.reason(), Catch::Contains("(none)"));
  auto from_b = b.SubmitEnvelope(Envelope(NewUuid(), kB, kA, "arkiv2", ""));
  CHECK(from_b.code() == wire::REJECTED);
  // A receiver_channel that is no channel name.
  auto bad_to = b.SubmitEnvelope(Envelope(NewUuid(), kB, kA, "", "../x"));
  CHECK(bad_to.code() == wire::REJECTED);
  CHECK_THAT(bad_to.reason(), Catch::Contains("receiver_channel"));
  CHECK(broker.server->metrics().rejected_routing.load() == 4);
  // Nothing of it was queued.
  CHECK(Delivered(b.Drain(1000)).empty());
}

}  // namespace bud::broker

namespace bud::broker {

TEST_CASE("CheckRouting: sender_channel must be the session's, receiver_channel a name",
          "[broker][channels]") {
  const int64_t now = NowMs();
  const RoutingLimits limits;
  auto header = [&](const std::string& sender_channel, const std::string& receiver_channel) {
    wire::Header h;
    h.set_message_id(NewUuid());
    h.set_conversation_id(NewUuid());
    h.set_sender(kA);
    h.set_receiver(kB);
    h.set_process("p");
    h.set_document_type("d");
    h.set_expires_unix_ms(now + 60000);
    h.set_sender_channel(sender_channel);
    h.set_receiver_channel(receiver_channel);
    return h;
  };
  auto ok = CheckRouting(header("arkiv2", "saksbeh"), MailboxKey(kA, "arkiv2"), now, limits);
  REQUIRE(ok.ok());
  CHECK(ok->sender_channel == "arkiv2");
  CHECK(ok->receiver_channel == "saksbeh");
  CHECK(CheckRouting(header("", ""), kA, now, limits).ok());
  // Not the session's channel, in either direction.
  auto other = CheckRouting(header("arkiv3", ""), MailboxKey(kA, "arkiv2"), now, limits);
  REQUIRE_FALSE(other.ok());
  CHECK(other.status().code() == Code::kInvalidArgument);
  CHECK_FALSE(CheckRouting(header("arkiv2", ""), kA, now, limits).ok());
  CHECK_FALSE(CheckRouting(header("", ""), MailboxKey(kA, "arkiv2"), now, limits).ok());
  // Unprintable or oversized names are not echoed.
  auto hostile = CheckRouting(header(std::string(5000, '\x01'), ""), kA, now, limits);
  REQUIRE_FALSE(hostile.ok());
  CHECK(hostile.status().message().size() < 300);
  CHECK_THAT(hostile.status().message(), Catch::Contains("(invalid)"));
  auto bad_to = CheckRouting(header("", std::string(26, 'x')), kA, now, limits);
  REQUIRE_FALSE(bad_to.ok());
  CHECK_THAT(bad_to.status().message(), Catch::Contains("receiver_channel"));
}

}  // namespace bud::broker
