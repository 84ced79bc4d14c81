// DELETE /api/conversations/{id} and /api/conversations/messageId/{messageId} over HTTP on a real
// store: the conversation leaves the conversation and status views and the status queue, while
// the message stays for the engine (its statuses still advance) and for the incoming dedup.
#include <catch2/catch.hpp>

#include "common/http_server.h"
#include "common/storage/sqlite.h"
#include "integration-point/api/routes.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
const std::string kOut = "d0000000-0000-4000-8000-000000000001";
const std::string kOther = "d0000000-0000-4000-8000-000000000002";
const std::string kIn = "d0000000-0000-4000-8000-0000000000aa";

struct Served : ApiFixture {
  std::unique_ptr<HttpServer> server;
  std::unique_ptr<httplib::Client> client;
  Served() {
    server = Serve();
    client = std::make_unique<httplib::Client>("http://" + server->address());
  }
  void Send(const std::string& id) {
    auto sent =
        outgoing->SendWithFiles(ExampleSbd(id).dump(), {{"test.pdf", "application/pdf", "%PDF"}});
    REQUIRE(sent.ok());
  }
  void Receive(const std::string& id) {
    MessageRow in;
    in.message_id = id;
    in.direction = Direction::kIn;
    in.conversation_id = "c0a80000-0000-4000-8000-0000000000aa";
    in.sender = std::string("0192:") + kReceiver;
    in.receiver = std::string("0192:") + kMe;
    in.process = kProcess;
    in.document_type = kStandard;
    in.created_ms = NowMs();
    in.expires_ms = in.created_ms + 60000;
    in.state = WorkState::kApi;
    REQUIRE(store
                ->Run([&](PointStore& s) {
                  return s.incoming.RecordIncoming(in, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT,
                                                   "", NowMs());
                })
                .ok());
  }
  json Get(const std::string& path, int want = 200) {
    auto r = client->Get(path);
    REQUIRE(r);
    INFO(path << ": " << r->body);
    REQUIRE(r->status == want);
    return r->body.empty() ? json() : json::parse(r->body);
  }
  int Delete(const std::string& path) {
    auto r = client->Delete(path);
    REQUIRE(r);
    return r->status;
  }
};

TEST_CASE("DELETE a conversation by id: gone from the views, kept for the engine",
          "[ip][api][conversations]") {
  Served s;
  s.Send(kOut);
  s.Send(kOther);
  const int64_t id = s.Get("/api/conversations/messageId/" + kOut)["id"];
  const int64_t other_id = s.Get("/api/conversations/messageId/" + kOther)["id"];
  CHECK(s.Get("/api/conversations")["totalElements"] == 2);

  CHECK(s.Delete("/api/conversations/" + std::to_string(id)) == 200);
  s.Get("/api/conversations/" + std::to_string(id), 404);
  s.Get("/api/conversations/messageId/" + kOut, 404);
  json list = s.Get("/api/conversations");
  REQUIRE(list["totalElements"] == 1);
  CHECK(list["content"][0]["id"] == other_id);
  CHECK(s.Get("/api/conversations/queue")["totalElements"] == 1);
  CHECK(s.Get("/api/statuses?messageId=" + kOut)["totalElements"] == 0);
  CHECK(s.Get("/api/statuses/" + kOut)["totalElements"] == 0);
  CHECK(s.Get("/api/statuses")["totalElements"] == 1);
  // The status queue skips it: its OPPRETTET line is gone, the other's is the head.
  json head = s.Get("/api/statuses/peek");
  CHECK(head["messageId"] == kOther);
  CHECK(s.Delete("/api/statuses/" + std::to_string(head["id"].get<int64_t>())) == 200);
  s.Get("/api/statuses/peek", 204);
  // The unsent message itself is not the conversation: it is still listed for the sender.
  CHECK(s.Get("/api/messages/out?messageId=" + kOut)["totalElements"] == 1);

  // The engine still works on it: SENDT is recorded, but shown nowhere and not queued.
  REQUIRE(s.store
              ->Run([&](PointStore& st) {
                return st.outgoing.ApplyStatus(kOut, wire::SENDT, "", NowMs()).status();
              })
              .ok());
  CHECK(s.OutStatus(kOut) == "SENDT");
  s.Get("/api/statuses/peek", 204);
  CHECK(s.Get("/api/statuses")["totalElements"] == 1);
  auto queued = s.store->Run([](PointStore& st) { return st.status_queue.Size(); });
  REQUIRE(queued.ok());
  CHECK(*queued == 0);

  // As eFormidling: a repeated or unknown DELETE is 200; an id that is not a number is 400.
  CHECK(s.Delete("/api/conversations/" + std::to_string(id)) == 200);
  CHECK(s.Delete("/api/conversations/999999") == 200);
  CHECK(s.Get("/api/conversations")["totalElements"] == 1);
  auto bad = s.client->Delete("/api/conversations/abc");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  CHECK(json::parse(bad->body)["exception"].get<std::string>().ends_with(
      "MethodArgumentTypeMismatchException"));
}

