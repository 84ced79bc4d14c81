// Message channels end to end (docs/protocol.md, "Message channels"; docs/http-api.md): one
// organisation A with two integration points sharing its keys (one without a channel, one on
// channel "arkiv2"), and B; real processes, the Next Move API on every point.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/uuid.h"
#include "tests/integration/harness.h"

namespace bud::test {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

constexpr const char* kResponseProcess = "urn:no:difi:profile:arkivmelding:response:ver1.0";
constexpr const char* kReceiptType = "urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering";
constexpr const char* kChannel = "arkiv2";

struct Reply {
  int status = 0;
  std::string body;
  json Json() const { return json::parse(body); }
};

Reply Call(const std::string& base, const std::string& method, const std::string& path) {
  httplib::Client c(base);
  c.set_connection_timeout(5);
  c.set_read_timeout(20);
  httplib::Result r = method == "DELETE" ? c.Delete(path.c_str()) : c.Get(path.c_str());
  REQUIRE(r);
  return {r->status, r->body};
}

// POST /api/messages/out/multipart: the SBD and, unless it is a receipt, one file.
Reply Send(const std::string& base, const json& sbd, bool with_file = true) {
  httplib::Client c(base);
  c.set_connection_timeout(5);
  c.set_read_timeout(20);
  httplib::MultipartFormDataItems items = {{"sbd", sbd.dump(), "", "application/json"}};
  if (with_file) {
    items.push_back({"Hoveddokument", "%PDF-1.7 vedtak", "vedtak.pdf", "application/pdf"});
  }
  httplib::Result r = c.Post("/api/messages/out/multipart", items);
  REQUIRE(r);
  return {r->status, r->body};
}

json Sbd(const std::string& from, const std::string& to, const std::string& id,
         const std::string& process, const std::string& standard) {
  auto party = [](const std::string& org) {
    return json::array(
        {{{"identifier", {{"value", "0192:" + org}, {"authority", "iso6523-actorid-upis"}}}}});
  };
  json sbd = {{"standardBusinessDocumentHeader",
               {{"headerVersion", "1.0"},
                {"sender", party(from)},
                {"receiver", party(to)},
                {"documentIdentification",
                 {{"standard", standard},
                  {"typeVersion", "2.0"},
                  {"instanceIdentifier", id},
                  {"type", standard.substr(standard.rfind(':') + 1)}}},
                {"businessScope",
                 {{"scope", json::array({{{"type", "ConversationId"},
                                          {"instanceIdentifier", NewUuid()},
                                          {"identifier", process}}})}}}}}};
  if (standard == kDocumentType) sbd["arkivmelding"] = {{"hoveddokument", "vedtak.pdf"}};
  return sbd;
}

// The identifier of the SBD's MessageChannel scope, "" when it has none.
std::string ChannelOf(const json& sbd) {
  for (const auto& s : sbd["standardBusinessDocumentHeader"]["businessScope"]["scope"]) {
    if (s.value("type", "") == "MessageChannel") return s.value("identifier", "");
  }
  return "";
}

Strings Statuses(const std::string& base, const std::string& id) {
  Reply r = Call(base, "GET", "/api/statuses/" + id + "?size=50");
  Strings out;
  if (r.status != 200) return out;
  const json page = r.Json();  // named: a range over a temporary's member would dangle
  for (const auto& s : page.at("content")) out.push_back(s.at("status"));
  return out;
}

void WaitForStatus(const std::string& base, const std::string& id, const std::string& status) {
  Strings names;
  WaitUntil(
      "status " + status + " of " + id + " at " + base, kDefaultWait,
      [&] {
        names = Statuses(base, id);
        return std::find(names.begin(), names.end(), status) != names.end();
      },
      [&] {
        std::string so_far;
        for (const auto& n : names) so_far += n + " ";
        return "statuses so far: " + so_far;
      },
      Millis(100));
}

// Peeks until an incoming message is there; its SBD.
json WaitForPeek(const std::string& base) {
  json sbd;
  WaitUntil(
      "an incoming message at " + base, kDefaultWait,
      [&] {
        Reply r = Call(base, "GET", "/api/messages/in/peek");
        if (r.status != 200) return false;
        sbd = r.Json();
        return true;
      },
      {}, Millis(100));
  return sbd;
}

std::string IdOf(const json& sbd) {
  return sbd["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"];
}

// Takes the peeked message out (pop, DELETE): LEVERT goes back to its sender.
void TakeOut(const std::string& base, const std::string& id) {
  const int pop = Call(base, "GET", "/api/messages/in/pop/" + id).status;
  CHECK((pop == 200 || pop == 204));
  REQUIRE(Call(base, "DELETE", "/api/messages/in/" + id).status == 200);
}

ExchangeOptions ChannelExchange() {
  ExchangeOptions o;
  o.http = true;
  o.processes = {kProcess, kResponseProcess};
  o.document_types = {kDocumentType, kReceiptType};
  o.ip_settings = {{"incoming.delivery", "\"api\""}};
  o.channel_points = {{kAgencyA, kChannel}};
  return o;
}

}  // namespace

