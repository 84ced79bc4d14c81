// eFormidling's filters on the API inbox, over the real routes and a real store: peek and the
// list honour serviceIdentifier, messageId (any case), conversationId, senderIdentifier,
// receiverIdentifier and process; peek?messageId=X locks exactly X while the others wait; a peek
// for another service identifier gets 204; pop or delete of an unlocked message is eFormidling's
// 400.
#include <catch2/catch.hpp>

#include "common/http_server.h"
#include "integration-point/api/routes.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
const std::string kOther = "974760673";
const std::string kResponse = "urn:no:difi:profile:arkivmelding:response:ver1.0";

struct Served : ApiFixture {
  std::unique_ptr<HttpServer> server;
  std::unique_ptr<httplib::Client> client;
  Served() {
    server = Serve();
    client = std::make_unique<httplib::Client>("http://" + server->address());
  }
  // An incoming message kept for the API, as the engine records it.
  void Receive(const std::string& id, int64_t created_ms, const std::string& sender,
               const std::string& process = kProcess) {
    MessageRow m;
    m.message_id = id;
    m.conversation_id = "c" + id.substr(1);
    m.sender = "0192:" + sender;
    m.receiver = std::string("0192:") + kMe;
    m.process = process;
    m.document_type = kStandard;
    m.created_ms = created_ms;
    m.expires_ms = created_ms + 3600 * 1000;
    m.state = WorkState::kApi;
    wire::Payload p;
    p.set_message_id(id);
    p.set_metadata_json(ExampleSbd(id, kMe).dump());
    auto* a = p.add_attachments();
    a->set_name("test.pdf");
    a->set_data("%PDF " + id);
    p.SerializeToString(&m.payload);
    REQUIRE(store
                ->Run([&](PointStore& s) {
                  return s.incoming.RecordIncoming(m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT,
                                                   "", created_ms);
                })
                .ok());
  }
  // The message id of the SBD peek answered, "" for 204.
  std::string Peek(const std::string& query = "") {
    auto r = client->Get(("/api/messages/in/peek" + query).c_str());
    REQUIRE(r);
    if (r->status == 204) return "";
    REQUIRE(r->status == 200);
    return json::parse(
        r->body)["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"];
  }
  std::vector<std::string> List(const std::string& query = "") {
    auto r = client->Get(("/api/messages/in" + query).c_str());
    REQUIRE(r);
    REQUIRE(r->status == 200);
    std::vector<std::string> ids;
    const json page = json::parse(r->body);
    for (const auto& sbd : page["content"]) {
      ids.push_back(
          sbd["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"]);
    }
    return ids;
  }
};

const std::string kA = "a0000000-0000-4000-8000-00000000000a";
const std::string kB = "b0000000-0000-4000-8000-00000000000b";
const std::string kC = "c0000000-0000-4000-8000-00000000000c";

TEST_CASE("peek?messageId=X locks exactly X while the others wait", "[ip][api][peek]") {
  Served s;
  s.Receive(kA, s.now - 3000, kReceiver);
  s.Receive(kB, s.now - 2000, kReceiver);
  s.Receive(kC, s.now - 1000, kReceiver);
  // The newest, by its id in upper case (as many archive systems write GUIDs).
  std::string upper = kC;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK(s.Peek("?messageId=" + upper) == kC);
  CHECK(s.Peek("?messageId=" + kC).empty());  // locked now
  auto pop = s.client->Get(("/api/messages/in/pop/" + kC).c_str());
  REQUIRE(pop);
  CHECK(pop->status == 200);
  // The others were not locked: pop of the oldest is eFormidling's 400, not locked.
  auto not_locked = s.client->Get(("/api/messages/in/pop/" + kA).c_str());
  REQUIRE(not_locked);
  CHECK(not_locked->status == 400);
  CHECK(json::parse(not_locked->body)["exception"] ==
        "no.difi.meldingsutveksling.exceptions.MessageNotLockedException");
  auto delete_unlocked = s.client->Delete(("/api/messages/in/" + kB).c_str());
  REQUIRE(delete_unlocked);
  CHECK(delete_unlocked->status == 400);
  // A plain peek takes the oldest, then the next.
  CHECK(s.Peek() == kA);
  CHECK(s.Peek() == kB);
  CHECK(s.Peek().empty());
  // Unknown id: nothing.
  CHECK(s.Peek("?messageId=d0000000-0000-4000-8000-00000000000d").empty());
}

