// An outgoing arkivmelding.xml through the HTTP API's services on a real store: its public title
// and journal post reference become the conversation's messageTitle and messageReference
// (filterable and sortable), on the multipart path and on the create/PUT/send path, small and
// streamed; an arkivmelding.xml that cannot be read refuses the message.
#include <catch2/catch.hpp>

#include "integration-point/api/http_answer.h"
#include "integration-point/arkivmelding.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
const std::string kId = "a0000000-0000-4000-8000-000000000001";
const std::string kConversation = "c0a80000-0000-4000-8000-000000000001";  // ExampleSbd's

std::string Xml(const std::string& title, const std::string& number) {
  return R"(<?xml version="1.0" encoding="utf-8"?>
<arkivmelding xmlns="http://www.arkivverket.no/standarder/noark5/arkivmelding"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <mappe xsi:type="saksmappe"><systemID>sak-1</systemID>
    <basisregistrering xsi:type="journalpost">
      <offentligTittel>)" +
         title + "</offentligTittel><journalpostnummer>" + number +
         R"(</journalpostnummer>
    </basisregistrering>
  </mappe>
</arkivmelding>)";
}

json ConversationOf(ApiFixture& f, const std::string& id) {
  ConversationQuery q;
  q.message_id = id;
  auto c = f.queries->Conversation(q, id);
  REQUIRE(c.ok());
  return *c;
}

TEST_CASE("API: arkivmelding.xml gives the conversation its title and reference",
          "[ip][api][arkivmelding]") {
  ApiFixture f;
  f.config.max_message_bytes = 100000;
  auto sent = f.outgoing->SendWithFiles(
      ExampleSbd(kId).dump(),
      {{"test.pdf", "application/pdf", "%PDF"},
       {"arkivmelding.xml", "application/xml", Xml("Søknad om løyve", "5")}});
  REQUIRE(sent.ok());
  json c = ConversationOf(f, kId);
  CHECK(c["messageTitle"] == "Søknad om løyve");
  CHECK(c["messageReference"] == "sak-1-5");
  // The title travels to the receiver in the payload.
  auto row = f.store->Run([&](PointStore& s) { return s.outgoing.Get(kId); });
  REQUIRE(row.ok());
  REQUIRE(*row);
  wire::Payload payload;
  REQUIRE(payload.ParseFromString((*row)->payload));
  CHECK(payload.title() == "Søknad om løyve");

  // Without arkivmelding.xml: no title, and eFormidling's default reference, the conversation id.
  const std::string plain = "a0000000-0000-4000-8000-000000000002";
  REQUIRE(
      f.outgoing->SendWithFiles(ExampleSbd(plain).dump(), {{"test.pdf", "application/pdf", "x"}})
          .ok());
  json p = ConversationOf(f, plain);
  CHECK(p["messageTitle"] == "");
  CHECK(p["messageReference"] == kConversation);

  // eFormidling's filters: messageReference and messageTitle, exact.
  ConversationQuery by_ref;
  by_ref.message_reference = "sak-1-5";
  auto page = f.queries->Conversations(by_ref, 0);
  REQUIRE(page.ok());
  REQUIRE((*page)["totalElements"] == 1);
  CHECK((*page)["content"][0]["messageId"] == kId);
  by_ref.message_reference = kConversation;  // the shown default matches too
  page = f.queries->Conversations(by_ref, 0);
  REQUIRE(page.ok());
  CHECK((*page)["totalElements"] == 1);
  ConversationQuery by_title;
  by_title.title = "Søknad om løyve";
  page = f.queries->Conversations(by_title, 0);
  REQUIRE(page.ok());
  CHECK((*page)["totalElements"] == 1);
  by_title.title = "";
  page = f.queries->Conversations(by_title, 0);
  REQUIRE(page.ok());
  REQUIRE((*page)["totalElements"] == 1);
  CHECK((*page)["content"][0]["messageId"] == plain);
  ConversationQuery sorted;
  sorted.sort = {{"messageReference", false}};
  page = f.queries->Conversations(sorted, 0);
  REQUIRE(page.ok());
  CHECK((*page)["content"][0]["messageId"] == kId);  // "sak-1-5" after "" (shown as the id)
}

TEST_CASE("API: an SBD's own title wins; an unreadable arkivmelding.xml refuses the message",
          "[ip][api][arkivmelding]") {
  ApiFixture f;
  json sbd = ExampleSbd(kId);
  sbd["arkivmelding"]["tittel"] = "From the SBD";
  REQUIRE(f.outgoing
              ->SendWithFiles(sbd.dump(), {{"test.pdf", "application/pdf", "%PDF"},
                                           {"arkivmelding.xml", "text/xml", Xml("Public", "7")}})
              .ok());
  json c = ConversationOf(f, kId);
  CHECK(c["messageTitle"] == "From the SBD");
  CHECK(c["messageReference"] == "sak-1-7");

  const std::string bad = "a0000000-0000-4000-8000-0000000000bb";
  auto refused = f.outgoing->SendWithFiles(
      ExampleSbd(bad).dump(), {{"test.pdf", "application/pdf", "%PDF"},
                               {"arkivmelding.xml", "text/xml",
                                "<!DOCTYPE a [<!ENTITY x SYSTEM "
                                "\"file:///etc/passwd\">]><arkivmelding>&x;</arkivmelding>"}});
  REQUIRE_FALSE(refused.ok());
  CHECK(HttpStatusFor(refused.status().code()) == 400);
  CHECK_THAT(refused.status().message(), Catch::Matchers::Contains("DOCTYPE"));
  CHECK(f.OutStatus(bad).empty());
}

TEST_CASE("API: create, PUT arkivmelding.xml, send: small and streamed alike",
          "[ip][api][arkivmelding]") {
  ApiFixture f;
  f.config.max_message_bytes = 100000;  // stream_threshold_bytes stays 100: the big one streams
  auto run = [&](const std::string& id, const std::string& xml) {
    REQUIRE(f.drafts->Create(ExampleSbd(id).dump()).ok());
    REQUIRE(
        f.drafts
            ->Upload(id, {"test.pdf", "Doc", "application/pdf", std::nullopt}, StringSource("%PDF"))
            .ok());
    REQUIRE(f.drafts
                ->Upload(id, {"arkivmelding.xml", "Arkivmelding", "text/xml", std::nullopt},
                         StringSource(xml))
                .ok());
    return f.drafts->Send(id);
  };
  // Small: read with the files (AddAttachment); under 100 bytes together it is not streamed.
  const std::string small_xml =
      "<arkivmelding xmlns=\"http://www.arkivverket.no/standarder/noark5/arkivmelding\"/>";
  auto small = run(kId, small_xml);
  REQUIRE_FALSE(small.ok());  // no saksmappe: eFormidling cannot read it either
  CHECK_THAT(small.status().message(), Catch::Matchers::Contains("saksmappe"));

  const std::string big = "a0000000-0000-4000-8000-0000000000cc";
  REQUIRE(run(big, Xml("Stor sak", "42")).ok());
  json c = ConversationOf(f, big);
  CHECK(c["messageTitle"] == "Stor sak");
  CHECK(c["messageReference"] == "sak-1-42");
  auto row = f.store->Run([&](PointStore& s) { return s.outgoing.Get(big); });
  REQUIRE(row.ok());
  REQUIRE(*row);
  wire::Payload payload;
  REQUIRE(payload.ParseFromString((*row)->payload));
  CHECK(payload.title() == "Stor sak");
}

}  // namespace
}  // namespace bud::ip::api::test