TEST_CASE(
    "message channels: A's point on channel arkiv2 sends to B and alone sees its statuses and "
    "B's receipt; B's ordinary message goes to A's point without a channel",
    "[integration][http][channels]") {
  Exchange ex(ChannelExchange());
  const std::string a = ex.HttpBase(kAgencyA);
  const std::string a2 = ex.HttpBase(Exchange::ChannelPoint(kAgencyA, kChannel));
  const std::string b = ex.HttpBase(kAgencyB);

  // A/arkiv2 -> B: the SBD gets the point's MessageChannel scope.
  const std::string id = NewUuid();
  Reply sent = Send(a2, Sbd(kAgencyA, kAgencyB, id, kProcess, kDocumentType));
  INFO(sent.body);
  REQUIRE(sent.status == 200);
  CHECK(ChannelOf(sent.Json()) == kChannel);

  // B receives it (its point has no channel) with the sender's scope, and takes it out.
  json at_b = WaitForPeek(b);
  CHECK(IdOf(at_b) == id);
  CHECK(ChannelOf(at_b) == kChannel);
  TakeOut(b, id);
  WaitForStatus(a2, id, "LEVERT");
  const Strings seen = Statuses(a2, id);
  CHECK(std::count(seen.begin(), seen.end(), "MOTTATT") == 1);

  // B's receipt goes back to A/arkiv2: LEST there, the receipt in its inbox.
  const std::string receipt_id = NewUuid();
  json receipt = Sbd(kAgencyB, kAgencyA, receipt_id, kResponseProcess, kReceiptType);
  receipt["arkivmelding_kvittering"] = {
      {"receiptType", "OK"},
      {"relatedToMessageId", id},
      {"messages", json::array({{{"code", "200"}, {"text", "Journalført"}}})}};
  Reply receipt_sent = Send(b, receipt, /*with_file=*/false);
  INFO(receipt_sent.body);
  REQUIRE(receipt_sent.status == 200);
  WaitForStatus(a2, id, "LEST");
  json receipt_at_a2 = WaitForPeek(a2);
  CHECK(IdOf(receipt_at_a2) == receipt_id);
  CHECK(ChannelOf(receipt_at_a2) == kChannel);  // the receipt carries the original's channel
  TakeOut(a2, receipt_id);
  WaitForStatus(b, receipt_id, "LEVERT");

  // B -> A: an ordinary message reaches A's point without a channel, and only that one.
  const std::string to_a = NewUuid();
  REQUIRE(Send(b, Sbd(kAgencyB, kAgencyA, to_a, kProcess, kDocumentType)).status == 200);
  json at_a = WaitForPeek(a);
  CHECK(IdOf(at_a) == to_a);
  CHECK(ChannelOf(at_a).empty());
  TakeOut(a, to_a);
  WaitForStatus(b, to_a, "LEVERT");

  // A's default point saw nothing of A/arkiv2's traffic, and A/arkiv2 nothing of A's.
  CHECK(Exchange::Find(ex.Status(kAgencyA), id).empty());
  CHECK(Exchange::Find(ex.Status(kAgencyA), receipt_id).empty());
  CHECK(Statuses(a, id).empty());
  CHECK(Call(a, "GET", "/api/messages/in/peek").status == 204);
  const json a2_status = ex.Status(Exchange::ChannelPoint(kAgencyA, kChannel));
  CHECK(Exchange::Find(a2_status, to_a).empty());
  REQUIRE(Exchange::Find(a2_status, id).size() == 1);
  CHECK(Exchange::History(Exchange::Find(a2_status, id)[0]) ==
        Strings{"OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"});
  CHECK(Call(a2, "GET", "/api/messages/in/peek").status == 204);
  ex.CheckAlive();
}

