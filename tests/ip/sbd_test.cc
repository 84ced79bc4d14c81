// Integration point: the Next Move SBD (integration-point/sbd.h) and the [http]/[incoming]
// config keys.
#include <catch2/catch.hpp>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/uuid.h"
#include "integration-point/config.h"
#include "integration-point/sbd.h"
#include "tests/support/temp_dir.h"

namespace bud::ip {
namespace {

using nlohmann::json;
const Orgnr kMe = *Orgnr::Parse("910076787");

json Example() {
  return json::parse(R"({
    "standardBusinessDocumentHeader": {
      "headerVersion": "1.0",
      "receiver": [{"identifier": {"value": "0192:910075918", "authority": "iso6523-actorid-upis"}}],
      "documentIdentification": {"standard": "urn:no:difi:arkivmelding:xsd::arkivmelding",
                                 "typeVersion": "1.0", "type": "arkivmelding"},
      "businessScope": {"scope": [{"type": "ConversationId",
        "identifier": "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0"}]}
    },
    "arkivmelding": {"hoveddokument": "a.pdf", "tittel": "Vedtak"}
  })");
}

TEST_CASE("an SBD becomes a draft: ids generated, sender and expiry filled in", "[ip][sbd]") {
  json completed;
  auto d = ParseSbd(Example(), kMe, {}, &completed);
  REQUIRE(d.ok());
  CHECK(IsUuid(d->message_id));
  CHECK(IsUuid(d->conversation_id));
  CHECK(d->receiver.wire() == "0192:910075918");
  CHECK(d->process == "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0");
  CHECK(d->document_type == "urn:no:difi:arkivmelding:xsd::arkivmelding");
  CHECK(d->title == "Vedtak");
  CHECK(d->expires_ms - d->created_ms == OutboxLimits{}.default_ttl_ms);
  const json& h = completed["standardBusinessDocumentHeader"];
  CHECK(h["sender"][0]["identifier"]["value"] == "0192:910076787");
  CHECK(h["documentIdentification"]["instanceIdentifier"] == d->message_id);
  CHECK(h["businessScope"]["scope"][0]["instanceIdentifier"] == d->conversation_id);
  CHECK(h["documentIdentification"].contains("creationDateAndTime"));
  // The payload's metadata is the completed SBD, and SbdOf gives it back.
  CHECK(json::parse(d->payload.metadata_json()) == completed);
  MessageRow row;
  row.message_id = d->message_id;
  row.conversation_id = d->conversation_id;
  row.sender = kMe.wire();
  row.receiver = d->receiver.wire();
  row.process = d->process;
  row.document_type = d->document_type;
  row.created_ms = d->created_ms;
  row.expires_ms = d->expires_ms;
  json back = SbdOf(row, d->payload.metadata_json());
  CHECK(back["arkivmelding"]["hoveddokument"] == "a.pdf");
  CHECK(back["standardBusinessDocumentHeader"]["documentIdentification"]["type"] == "arkivmelding");
  // Without an SBD as metadata (a message from an outbox folder) one is built from the header.
  json built = SbdOf(row, R"({"receiver":"910075918"})");
  CHECK(built["standardBusinessDocumentHeader"]["businessScope"]["scope"][0]["identifier"] ==
        d->process);
  CHECK(built["arkivmelding"].is_object());
}

TEST_CASE("SBD errors name the field", "[ip][sbd]") {
  struct Case {
    std::function<void(json&)> change;
    std::string phrase;
  } cases[] = {
      {[](json& j) { j = json::array(); }, "must be a JSON object"},
      {[](json& j) { j.erase("standardBusinessDocumentHeader"); }, "'standardBusinessDocumentHeader' is missing"},
      {[](json& j) { j["standardBusinessDocumentHeader"].erase("receiver"); }, "receiver[0].identifier.value' is missing"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["receiver"] = json::array(); }, "must be a list with one party"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["receiver"][0]["identifier"]["value"] = 42; }, "must be a string"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["receiver"][0]["identifier"]["value"] = "0192:910075919"; }, "check digit"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["sender"] = json::array({{{"identifier", {{"value", "0192:910075918"}}}}}); }, "sends for 0192:910076787"},
      {[](json& j) { j["standardBusinessDocumentHeader"].erase("documentIdentification"); }, "documentIdentification' is missing"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["documentIdentification"].erase("standard"); }, "standard' is missing"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["documentIdentification"]["type"] = "x"; }, "names 'arkivmelding'"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"] = "1"; }, "is not a UUID"},
      {[](json& j) { j["standardBusinessDocumentHeader"].erase("businessScope"); }, "no entry with \"type\": \"ConversationId\""},
      {[](json& j) { j["standardBusinessDocumentHeader"]["businessScope"]["scope"][0].erase("identifier"); }, "identifier' is missing"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["businessScope"]["scope"][0]["instanceIdentifier"] = "c"; }, "is not a UUID"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["businessScope"]["scope"][0]["scopeInformation"] = 3; }, "must be a list"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["businessScope"]["scope"][0]["scopeInformation"] = json::array({{{"expectedResponseDateTime", "soon"}}}); }, "not an ISO 8601 time"},
      {[](json& j) { j["standardBusinessDocumentHeader"]["businessScope"]["scope"][0]["scopeInformation"] = json::array({{{"expectedResponseDateTime", "2001-01-01T00:00:00Z"}}}); }, "in the past"},
      {[](json& j) { j["arkivmelding"] = "text"; }, "'arkivmelding' must be a JSON object"},
  };
  for (auto& c : cases) {
    json j = Example();
    c.change(j);
    auto d = ParseSbd(j, kMe, {});
    INFO(j.dump());
    REQUIRE(!d.ok());
    CHECK(d.status().code() == Code::kInvalidArgument);
    CHECK_THAT(d.status().message(), Catch::Contains(c.phrase));
  }
}