TEST_CASE("DELETE a conversation by message id: both directions, any case; dedup kept",
          "[ip][api][conversations]") {
  Served s;
  s.Receive(kIn);
  s.Send(kOther);
  CHECK(s.Get("/api/conversations?direction=INCOMING")["totalElements"] == 1);

  std::string upper = kIn;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK(s.Delete("/api/conversations/messageId/" + upper) == 200);
  CHECK(s.Get("/api/conversations?direction=INCOMING")["totalElements"] == 0);
  CHECK(s.Get("/api/conversations")["totalElements"] == 1);
  CHECK(s.Get("/api/statuses?messageId=" + kIn)["totalElements"] == 0);
  CHECK(s.Get("/api/statuses/peek")["messageId"] == kOther);

  // The incoming row stays: the same message id arriving again is still a duplicate, and the
  // message waits for the archive system's peek as before (eFormidling keeps it apart too).
  auto row = s.store->Run([&](PointStore& st) { return st.incoming.Get(kIn); });
  REQUIRE(row.ok());
  REQUIRE(*row);
  CHECK((*row)->status == "INNKOMMENDE_MOTTATT");
  auto has =
      s.store->Run([&](PointStore& st) { return st.history.HasMessage(kIn, Direction::kIn); });
  REQUIRE(has.ok());
  CHECK(*has);
  CHECK(s.Get("/api/messages/in?messageId=" + kIn)["totalElements"] == 1);

  CHECK(s.Delete("/api/conversations/messageId/" + kIn) == 200);  // again: nothing left, 200
  CHECK(s.Delete("/api/conversations/messageId/no-such-message") == 200);
  CHECK(s.Get("/api/conversations")["totalElements"] == 1);
}

TEST_CASE("store: version 8 migrates to 9; messages shown, the queue's trigger as before",
          "[ip][store][conversations]") {
  bud::test::TempDir dir;
  const std::string path = dir / "ip.db";
  {
    // A store with one message and its OPPRETTET on the queue, then back to v8.
    auto store = PointStore::Open(path).value();
    MessageRow m;
    m.message_id = kOut;
    m.conversation_id = "c0a80000-0000-4000-8000-000000000001";
    m.sender = std::string("0192:") + kMe;
    m.receiver = std::string("0192:") + kReceiver;
    m.process = kProcess;
    m.document_type = kStandard;
    m.created_ms = NowMs();
    m.expires_ms = m.created_ms + 60000;
    m.state = WorkState::kNew;
    REQUIRE(store->outgoing.CreateOutgoing(m).ok());
  }
  {
    auto db = storage::Db::Open(path).value();
    REQUIRE(db->Exec(R"(DROP TRIGGER history_enters_status_queue;
                        ALTER TABLE messages DROP COLUMN deleted_ms;
                        ALTER TABLE messages DROP COLUMN message_reference;
                        ALTER TABLE messages DROP COLUMN sender_channel;
                        CREATE TRIGGER history_enters_status_queue AFTER INSERT ON history BEGIN
                          INSERT INTO status_queue(history_id) VALUES (new.id);
                        END;
                        PRAGMA user_version=8;)")
                .ok());
  }
  auto store = PointStore::Open(path).value();
  ConversationQuery all;
  auto rows = store->history.Conversations(all).value();
  REQUIRE(rows.items.size() == 1);
  CHECK(rows.items[0].message_reference.empty());
  CHECK(store->status_queue.Size().value() == 1);
  REQUIRE(store->outgoing.ApplyStatus(kOut, wire::SENDT, "", NowMs()).ok());
  CHECK(store->status_queue.Size().value() == 2);  // a shown message's lines still enter it
  CHECK(store->status_queue.DeleteConversations(0, kOut, NowMs()).value() == 1);
  CHECK(store->status_queue.Size().value() == 0);
  CHECK(store->history.Conversations(all).value().total == 0);
  CHECK(store->status_queue.DeleteConversations(0, kOut, NowMs()).value() == 0);
}

}  // namespace
}  // namespace bud::ip::api::test
