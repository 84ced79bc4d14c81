// The routes over the services, in-process: the HTTP server (common/http_server.h) on an
// OS-picked loopback port with the routes of integration-point/api/routes.h wired to services
// over a real store, asked by an HTTP client. What the services answer reaches the client with
// the HTTP status http_answer.h maps it to and the Spring-shaped error body.
#include <catch2/catch.hpp>

#include "common/http_server.h"
#include "integration-point/api/routes.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
const std::string kId = "b0000000-0000-4000-8000-000000000001";

struct Served : ApiFixture {
  std::unique_ptr<HttpServer> server;
  std::unique_ptr<httplib::Client> client;
  Served() {
    server = Serve();
    client = std::make_unique<httplib::Client>("http://" + server->address());
  }
};

std::string Message(const httplib::Result& r) {
  return json::parse(r->body)["message"].get<std::string>();
}

TEST_CASE("routes: create, PUT, send, then statuses and the conversation over HTTP",
          "[ip][api][routes]") {
  Served s;
  auto created = s.client->Post("/api/messages/out", ExampleSbd(kId).dump(), "application/json");
  REQUIRE(created);
  CHECK(created->status == 200);
  httplib::Headers h = {{"Content-Disposition", R"(attachment; name="Doc"; filename="test.pdf")"}};
  auto put = s.client->Put("/api/messages/out/" + kId, h, "%PDF bytes", "application/pdf");
  REQUIRE(put);
  CHECK(put->status == 200);
  auto sent = s.client->Post("/api/messages/out/" + kId, "", "application/json");
  REQUIRE(sent);
  CHECK(sent->status == 200);
  CHECK(s.OutStatus(kId) == "OPPRETTET");
  auto statuses = s.client->Get("/api/statuses/" + kId);
  REQUIRE(statuses);
  CHECK(json::parse(statuses->body)["content"][0]["status"] == "OPPRETTET");
  auto conversation = s.client->Get("/api/conversations/messageId/" + kId);
  REQUIRE(conversation);
  CHECK(json::parse(conversation->body)["messageId"] == kId);
  auto again = s.client->Delete("/api/messages/out/" + kId);
  REQUIRE(again);
  CHECK(again->status == 409);
  CHECK_THAT(Message(again), Catch::Contains("was already sent and cannot be removed"));
}

TEST_CASE("routes: refusals carry their HTTP status and a JSON message", "[ip][api][routes]") {
  Served s;
  auto no_file = s.client->Put("/api/messages/out/" + kId, "x", "application/pdf");
  REQUIRE(no_file);
  CHECK(no_file->status == 400);
  CHECK(no_file->get_header_value("Connection") == "close");
  CHECK_THAT(Message(no_file), Catch::StartsWith("Content-Disposition needs a filename"));
  httplib::Headers h = {{"Content-Disposition", R"(attachment; filename="test.pdf")"}};
  auto no_draft = s.client->Put("/api/messages/out/" + kId, h, "x", "application/pdf");
  REQUIRE(no_draft);
  CHECK(no_draft->status == 404);
  CHECK(json::parse(no_draft->body)["path"] == "/api/messages/out/" + kId);
  auto pop = s.client->Get("/api/messages/in/pop/" + kId);
  REQUIRE(pop);
  CHECK(pop->status == 404);
  auto peek = s.client->Get("/api/messages/in/peek");
  REQUIRE(peek);
  CHECK(peek->status == 204);
  auto status_peek = s.client->Get("/api/statuses/peek");
  REQUIRE(status_peek);
  CHECK(status_peek->status == 204);
  // size=0 falls back to the default, as eFormidling's (Spring's) does.
  auto zero_size = s.client->Get("/api/conversations?size=0");
  REQUIRE(zero_size);
  CHECK(zero_size->status == 200);
  CHECK(json::parse(zero_size->body)["size"] == 10);
  auto bad_sort = s.client->Get("/api/conversations?sort=secret");
  REQUIRE(bad_sort);
  CHECK(bad_sort->status == 400);
  CHECK_THAT(Message(bad_sort), Catch::Contains("no property 'secret' to sort by"));
  auto not_multipart = s.client->Post("/api/messages/out/multipart", "{}", "application/json");
  REQUIRE(not_multipart);
  CHECK(not_multipart->status == 400);
  auto no_conversation = s.client->Get("/api/conversations/0");
  REQUIRE(no_conversation);
  CHECK(no_conversation->status == 404);
  CHECK(Message(no_conversation) == "no conversation 0");
}

