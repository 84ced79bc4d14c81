// Message channels at the integration point (docs/protocol.md, "Message channels";
// docs/http-api.md): the SBD's MessageChannel scope as eFormidling checks and adds it, the
// [next_move] message_channel key, and the receiver's refusal of a delivery for another channel
// (defence in depth: the broker never sends one).
#include <catch2/catch.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "integration-point/config.h"
#include "integration-point/sbd.h"
#include "tests/ip/support/parts_rig.h"
#include "tests/support/temp_dir.h"

namespace bud::ip {
namespace {

using nlohmann::json;
const Orgnr kMe = *Orgnr::Parse("910076787");

json Sbd(const std::string& standard = "urn:no:difi:arkivmelding:xsd::arkivmelding") {
  json sbd = json::parse(R"({
    "standardBusinessDocumentHeader": {
      "headerVersion": "1.0",
      "receiver": [{"identifier": {"value": "0192:910075918", "authority": "iso6523-actorid-upis"}}],
      "documentIdentification": {"typeVersion": "1.0"},
      "businessScope": {"scope": [{"type": "ConversationId",
        "identifier": "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"}]}
    }
  })");
  sbd["standardBusinessDocumentHeader"]["documentIdentification"]["standard"] = standard;
  return sbd;
}

json WithScope(json sbd, const std::string& type, const std::string& channel) {
  sbd["standardBusinessDocumentHeader"]["businessScope"]["scope"].push_back(
      {{"type", type}, {"identifier", channel}});
  return sbd;
}

// The MessageChannel scopes' identifiers.
std::vector<std::string> Channels(const json& sbd) {
  std::vector<std::string> out;
  for (const auto& s : sbd["standardBusinessDocumentHeader"]["businessScope"]["scope"]) {
    if (s["type"] == "MessageChannel" || s["type"] == "MESSAGE_CHANNEL") {
      out.push_back(s["identifier"]);
    }
  }
  return out;
}

OutboxLimits On(const std::string& channel) {
  OutboxLimits limits;
  limits.message_channel = channel;
  return limits;
}

}  // namespace

TEST_CASE("SBD: a point with a channel adds its MessageChannel scope and refuses another",
          "[ip][sbd][channels]") {
  json completed;
  auto added = ParseSbd(Sbd(), kMe, On("arkiv2"), &completed);
  REQUIRE(added.ok());
  CHECK(Channels(completed) == std::vector<std::string>{"arkiv2"});
  CHECK(Channels(json::parse(added->payload.metadata_json())) ==
        std::vector<std::string>{"arkiv2"});
  // Its own, in either spelling, is kept as given.
  for (const char* type : {"MessageChannel", "MESSAGE_CHANNEL"}) {
    auto own = ParseSbd(WithScope(Sbd(), type, "arkiv2"), kMe, On("arkiv2"), &completed);
    REQUIRE(own.ok());
    CHECK(Channels(completed) == std::vector<std::string>{"arkiv2"});
  }
  // Another channel: refused, naming both.
  auto other = ParseSbd(WithScope(Sbd(), "MessageChannel", "arkiv3"), kMe, On("arkiv2"));
  REQUIRE_FALSE(other.ok());
  CHECK(other.status().code() == Code::kInvalidArgument);
  CHECK(other.status().message().starts_with(kMessageChannelInvalid));
  CHECK_THAT(other.status().message(), Catch::Contains("configured: 'arkiv2', given: 'arkiv3'"));
  // A point without a channel checks only the name and keeps the scope (as eFormidling, whose
  // validator checks the scope only when a channel is configured).
  auto none = ParseSbd(WithScope(Sbd(), "MessageChannel", "arkiv2"), kMe, On(""), &completed);
  REQUIRE(none.ok());
  CHECK(Channels(completed) == std::vector<std::string>{"arkiv2"});
  CHECK_FALSE(ParseSbd(WithScope(Sbd(), "MessageChannel", "a b"), kMe, On("")).ok());
  // Without a channel and without a scope, nothing is added.
  auto plain = ParseSbd(Sbd(), kMe, On(""), &completed);
  REQUIRE(plain.ok());
  CHECK(Channels(completed).empty());
  // Not a channel name at all (hostile or mistyped).
  for (const std::string& bad :
       {std::string(), std::string("arkiv 2"), std::string(26, 'x'), std::string("../x")}) {
    INFO(bad);
    auto r = ParseSbd(WithScope(Sbd(), "MessageChannel", bad), kMe, On("arkiv2"));
    if (bad.empty()) {
      // An empty identifier names no channel: on a point with one, it is another channel.
      REQUIRE_FALSE(r.ok());
      continue;
    }
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Catch::Contains("not a message channel name"));
  }
}

