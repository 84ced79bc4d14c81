// The HTTP API's read side (integration-point/api/status_queries.h, json_shapes.h) without HTTP:
// status lines, conversations, message lists, capabilities, health and metrics over a real store.
#include <catch2/catch.hpp>

#include "integration-point/api/http_answer.h"
#include "integration-point/api/json_shapes.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
const std::string kId = "f0000000-0000-4000-8000-000000000001";

void Send(ApiFixture& f, const std::string& id) {
  auto sent =
      f.outgoing->SendWithFiles(ExampleSbd(id).dump(), {{"test.pdf", "application/pdf", "%PDF"}});
  REQUIRE(sent.ok());
}

TEST_CASE("status lines of a message, paged, as eFormidling shapes them", "[ip][api][status]") {
  ApiFixture f;
  Send(f, kId);
  REQUIRE(f.store
              ->Run([&](PointStore& s) {
                return s.outgoing.ApplyStatus(kId, wire::SENDT, "", NowMs()).status();
              })
              .ok());
  StatusQuery q;
  q.message_id = kId;
  auto page = f.queries->Statuses(q, 0);
  REQUIRE(page.ok());
  CHECK((*page)["totalElements"] == 2);
  CHECK((*page)["totalPages"] == 1);
  CHECK((*page)["first"] == true);
  CHECK((*page)["last"] == true);
  const json& first = (*page)["content"][0];
  CHECK(first["status"] == "OPPRETTET");
  CHECK(first["description"] == "Taken in by the sender's integration point");
  CHECK(first["direction"] == "OUTGOING");
  CHECK(first["messageId"] == kId);
  CHECK((*page)["content"][1]["status"] == "SENDT");

  // The status queue: oldest first (Next Move's FIFO), SENDT once OPPRETTET is removed.
  auto head = f.queries->PeekStatus();
  REQUIRE(head.ok());
  REQUIRE(*head);
  CHECK((**head)["status"] == "OPPRETTET");
  REQUIRE(f.queries->RemoveStatus(std::to_string((**head)["id"].get<int64_t>())).ok());
  auto newest = f.queries->PeekStatus();
  REQUIRE(newest.ok());
  REQUIRE(*newest);
  CHECK((**newest)["status"] == "SENDT");
}

TEST_CASE("no status yet: peek is empty, a page is empty", "[ip][api][status]") {
  ApiFixture f;
  auto newest = f.queries->PeekStatus();
  REQUIRE(newest.ok());
  CHECK_FALSE(*newest);
  auto page = f.queries->Statuses(StatusQuery{}, 0);
  REQUIRE(page.ok());
  CHECK((*page)["empty"] == true);
  CHECK((*page)["totalPages"] == 0);
}

TEST_CASE("page arithmetic", "[ip][api][status]") {
  json p = PageJson(json::array({1, 2, 3, 4, 5}), 45, 2, 20);
  CHECK(p["totalPages"] == 3);
  CHECK(p["numberOfElements"] == 5);
  CHECK(p["first"] == false);
  CHECK(p["last"] == true);
  CHECK(p["empty"] == false);
  json mid = PageJson(json::array({1}), 45, 1, 20);
  CHECK(mid["last"] == false);
  CHECK(Describe("FEIL", "the receiver refused it") == "the receiver refused it");
  CHECK(Describe("NOT_A_STATUS", "") == "NOT_A_STATUS");
}

TEST_CASE("a conversation by message id and by id; unknown ones are 404", "[ip][api][status]") {
  ApiFixture f;
  Send(f, kId);
  ConversationQuery by_message;
  by_message.message_id = kId;
  auto c = f.queries->Conversation(by_message, "for message " + kId);
  REQUIRE(c.ok());
  CHECK((*c)["messageId"] == kId);
  CHECK((*c)["direction"] == "OUTGOING");
  CHECK((*c)["finished"] == false);
  CHECK((*c)["serviceIdentifier"] == "DPO");
  CHECK((*c)["messageStatuses"].size() == 1);
  CHECK((*c)["messageStatuses"][0]["current"] == true);
  ConversationQuery by_id;
  by_id.id = (*c)["id"];
  auto same = f.queries->Conversation(by_id, "x");
  REQUIRE(same.ok());
  CHECK((*same)["messageId"] == kId);
  ConversationQuery unknown;
  unknown.message_id = "nope";
  auto none = f.queries->Conversation(unknown, "for message nope");
  CHECK(none.status().code() == Code::kNotFound);
  CHECK(none.status().message() == "no conversation for message nope");
}