TEST_CASE("[http] and [incoming] keys are checked at load", "[ip][config]") {
  test::TempDir dir;
  const std::string base = R"([agency]
orgnr = "910076787"
[paths]
outbox = "o"
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
)";
  auto load = [&](const std::string& extra) {
    const std::string path = dir.path() + "/ip.toml";
    FILE* f = fopen(path.c_str(), "w");
    fputs((base + extra).c_str(), f);
    fclose(f);
    return Config::Load(path);
  };
  // Without an inbox and without the API there is nowhere to put incoming messages.
  auto no_inbox = load("");
  REQUIRE(!no_inbox.ok());
  CHECK_THAT(no_inbox.status().message(), Catch::Contains("paths.inbox"));
  struct Bad {
    std::string extra, phrase;
  } cases[] = {
      {"[incoming]\ndelivery = \"mail\"\n", "must be \"folder\""},
      {"[incoming]\ndelivery = \"api\"\n", "needs the HTTP API"},
      {"[incoming]\ndelivery = \"api\"\n[http]\nlisten = \"0.0.0.0:9093\"\n", "reachable from other machines"},
      {"[incoming]\ndelivery = \"api\"\n[http]\nlisten = \"127.0.0.1:x\"\n", "is not host:port"},
      {"[incoming]\ndelivery = \"api\"\n[http]\nlisten = \"9093\"\ntls_cert = \"c\"\n", "go together"},
      {"[incoming]\ndelivery = \"api\"\n[http]\nlisten = \"9093\"\npeek_lock_ms = 5\n", "peek_lock_ms"},
      {"[incoming]\ndelivery = \"api\"\n[http]\nlisten = \"9093\"\nlistne = 1\n", "unknown key"},
  };
  for (const auto& c : cases) {
    auto r = load(c.extra);
    INFO(c.extra);
    REQUIRE(!r.ok());
    CHECK_THAT(r.status().message(), Catch::Contains(c.phrase));
  }
  auto ok = load("[incoming]\ndelivery = \"api\"\n[http]\nlisten = \"9093\"\n");
  REQUIRE(ok.ok());
  CHECK(ok->http.listen == "9093");
  CHECK(ok->delivery == "api");
  auto open = load("[incoming]\ndelivery = \"api\"\n[http]\nlisten = \"0.0.0.0:9093\"\n"
                   "token_file = \"t\"\n");
  CHECK(open.ok());
}

}  // namespace
}  // namespace bud::ip