TEST_CASE("SBD: a receipt's MessageChannel scope is the answered message's, set when sealed",
          "[ip][sbd][channels]") {
  const std::string receipt = "urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering";
  // Any valid channel passes (it names the channel of the point the receipt goes back to).
  json completed;
  auto r = ParseSbd(WithScope(Sbd(receipt), "MessageChannel", "arkiv7"), kMe, On(""), &completed);
  REQUIRE(r.ok());
  CHECK(Channels(completed) == std::vector<std::string>{"arkiv7"});
  auto bad = ParseSbd(WithScope(Sbd(receipt), "MessageChannel", "a/b"), kMe, On(""));
  REQUIRE_FALSE(bad.ok());
  // WithMessageChannel sets, replaces or removes the scope; leaves anything else as it is.
  const std::string text = Sbd(receipt).dump();
  CHECK(Channels(json::parse(WithMessageChannel(text, "arkiv2"))) ==
        std::vector<std::string>{"arkiv2"});
  const std::string replaced =
      WithMessageChannel(WithScope(Sbd(receipt), "MessageChannel", "old").dump(), "arkiv2");
  CHECK(Channels(json::parse(replaced)) == std::vector<std::string>{"arkiv2"});
  const json removed = json::parse(WithMessageChannel(replaced, ""));
  CHECK(Channels(removed).empty());
  CHECK(removed["standardBusinessDocumentHeader"]["businessScope"]["scope"].size() == 1);
  CHECK(WithMessageChannel(R"({"receiver": "0192:910075918"})", "arkiv2") ==
        R"({"receiver": "0192:910075918"})");
  CHECK(WithMessageChannel("not json", "arkiv2") == "not json");
}

TEST_CASE("[next_move] message_channel is checked at load", "[ip][config][channels]") {
  test::TempDir dir;
  auto load = [&](const std::string& next_move) {
    const std::string path = dir / "ip.toml";
    std::string text = R"([agency]
orgnr = "910076787"
[paths]
outbox = "o"
inbox = "i"
store = "s.db"
[keys]
signing_key = "k"
signing_cert = "c"
encryption_key = "k"
encryption_cert = "c"
trust_anchor = "ca"
[registry]
endpoint = "tcp://127.0.0.1:1"
[broker]
endpoint = "tcp://127.0.0.1:2"
)" + next_move;
    FILE* f = fopen(path.c_str(), "w");
    fputs(text.c_str(), f);
    fclose(f);
    return Config::Load(path);
  };
  auto none = load("");
  REQUIRE(none.ok());
  CHECK(none->broker.message_channel.empty());
  // As the installed ip.toml has it: the section with its key commented out.
  auto commented = load("[next_move]\n#message_channel = \"arkiv2\"\n");
  REQUIRE(commented.ok());
  CHECK(commented->broker.message_channel.empty());
  auto set = load("[next_move]\nmessage_channel = \"arkiv-2_B\"\n");
  REQUIRE(set.ok());
  CHECK(set->broker.message_channel == "arkiv-2_B");
  for (const char* bad : {"\"arkiv 2\"", "\"aaaaaaaaaaaaaaaaaaaaaaaaaa\"", "\"æøå\"", "2"}) {
    INFO(bad);
    auto c = load(std::string("[next_move]\nmessage_channel = ") + bad + "\n");
    REQUIRE_FALSE(c.ok());
    CHECK_THAT(c.status().message(), Catch::Contains("next_move.message_channel"));
  }
  auto unknown = load("[next_move]\nchannel = \"x\"\n");
  CHECK_FALSE(unknown.ok());
}