TEST_CASE("peek and the list honour eFormidling's filters", "[ip][api][peek]") {
  Served s;
  s.Receive(kA, s.now - 3000, kReceiver);
  s.Receive(kB, s.now - 2000, kOther, kResponse);
  s.Receive(kC, s.now - 1000, kOther);
  CHECK(s.List() == std::vector<std::string>{kA, kB, kC});
  CHECK(s.List("?serviceIdentifier=DPO") == std::vector<std::string>{kA, kB, kC});
  CHECK(s.List("?serviceIdentifier=DPE").empty());
  CHECK(s.List("?senderIdentifier=0192:" + kOther) == std::vector<std::string>{kB, kC});
  CHECK(s.List("?senderIdentifier=" + kOther + "&process=" + kProcess) ==
        std::vector<std::string>{kC});
  CHECK(s.List("?receiverIdentifier=" + std::string(kMe)).size() == 3);
  CHECK(s.List("?receiverIdentifier=" + kOther).empty());
  CHECK(s.List("?conversationId=c" + kB.substr(1)) == std::vector<std::string>{kB});
  CHECK(s.List("?messageId=" + kA) == std::vector<std::string>{kA});

  // A DPE consumer locks nothing.
  CHECK(s.Peek("?serviceIdentifier=DPE").empty());
  CHECK(s.Peek("?serviceIdentifier=DPV&messageId=" + kA).empty());
  // The response process: only B.
  CHECK(s.Peek("?process=" + kResponse) == kB);
  CHECK(s.Peek("?process=" + kResponse).empty());
  // From the other sender under the administration process: C, though A is older.
  CHECK(s.Peek("?senderIdentifier=0192:" + kOther) == kC);
  CHECK(s.Peek("?conversationId=c" + kA.substr(1) + "&serviceIdentifier=dpo") == kA);
  CHECK(s.Peek().empty());
  // The list shows locked ones too.
  CHECK(s.List().size() == 3);

  // A malformed organisation number is a 400 naming the parameter.
  auto bad = s.client->Get("/api/messages/in/peek?senderIdentifier=123");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK_THAT(json::parse(bad->body)["message"].get<std::string>(),
             Catch::Contains("senderIdentifier"));
}

TEST_CASE("pages are Spring Data's: pageable, sort, size default 10 and clamped",
          "[ip][api][page]") {
  Served s;
  for (int i = 0; i < 12; ++i) {
    s.Receive(fmt::format("a0000000-0000-4000-8000-0000000000{:02}", i), s.now - 1000 + i,
              kReceiver);
  }
  auto page = [&](const std::string& query) {
    auto r = s.client->Get(("/api/messages/in" + query).c_str());
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
  };
  json first = page("");
  CHECK(first["content"].size() == 10);
  CHECK(first["size"] == 10);
  CHECK(first["totalElements"] == 12);
  CHECK(first["totalPages"] == 2);
  CHECK(first["first"] == true);
  CHECK(first["last"] == false);
  CHECK(first["numberOfElements"] == 10);
  CHECK(first["pageable"] ==
        json{{"sort", {{"sorted", true}, {"unsorted", false}, {"empty", false}}},
             {"pageNumber", 0},
             {"pageSize", 10},
             {"offset", 0},
             {"paged", true},
             {"unpaged", false}});
  CHECK(first["sort"] == json{{"sorted", true}, {"unsorted", false}, {"empty", false}});
  json second = page("?page=1");
  CHECK(second["content"].size() == 2);
  CHECK(second["last"] == true);
  CHECK(second["pageable"]["offset"] == 10);
  // Spring's fallbacks: size < 1 or not a number -> 10, page < 0 -> 0, size over 2000 -> 2000.
  CHECK(page("?size=0")["size"] == 10);
  CHECK(page("?size=-5")["size"] == 10);
  CHECK(page("?size=x")["size"] == 10);
  CHECK(page("?page=-1")["number"] == 0);
  CHECK(page("?size=5000")["size"] == 2000);
  CHECK(page("?size=5000")["content"].size() == 12);
}

}  // namespace
}  // namespace bud::ip::api::test