TEST_CASE("routes: multipart, capabilities, health and metrics", "[ip][api][routes]") {
  Served s;
  httplib::MultipartFormDataItems items = {
      {"sbd", ExampleSbd(kId).dump(), "", "application/json"},
      {"hoveddokument", "%PDF", "test.pdf", "application/pdf"}};
  auto sent = s.client->Post("/api/messages/out/multipart", items);
  REQUIRE(sent);
  CHECK(sent->status == 200);
  CHECK(s.OutStatus(kId) == "OPPRETTET");
  auto caps = s.client->Get(std::string("/api/capabilities/") + kReceiver);
  REQUIRE(caps);
  CHECK(json::parse(caps->body)["capabilities"][0]["process"] == kProcess);
  auto bad_org = s.client->Get("/api/capabilities/123");
  REQUIRE(bad_org);
  CHECK(bad_org->status == 400);
  auto health = s.client->Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body)["status"] == "DEGRADED");
  auto metrics = s.client->Get("/metrics");
  REQUIRE(metrics);
  CHECK_THAT(metrics->body,
             Catch::Contains(R"(bud_ip_messages{direction="OUTGOING",status="OPPRETTET"} 1)"));
}

}  // namespace
}  // namespace bud::ip::api::test

namespace bud::ip::api::test {
namespace {

TEST_CASE("routes: sort=prop[,asc|desc] orders conversations and statuses", "[ip][api][routes]") {
  Served s;
  const std::vector<std::string> ids = {"b0000000-0000-4000-8000-0000000000e2",
                                        "b0000000-0000-4000-8000-0000000000e1",
                                        "b0000000-0000-4000-8000-0000000000e3"};
  for (const auto& id : ids) {
    httplib::MultipartFormDataItems items = {{"sbd", ExampleSbd(id).dump(), "", "application/json"},
                                             {"f", "%PDF", "test.pdf", "application/pdf"}};
    auto sent = s.client->Post("/api/messages/out/multipart", items);
    REQUIRE(sent);
    REQUIRE(sent->status == 200);
  }
  auto order = [&](const std::string& path) {
    auto r = s.client->Get(path.c_str());
    REQUIRE(r);
    REQUIRE(r->status == 200);
    const json page = json::parse(r->body);
    std::vector<std::string> out;
    for (const auto& c : page["content"]) out.push_back(c["messageId"]);
    return out;
  };
  const std::vector<std::string> ascending = {ids[1], ids[0], ids[2]};
  const std::vector<std::string> descending = {ids[2], ids[0], ids[1]};
  CHECK(order("/api/conversations?sort=messageId") == ascending);
  CHECK(order("/api/conversations?sort=messageId,asc") == ascending);
  CHECK(order("/api/conversations?sort=messageId,DESC") == descending);
  CHECK(order("/api/conversations?sort=direction&sort=messageId,desc") == descending);
  CHECK(order("/api/statuses?sort=messageId,desc") == descending);
  CHECK(order("/api/statuses?sort=id,desc") == std::vector<std::string>{ids[2], ids[1], ids[0]});
  CHECK(order("/api/statuses") == ids);  // the default: id, ascending
  auto bad = s.client->Get("/api/statuses?sort=lastUpdate,sideways");
  REQUIRE(bad);
  CHECK(bad->status == 400);
}

}  // namespace
}  // namespace bud::ip::api::test