TEST_CASE("a message sent to ourselves answers with its outgoing side", "[ip][api][status]") {
  ApiFixture f;
  Send(f, kId);
  MessageRow in;
  in.message_id = kId;
  in.sender = in.receiver = std::string("0192:") + kMe;
  in.process = kProcess;
  in.document_type = kStandard;
  in.created_ms = NowMs();
  in.expires_ms = in.created_ms + 60000;
  REQUIRE(f.store
              ->Run([&](PointStore& s) {
                return s.incoming.RecordIncoming(in, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT,
                                                 "", NowMs());
              })
              .ok());
  ConversationQuery q;
  q.message_id = kId;
  auto c = f.queries->Conversation(q, "for message " + kId);
  REQUIRE(c.ok());
  CHECK((*c)["direction"] == "OUTGOING");
  auto all = f.queries->Conversations(q, 0);
  REQUIRE(all.ok());
  CHECK((*all)["totalElements"] == 2);
}

TEST_CASE("outgoing messages list as SBDs, filtered", "[ip][api][status]") {
  ApiFixture f;
  Send(f, kId);
  Send(f, "f0000000-0000-4000-8000-000000000002");
  ConversationQuery q;
  q.direction = Direction::kOut;
  q.limit = 1;
  auto page = f.queries->Messages(q, 0);
  REQUIRE(page.ok());
  CHECK((*page)["totalElements"] == 2);
  CHECK((*page)["totalPages"] == 2);
  CHECK((*page)["content"][0].contains("standardBusinessDocumentHeader"));
  q.message_id = kId;
  auto one = f.queries->Messages(q, 0);
  REQUIRE(one.ok());
  CHECK((*one)["totalElements"] == 1);
  CHECK((*one)["content"][0]["standardBusinessDocumentHeader"]["documentIdentification"]
              ["instanceIdentifier"] == kId);
}

TEST_CASE("capabilities come from the registry entry", "[ip][api][status]") {
  ApiFixture f;
  wire::RegistryEntry e = Entry(kReceiver);
  e.add_processes("urn:no:difi:profile:other");
  f.registry.entries[kReceiver] = e;
  auto all = f.queries->Capabilities(kReceiver, "");
  REQUIRE(all.ok());
  REQUIRE((*all)["capabilities"].size() == 2);
  const json& first = (*all)["capabilities"][0];
  CHECK(first["process"] == kProcess);
  CHECK(first["serviceIdentifier"] == "DPO");
  CHECK(first["documentTypes"][0]["type"] == "arkivmelding");
  CHECK(first["documentTypes"][0]["standard"] == kStandard);
  auto filtered =
      f.queries->Capabilities(std::string("0192:") + kReceiver, "urn:no:difi:profile:other");
  REQUIRE(filtered.ok());
  CHECK((*filtered)["capabilities"].size() == 1);
  // eFormidling's 404 for an organisation the registry does not know.
  auto unknown = f.queries->Capabilities(kMe, "");
  REQUIRE_FALSE(unknown.ok());
  CHECK(HttpStatusFor(unknown.status().code()) == 404);
  CHECK_THAT(unknown.status().message(), Catch::Contains("is not in the address registry"));
  auto bad = f.queries->Capabilities("12345", "");
  CHECK(HttpStatusFor(bad.status().code()) == 400);
  f.registry.unavailable = true;
  CHECK(HttpStatusFor(f.queries->Capabilities(kReceiver, "").status().code()) == 503);
}

