// Next Move API requests refused after their body was taken are kept as refusals for the admin
// (integration-point/api/api_refusals.h), over HTTP in-process: the routes as http_api.cc wires
// them, a real store, cpp-httplib's client.
#include "integration-point/api/api_refusals.h"

#include <catch2/catch.hpp>

#include "common/storage/sqlite.h"
#include "tests/ip/api_fixture.h"
#include "tests/ip/store_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
const std::string kId = "c0000000-0000-4000-8000-0000000000e1";
const std::string kBoundary = "b0undary";
const std::string kCt = "multipart/form-data; boundary=" + kBoundary;

std::string Multipart(const json& sbd) {
  return "--" + kBoundary +
         "\r\nContent-Disposition: form-data; name=sbd\r\nContent-Type: application/json\r\n\r\n" +
         sbd.dump() + "\r\n--" + kBoundary +
         "\r\nContent-Disposition: form-data; name=doc; filename=test.pdf\r\n\r\n%PDF\r\n--" +
         kBoundary + "--\r\n";
}

struct Served : ApiFixture {
  std::unique_ptr<HttpServer> server;
  std::unique_ptr<httplib::Client> client;
  Served() {
    server = Serve();
    client = std::make_unique<httplib::Client>("http://" + server->address());
  }
  std::vector<RefusalRow> Open() {
    auto rows = store->Run([](PointStore& s) { return s.refusals.List(false, 100); });
    REQUIRE(rows.ok());
    return *rows;
  }
  std::vector<RefusalRow> All() {
    auto rows = store->Run([](PointStore& s) { return s.refusals.List(true, 100); });
    REQUIRE(rows.ok());
    return *rows;
  }
};

TEST_CASE("a refused multipart message is kept with its id and resolved when sent again right",
          "[ip][api][refusals]") {
  Served s;
  const std::string unknown = "974760673";  // valid check digit, not in the registry
  auto refused =
      s.client->Post("/api/messages/out/multipart", Multipart(ExampleSbd(kId, unknown)), kCt);
  REQUIRE(refused);
  REQUIRE(refused->status == 400);
  auto open = s.Open();
  REQUIRE(open.size() == 1);
  CHECK(open[0].source == "api");
  CHECK(open[0].name == "POST /api/messages/out/multipart");
  CHECK(open[0].message_id == kId);
  CHECK(open[0].reason_class == RefusalClass::kApi);
  CHECK_THAT(open[0].reason, Catch::StartsWith("400: ") && Catch::Contains(unknown));
  CHECK(open[0].refused_ms == s.now);
  auto counts = s.store->Run([](PointStore& st) { return st.refusals.Counts(); });
  REQUIRE(counts.ok());
  CHECK(counts->by_class["api"] == 1);
  CHECK(counts->open == 1);

  // The archive system fixes the receiver and sends the same id: taken in, refusal resolved.
  s.now += 1000;
  auto sent = s.client->Post("/api/messages/out/multipart", Multipart(ExampleSbd(kId)), kCt);
  REQUIRE(sent);
  REQUIRE(sent->status == 200);
  CHECK(s.Open().empty());
  auto all = s.All();
  REQUIRE(all.size() == 1);
  CHECK(all[0].resolved_ms == s.now);
  CHECK(all[0].resolved_message_id == kId);
}