TEST_CASE("message channels: a receipt from an outbox folder goes to the channel it answers",
          "[integration][http][channels]") {
  Exchange ex(ChannelExchange());
  const std::string a2 = ex.HttpBase(Exchange::ChannelPoint(kAgencyA, kChannel));
  const std::string b = ex.HttpBase(kAgencyB);
  const std::string id = NewUuid();
  REQUIRE(Send(a2, Sbd(kAgencyA, kAgencyB, id, kProcess, kDocumentType)).status == 200);
  CHECK(IdOf(WaitForPeek(b)) == id);
  TakeOut(b, id);
  // B's archive answers through its outbox folder: message.json alone.
  json receipt = {
      {"receiver", std::string("0192:") + kAgencyA},
      {"process", kResponseProcess},
      {"documentType", kReceiptType},
      {"arkivmelding_kvittering",
       {{"receiptType", "OK"}, {"relatedToMessageId", id}, {"messages", json::array()}}}};
  ex.DropFolder(kAgencyB, "kvittering", receipt.dump(), {});
  WaitForStatus(a2, id, "LEST");
  json at_a2 = WaitForPeek(a2);
  CHECK(at_a2["standardBusinessDocumentHeader"]["documentIdentification"]["standard"] ==
        kReceiptType);
  // A's point without a channel got nothing.
  CHECK(Call(ex.HttpBase(kAgencyA), "GET", "/api/messages/in/peek").status == 204);
  ex.CheckAlive();
}

TEST_CASE("message channels: a streamed message from a point on a channel, its statuses back there",
          "[integration][http][channels]") {
  ExchangeOptions o = ChannelExchange();
  const std::string a2_name = Exchange::ChannelPoint(kAgencyA, kChannel);
  o.agency_settings[a2_name] = {{"outbox.stream_threshold_bytes", "1024"}};
  Exchange ex(o);
  const std::string a2 = ex.HttpBase(a2_name);
  const std::string b = ex.HttpBase(kAgencyB);
  const std::string id = NewUuid();
  std::string big(256 * 1024, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7919) % 26);
  // Through A/arkiv2's outbox folder: above the threshold, it is sealed and sent as a stream.
  json metadata = Exchange::Metadata(kAgencyB);
  metadata["messageId"] = id;
  ex.DropFolder(a2_name, "stor", metadata.dump(), {{"vedtak.pdf", big}});
  json at_b = WaitForPeek(b);
  CHECK(IdOf(at_b) == id);
  httplib::Client c(b);
  c.set_read_timeout(20);
  auto pop = c.Get(("/api/messages/in/pop/" + id).c_str());
  REQUIRE(pop);
  CHECK(pop->status == 200);
  CHECK(pop->body.size() > big.size() / 2);  // the ASiC-E zip with the file
  REQUIRE(Call(b, "DELETE", "/api/messages/in/" + id).status == 200);
  WaitForStatus(a2, id, "LEVERT");
  CHECK(Statuses(ex.HttpBase(kAgencyA), id).empty());
  // It went as a stream (A/arkiv2's log says so).
  ex.ip(a2_name).WaitForLog("message " + id + " sealed as a stream for 0192:" + kAgencyB,
                            Millis(10000));
  ex.CheckAlive();
}

TEST_CASE("message channels: an SBD naming another channel than the point's is refused with 400",
          "[integration][http][channels]") {
  Exchange ex(ChannelExchange());
  const std::string a = ex.HttpBase(kAgencyA);
  const std::string a2 = ex.HttpBase(Exchange::ChannelPoint(kAgencyA, kChannel));
  auto with_channel = [](json sbd, const std::string& channel) {
    sbd["standardBusinessDocumentHeader"]["businessScope"]["scope"].push_back(
        {{"type", "MessageChannel"}, {"identifier", channel}});
    return sbd;
  };
  struct Case {
    std::string base, channel, expect;
  };
  for (const Case& c : {Case{a2, "arkiv3", "configured: 'arkiv2', given: 'arkiv3'"},
                        Case{a2, "arkiv 2", "not a message channel name"}}) {
    const std::string id = NewUuid();
    Reply r =
        Send(c.base, with_channel(Sbd(kAgencyA, kAgencyB, id, kProcess, kDocumentType), c.channel));
    INFO(r.body);
    CHECK(r.status == 400);
    CHECK(r.Json()["exception"] ==
          "no.difi.meldingsutveksling.exceptions.MessageChannelInvalidException");
    CHECK_THAT(r.Json()["message"].get<std::string>(), Catch::Contains(c.expect));
    CHECK(Call(c.base, "GET", "/api/conversations/messageId/" + id).status == 404);
  }
  // On a point without a channel the scope is only checked as a name (as eFormidling): kept,
  // and the message goes from A's own point (the signed header's sender_channel stays empty).
  Reply kept =
      Send(a, with_channel(Sbd(kAgencyA, kAgencyB, NewUuid(), kProcess, kDocumentType), kChannel));
  INFO(kept.body);
  CHECK(kept.status == 200);
  // Its own channel, spelled out, is fine.
  Reply own =
      Send(a2, with_channel(Sbd(kAgencyA, kAgencyB, NewUuid(), kProcess, kDocumentType), kChannel));
  INFO(own.body);
  CHECK(own.status == 200);
  ex.CheckAlive();
}

}  // namespace bud::test