TEST_CASE("capabilities list each process with its own document types", "[ip][api][status]") {
  ApiFixture f;
  wire::RegistryEntry e = Entry(kReceiver);
  const std::string response = "urn:no:difi:profile:arkivmelding:response:ver1.0";
  e.add_processes(response);
  e.add_processes("urn:no:difi:profile:avtalt:avtalt:ver1.0");
  e.add_document_types("urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering");
  e.add_document_types("urn:no:difi:avtalt:xsd::avtalt");
  f.registry.entries[kReceiver] = e;
  auto all = f.queries->Capabilities(kReceiver, "");
  REQUIRE(all.ok());
  auto types = [&](size_t i) {
    std::vector<std::string> out;
    for (const auto& t : (*all)["capabilities"][i]["documentTypes"]) out.push_back(t["type"]);
    return out;
  };
  REQUIRE((*all)["capabilities"].size() == 3);
  CHECK((*all)["capabilities"][0]["process"] == kProcess);
  CHECK(types(0) == std::vector<std::string>{"arkivmelding"});
  CHECK((*all)["capabilities"][1]["process"] == response);
  CHECK(types(1) == std::vector<std::string>{"arkivmelding_kvittering"});
  // A process without a rule: every type the organisation takes.
  CHECK(types(2).size() == 3);
}

TEST_CASE("/manage/health's store check: DOWN while the store cannot be written",
          "[ip][api][status]") {
  ApiFixture f;
  CHECK(f.queries->StoreUsable().ok());
  // Another connection holds the write lock past the busy timeout (5 s): not usable.
  auto other = PointStore::Open(f.config.store);
  REQUIRE(other.ok());
  REQUIRE((*other)->point->BeginTurn().ok());  // BEGIN IMMEDIATE
  Status held = f.queries->StoreUsable();
  CHECK_FALSE(held.ok());
  CHECK(held.code() == Code::kBusy);
  (*other)->point->RollbackTurn();
  CHECK(f.queries->StoreUsable().ok());
}

TEST_CASE("health says DEGRADED without the broker, UP with it", "[ip][api][status]") {
  ApiFixture f;
  Health h = f.queries->HealthNow();
  CHECK(h.store_ok);
  CHECK(h.body["status"] == "DEGRADED");
  CHECK(h.body["store"] == "ok");
  CHECK(h.body["orgnr"] == std::string("0192:") + kMe);
  f.metrics.broker_connected = 1;
  CHECK(f.queries->HealthNow().body["status"] == "UP");
}

TEST_CASE(
    "/health is UP only with a writable store, a broker and a registry; else DOWN with "
    "each reason",
    "[ip][api][status]") {
  ApiFixture f;
  f.registry.entries[kMe] = Entry(kMe);
  Readiness r = f.queries->ReadinessNow();
  CHECK_FALSE(r.ok);  // no broker yet
  CHECK(r.body["status"] == "DOWN");
  CHECK(r.body["store"] == "ok");
  CHECK(r.body["registry"] == "ok");
  REQUIRE(r.body["problems"].size() == 1);
  CHECK(r.body["problems"][0].get<std::string>().starts_with("broker:"));
  f.metrics.broker_connected = 1;
  r = f.queries->ReadinessNow();
  CHECK(r.ok);
  CHECK(r.body["status"] == "UP");
  CHECK(r.body["problems"].empty());
  f.registry.unavailable = true;
  r = f.queries->ReadinessNow();
  CHECK_FALSE(r.ok);
  CHECK(r.body["registry"].get<std::string>().starts_with("unavailable"));
  f.registry.unavailable = false;
  f.registry.entries.erase(kMe);  // removed from the registry
  r = f.queries->ReadinessNow();
  CHECK_FALSE(r.ok);
  CHECK(r.body["registry"] == "this organisation is not registered");
}

TEST_CASE("metrics count messages by status and the queue per receiver", "[ip][api][status]") {
  ApiFixture f;
  Send(f, kId);
  f.metrics.accepted = 7;
  const std::string text = f.queries->MetricsText();
  CHECK_THAT(text,
             Catch::Contains(R"(bud_ip_messages{direction="OUTGOING",status="OPPRETTET"} 1)"));
  CHECK_THAT(text, Catch::Contains(std::string(R"(bud_ip_queue_depth{receiver="0192:)") +
                                   kReceiver + "\"} 1"));
  CHECK_THAT(text, Catch::Contains("bud_ip_accepted_total 7"));
  CHECK_THAT(text, Catch::Contains("# TYPE bud_ip_submit_to_accept_seconds histogram"));
  CHECK_THAT(text, Catch::Contains("bud_ip_broker_connected 0"));
}

}  // namespace
}  // namespace bud::ip::api::test