TEST_CASE("receiver: a delivery for another message channel is refused; the sender's is kept",
          "[ip][receiver][channels]") {
  rig::Rig r;
  r.config.broker.message_channel = "arkiv2";
  r.Connect();
  // For this point's channel, from a point on another: taken, its sender_channel kept.
  auto h = r.Header();
  h.set_receiver_channel("arkiv2");
  h.set_sender_channel("saksbeh");
  auto answer = r.DeliverSmall(r.Small(h));
  REQUIRE(answer);
  CHECK(answer->report().status() == wire::MOTTATT);
  auto row = r.store->incoming.Get(h.message_id());
  REQUIRE(row.ok());
  REQUIRE(row->has_value());
  CHECK((*row)->sender_channel == "saksbeh");
  // For no channel, or another one: FEIL with the reason.
  for (const std::string& other : {std::string(), std::string("arkiv3")}) {
    auto wrong = r.Header();
    wrong.set_receiver_channel(other);
    auto refused = r.DeliverSmall(r.Small(wrong));
    REQUIRE(refused);
    CHECK(refused->report().status() == wire::FEIL);
    CHECK(rig::CodeOf(refused->report().reason()) == "INVALID_ARGUMENT");
    CHECK_THAT(refused->report().reason(), Catch::Contains("this integration point's channel is "
                                                           "'arkiv2'"));
  }
  // A sender_channel that is no channel name.
  auto bad = r.Header();
  bad.set_receiver_channel("arkiv2");
  bad.set_sender_channel(std::string(100, '/'));
  auto refused = r.DeliverSmall(r.Small(bad));
  REQUIRE(refused);
  CHECK(refused->report().status() == wire::FEIL);
  CHECK_THAT(refused->report().reason(), Catch::Contains("sender_channel"));
}

}  // namespace bud::ip

namespace bud::ip {

TEST_CASE("link: Hello names the channel; a Welcome without it is no session of ours",
          "[ip][link][channels]") {
  rig::Rig r;
  LinkOptions o{{r.endpoint}, 8, 60'000, 200, 5000};
  o.channel = "arkiv2";
  DealerTransport t(r.ctx, DealerOptions{std::nullopt, ""});
  BrokerLink link(t, r.clock, r.config.me(), o, r.metrics);
  link.Start();
  link.Tick();
  auto hello = r.broker->NextOf(wire::ClientMessage::kHello);
  REQUIRE(hello);
  CHECK(hello->hello().channel() == "arkiv2");
  auto feed = [&] {
    std::vector<wire::BrokerMessage> out;
    zmq::pollitem_t item{t.PollHandle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(200));
    while (auto f = t.TryReceive()) {
      if (auto m = link.OnFrame(*f)) out.push_back(*m);
    }
    return out;
  };
  wire::BrokerMessage welcome;
  welcome.mutable_welcome()->set_orgnr(std::string("0192:") + rig::kMe);
  wire::BrokerMessage deliver;
  deliver.mutable_deliver()->set_envelope("not ours");
  // A broker without message channels welcomes the organisation's point without one.
  r.broker->Send(welcome);
  r.broker->Send(deliver);
  CHECK(feed().empty());  // the delivery is not taken
  CHECK_FALSE(link.ready());
  CHECK(link.last_event() == LinkEvent::kWrongWelcome);
  // The right Welcome: ready, and deliveries pass.
  welcome.mutable_welcome()->set_channel("arkiv2");
  r.broker->Send(welcome);
  r.broker->Send(deliver);
  auto passed = feed();
  CHECK(link.ready());
  REQUIRE(passed.size() == 1);
  CHECK(passed[0].has_deliver());
}

}  // namespace bud::ip