TEST_CASE("refused drafts, files and sends are kept; answers the client must retry are not",
          "[ip][api][refusals]") {
  Served s;
  // A body that is not an SBD: kept with no id.
  auto bad = s.client->Post("/api/messages/out", "{\"not\": \"an sbd\"}", "application/json");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  // A file for a draft that does not exist, and a send of one: kept with the id of the path.
  httplib::Headers h = {{"Content-Disposition", "attachment; name=Doc; filename=test.pdf"}};
  auto put = s.client->Put("/api/messages/out/" + kId, h, "%PDF", "application/pdf");
  REQUIRE(put);
  CHECK(put->status == 404);
  auto send = s.client->Post("/api/messages/out/" + kId, "", "application/json");
  REQUIRE(send);
  CHECK(send->status == 404);
  // A registry that does not answer: 503, the client retries; nothing for the admin.
  s.registry.unavailable = true;
  auto later = s.client->Post("/api/messages/out", ExampleSbd(kId).dump(), "application/json");
  REQUIRE(later);
  CHECK(later->status == 503);
  s.registry.unavailable = false;
  // A GET that fails is not an intake refusal.
  CHECK(s.client->Get("/api/messages/out/" + kId)->status == 404);

  auto open = s.Open();
  REQUIRE(open.size() == 3);  // newest first
  CHECK(open[0].name == "POST /api/messages/out/" + kId);
  CHECK(open[0].message_id == kId);
  CHECK(open[1].name == "PUT /api/messages/out/" + kId);
  CHECK(open[1].message_id == kId);
  CHECK_THAT(open[1].reason, Catch::StartsWith("404: "));
  CHECK(open[2].name == "POST /api/messages/out");
  CHECK(open[2].message_id.empty());

  // Created, given a file and sent under the id in upper case: both refusals of the id resolve;
  // the one without an id stays until an admin dismisses it.
  std::string upper = kId;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  REQUIRE(s.client->Post("/api/messages/out", ExampleSbd(kId).dump(), "application/json")->status ==
          200);
  REQUIRE(s.client->Put("/api/messages/out/" + kId, h, "%PDF", "application/pdf")->status == 200);
  CHECK(s.Open().size() == 3);  // a draft is not taken in yet
  REQUIRE(s.client->Post("/api/messages/out/" + upper, "", "application/json")->status == 200);
  open = s.Open();
  REQUIRE(open.size() == 1);
  CHECK(open[0].message_id.empty());
  Status dismissed =
      s.store->Run([&](PointStore& st) { return st.refusals.Dismiss(open[0].id, s.now); });
  CHECK(dismissed.ok());
  CHECK(s.Open().empty());
  Status again =
      s.store->Run([&](PointStore& st) { return st.refusals.Dismiss(open[0].id, s.now); });
  CHECK(again.code() == Code::kNotFound);
}

// The engine's turn holds the store's write lock while it seals (engine/turn.h); each message
// taken in looks for earlier refusals of its id, and when there is none that look must not wait
// for the lock (it made every POST wait for a turn: the sender API ran at 700 messages a second).
TEST_CASE("a message taken in looks for its earlier refusals without the store's write lock",
          "[ip][api][refusals]") {
  store_test::Fixture f;
  RefusalRow r;
  r.source = "api";
  r.name = "POST /api/messages/out/multipart";
  r.message_id = kId;
  r.reason = "400: x";
  r.reason_class = RefusalClass::kApi;
  REQUIRE(f.store->refusals.Record(r).ok());
  auto engine = storage::Db::Open(f.path).value();
  REQUIRE(engine->Exec("BEGIN IMMEDIATE").ok());  // as the engine's turn
  auto none = f.store->refusals.ResolveApi(NewUuid(), NowMs());
  INFO(none.status().ToString());
  REQUIRE(none.ok());  // not SQLITE_BUSY after the busy timeout
  CHECK(*none == 0);
  REQUIRE(engine->Exec("COMMIT").ok());
  CHECK(f.store->refusals.ResolveApi(kId, NowMs()).value() == 1);
  CHECK(f.store->refusals.ResolveApi(kId, NowMs()).value() == 0);  // resolved once
}

TEST_CASE("the message id of an SBD is read without trusting its shape", "[ip][api][refusals]") {
  CHECK(SbdMessageId(ExampleSbd(kId).dump()) == kId);
  CHECK(SbdMessageId("").empty());
  CHECK(SbdMessageId("not json").empty());
  CHECK(SbdMessageId("[1,2]").empty());
  CHECK(SbdMessageId(R"({"standardBusinessDocumentHeader": []})").empty());
  CHECK(SbdMessageId(R"({"standardBusinessDocumentHeader": {"documentIdentification":
                         {"instanceIdentifier": 7}}})")
            .empty());
  CHECK(SbdMessageId(std::string(100000, '[')).empty());  // deep nesting: not a crash
}

}  // namespace
}  // namespace bud::ip::api::test
