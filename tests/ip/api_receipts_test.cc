// The HTTP API's part of issue 18, in process over a real store: messages without files
// (receipts) through multipart and create + send, arkivmelding still needing its files; pop of
// a file-less incoming message (204); the status queue through the service and the routes
// (peek, DELETE until 204); `finished` and the conversation queue; upper-case ids through
// create, PUT, send, statuses and conversations; a send without Content-Length on a raw socket,
// exactly as curl sends it; sending on behalf of another organisation or a sub-unit.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>

#include "common/http_server.h"
#include "common/uuid.h"
#include "integration-point/api/routes.h"
#include "integration-point/sbd.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
constexpr const char* kReceiptStandard = "urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering";
constexpr const char* kResponseProcess = "urn:no:difi:profile:arkivmelding:response:ver1.0";

std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// An arkivmelding_kvittering for `related`, from us to the receiver, as an archive sends it.
json ReceiptSbd(const std::string& id, const std::string& related) {
  json sbd = ExampleSbd(id);
  auto& h = sbd["standardBusinessDocumentHeader"];
  h["documentIdentification"]["standard"] = kReceiptStandard;
  h["documentIdentification"]["type"] = "arkivmelding_kvittering";
  h["businessScope"]["scope"][0]["identifier"] = kResponseProcess;
  sbd.erase("arkivmelding");
  sbd["arkivmelding_kvittering"] = {{"receiptType", "OK"}, {"relatedToMessageId", related}};
  return sbd;
}

// The fixture with a receiver that accepts receipts too.
struct ReceiptFixture : ApiFixture {
  ReceiptFixture() {
    auto& e = registry.entries[kReceiver];
    e.add_processes(kResponseProcess);
    e.add_document_types(kReceiptStandard);
  }
};

// An incoming receipt (no files) kept for the API, as the engine records it.
void ReceiveReceipt(ApiFixture& f, const std::string& id) {
  MessageRow m;
  m.message_id = id;
  m.conversation_id = NewUuid();
  m.sender = std::string("0192:") + kReceiver;
  m.receiver = std::string("0192:") + kMe;
  m.process = kResponseProcess;
  m.document_type = kReceiptStandard;
  m.created_ms = f.now;
  m.expires_ms = f.now + 3600 * 1000;
  m.state = WorkState::kApi;
  wire::Payload p;
  p.set_message_id(id);
  p.set_metadata_json(ReceiptSbd(id, NewUuid()).dump());
  p.SerializeToString(&m.payload);
  REQUIRE(f.store
              ->Run([&](PointStore& s) {
                return s.incoming.RecordIncoming(m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT,
                                                 "", f.now);
              })
              .ok());
}

TEST_CASE("a receipt goes without files: multipart with only the sbd part, and create + send",
          "[ip][api][receipts]") {
  ReceiptFixture f;
  const std::string a = NewUuid(), b = NewUuid();
  auto sent = f.outgoing->SendWithFiles(ReceiptSbd(a, NewUuid()).dump(), {});
  REQUIRE(sent.ok());
  CHECK(f.OutStatus(a) == "OPPRETTET");
  auto created = f.drafts->Create(ReceiptSbd(b, NewUuid()).dump());
  REQUIRE(created.ok());
  auto sent2 = f.drafts->Send(b);
  REQUIRE(sent2.ok());
  CHECK(f.OutStatus(b) == "OPPRETTET");
  // The business message travels in the payload's SBD.
  auto row = f.store->Run([&](PointStore& s) { return s.outgoing.Get(b); });
  REQUIRE(row.ok());
  wire::Payload payload;
  REQUIRE(payload.ParseFromString((*row)->payload));
  CHECK(payload.attachments_size() == 0);
  CHECK(json::parse(payload.metadata_json())["arkivmelding_kvittering"]["receiptType"] == "OK");

  // status, avtalt and einnsyn_kvittering too; an arkivmelding still needs a file.
  for (const char* type : {"status", "avtalt", "einnsyn_kvittering"}) {
    json sbd = ReceiptSbd(NewUuid(), NewUuid());
    sbd["standardBusinessDocumentHeader"]["documentIdentification"]["standard"] =
        std::string("urn:no:difi:eformidling:xsd::") + type;
    sbd["standardBusinessDocumentHeader"]["documentIdentification"]["type"] = type;
    f.registry.entries[kReceiver].add_document_types(std::string("urn:no:difi:eformidling:xsd::") +
                                                     type);
    INFO(type);
    CHECK(f.outgoing->SendWithFiles(sbd.dump(), {}).ok());
  }
  auto refused = f.outgoing->SendWithFiles(ExampleSbd(NewUuid()).dump(), {});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message() == "the message has no attachments: send at least one file");
}

TEST_CASE("pop of an incoming message without files answers nothing to unpack",
          "[ip][api][receipts]") {
  ReceiptFixture f;
  const std::string id = NewUuid();
  ReceiveReceipt(f, id);
  auto peeked = f.inbox->Peek("");
  REQUIRE(peeked.ok());
  REQUIRE(*peeked);
  CHECK((**peeked)["arkivmelding_kvittering"]["receiptType"] == "OK");
  auto popped = f.inbox->Pop(id);
  REQUIRE(popped.ok());
  CHECK_FALSE(*popped);                      // 204 at the route
  REQUIRE(f.inbox->Delete(Upper(id)).ok());  // any case
  auto row = f.store->Run([&](PointStore& s) { return s.incoming.Get(id); });
  CHECK((*row)->status == "INNKOMMENDE_LEVERT");
  // LEVERT queued for the broker under the id it knows.
  auto reports = f.store->Run([&](PointStore& s) { return s.incoming.PendingReports(); });
  REQUIRE(reports.ok());
  bool levert = false;
  for (const auto& r : *reports)
    levert = levert || (r.message_id == id && r.status == wire::LEVERT);
  CHECK(levert);
}

TEST_CASE("upper-case ids round-trip through create, PUT, send, statuses, conversations",
          "[ip][api][ids]") {
  ApiFixture f;
  const std::string id = Upper(NewUuid());
  const std::string conversation = Upper(NewUuid());
  json sbd = ExampleSbd(id);
  sbd["standardBusinessDocumentHeader"]["businessScope"]["scope"][0]["instanceIdentifier"] =
      conversation;
  auto created = f.drafts->Create(sbd.dump());
  REQUIRE(created.ok());
  const auto& header = (*created)["standardBusinessDocumentHeader"];
  CHECK(header["documentIdentification"]["instanceIdentifier"] == id);
  CHECK(header["businessScope"]["scope"][0]["instanceIdentifier"] == conversation);
  REQUIRE(f.drafts
              ->Upload(LowerId(id), {"test.pdf", "Title", "application/pdf", std::nullopt},
                       StringSource("%PDF"))
              .ok());
  REQUIRE(
      f.drafts->Upload(id, {"vedlegg.txt", "V", "text/plain", std::nullopt}, StringSource("tekst"))
          .ok());
  auto sent = f.drafts->Send(LowerId(id));
  REQUIRE(sent.ok());
  CHECK(f.OutStatus(id) == "OPPRETTET");
  auto row = f.store->Run([&](PointStore& s) { return s.outgoing.Get(LowerId(id)); });
  REQUIRE(row.ok());
  CHECK((*row)->message_id == id);
  wire::Payload payload;
  REQUIRE(payload.ParseFromString((*row)->payload));
  CHECK(payload.attachments_size() == 2);
  CHECK(payload.message_id() == LowerId(id));  // as the envelope will carry it

  StatusQuery q;
  q.message_id = LowerId(id);
  auto page = f.queries->Statuses(q, 0);
  REQUIRE(page.ok());
  REQUIRE((*page)["content"].size() == 1);
  CHECK((*page)["content"][0]["messageId"] == id);
  CHECK((*page)["content"][0]["conversationId"] == conversation);
  ConversationQuery c;
  c.message_id = LowerId(id);
  auto conv = f.queries->Conversation(c, "x");
  REQUIRE(conv.ok());
  CHECK((*conv)["messageId"] == id);
  CHECK((*conv)["conversationId"] == conversation);
  ConversationQuery by_conversation;
  by_conversation.conversation_id = LowerId(conversation);
  auto convs = f.queries->Conversations(by_conversation, 0);
  REQUIRE(convs.ok());
  CHECK((*convs)["totalElements"] == 1);
  // The same id in another case is the same message.
  auto again = f.drafts->Create(ExampleSbd(LowerId(id)).dump());
  CHECK(again.status().code() == Code::kAlreadyExists);
}

TEST_CASE("status queue through the service: oldest first, DELETE until empty",
          "[ip][api][status-queue]") {
  ApiFixture f;
  const std::string id = NewUuid();
  REQUIRE(f.outgoing->SendWithFiles(ExampleSbd(id).dump(), {{"test.pdf", "application/pdf", "x"}})
              .ok());
  for (MsgStatus s : {wire::SENDT, wire::MOTTATT, wire::LEVERT}) {
    REQUIRE(f.store
                ->Run([&](PointStore& st) {
                  return st.outgoing.ApplyStatus(id, s, "", NowMs()).status();
                })
                .ok());
  }
  std::vector<std::string> seen;
  for (int i = 0; i < 10; ++i) {
    auto head = f.queries->PeekStatus();
    REQUIRE(head.ok());
    if (!*head) break;
    auto same = f.queries->PeekStatus();
    CHECK((**same)["id"] == (**head)["id"]);
    seen.push_back((**head)["status"]);
    REQUIRE(f.queries->RemoveStatus(std::to_string((**head)["id"].get<int64_t>())).ok());
  }
  CHECK(seen == std::vector<std::string>{"OPPRETTET", "SENDT", "MOTTATT", "LEVERT"});
  CHECK(f.queries->RemoveStatus("1").code() == Code::kNotFound);
  CHECK(f.queries->RemoveStatus("x").code() == Code::kNotFound);
  CHECK(f.queries->RemoveStatus("-3").code() == Code::kNotFound);
  CHECK(f.queries->RemoveStatus(std::string(40, '9')).code() == Code::kNotFound);
  // LEVERT: finished, out of the conversation queue.
  ConversationQuery c;
  c.message_id = id;
  CHECK((*f.queries->Conversation(c, "x"))["finished"] == true);
  ConversationQuery queue;
  queue.unfinished_only = true;
  CHECK((*f.queries->Conversations(queue, 0))["totalElements"] == 0);
}

TEST_CASE("on behalf of: another organisation or a sub-unit when configured", "[ip][api][sbd]") {
  ApiFixture f;
  OutboxLimits limits;
  limits.on_behalf_of = {"0192:910075918", "0192:910076787:974760673"};
  const Orgnr me = *Orgnr::Parse(kMe);
  auto with_sender = [&](const std::string& sender) {
    json sbd = ExampleSbd(NewUuid());
    sbd["standardBusinessDocumentHeader"]["sender"][0]["identifier"]["value"] = sender;
    json completed;
    auto d = ParseSbd(sbd, me, limits, &completed);
    if (!d.ok()) return d.status();
    CHECK(d->payload.sender() == me.wire());  // the envelope's sender stays us
    CHECK(completed["standardBusinessDocumentHeader"]["sender"][0]["identifier"]["value"] ==
          *SenderParty(sender));
    return Status::Ok();
  };
  CHECK(with_sender("0192:910075918").ok());
  CHECK(with_sender("910075918").ok());
  CHECK(with_sender("0192:910076787:974760673").ok());
  CHECK(with_sender(std::string("0192:") + kMe).ok());
  Status other = with_sender("0192:974760673");
  CHECK(other.code() == Code::kInvalidArgument);
  CHECK_THAT(other.message(), Catch::Matchers::Contains("sends for 0192:910076787"));
  CHECK_THAT(other.message(), Catch::Matchers::Contains("on_behalf_of"));
  CHECK(with_sender("0192:910076787:974760674").code() == Code::kInvalidArgument);  // check digit
  CHECK(with_sender("0192:910076787:").code() == Code::kInvalidArgument);
  CHECK(with_sender("0192:910076787:0192:974760673").code() == Code::kInvalidArgument);
  // Not configured: only the point's own organisation.
  json sbd = ExampleSbd(NewUuid());
  sbd["standardBusinessDocumentHeader"]["sender"][0]["identifier"]["value"] = "0192:910075918";
  CHECK(ParseSbd(sbd, me, OutboxLimits{}).status().code() == Code::kInvalidArgument);
  // The folder contract takes the same rule.
  const std::string mj = R"({"receiver":"0192:910075918","process":"p","documentType":"d",
                             "sender":"0192:910076787:974760673"})";
  CHECK(ParseMessageJson(mj, me, limits).ok());
  CHECK(ParseMessageJson(mj, me, OutboxLimits{}).status().code() == Code::kInvalidArgument);
}

// The routes with the send's body rule as http_api.cc wires them.
struct Served : ReceiptFixture {
  std::unique_ptr<HttpServer> server;
  int port = 0;
  Served() {
    config.max_message_bytes = 1 << 20;  // as large as a send's body may be
    server = Serve();
    const std::string address = server->address();
    port = std::stoi(address.substr(address.rfind(':') + 1));
  }
};

// Sends `request` on a new connection and reads until the peer closes or 10 s pass (the answer
// and how long it took).
std::pair<std::string, int64_t> RawExchange(int port, const std::string& request,
                                            bool close_after_answer) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  std::string got;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    // Keep-alive: the whole answer is in once its body (Content-Length) is.
    auto end = got.find("\r\n\r\n");
    auto cl = got.find("Content-Length: ");
    if (!close_after_answer && end != std::string::npos && cl != std::string::npos &&
        got.size() >= end + 4 + std::stoul(got.substr(cl + 16))) {
      break;
    }
  }
  ::close(fd);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  return {got, ms};
}

TEST_CASE("send without Content-Length, exactly as curl -X POST sends it, answers at once",
          "[ip][api][send]") {
  Served s;
  auto created = s.drafts->Create(ReceiptSbd(Upper(NewUuid()), NewUuid()).dump());
  REQUIRE(created.ok());
  const std::string id =
      (*created)["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"];
  // curl -X POST http://127.0.0.1:<port>/api/messages/out/<id>
  const std::string curl = "POST /api/messages/out/" + LowerId(id) +
                           " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(s.port) +
                           "\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
  auto [answer, ms] = RawExchange(s.port, curl, false);
  INFO(answer);
  CHECK(answer.starts_with("HTTP/1.1 200"));
  CHECK(ms < 5000);                             // not the 30 s read timeout
  CHECK(answer.find(id) != std::string::npos);  // the SBD, with the id as the client spelled it
  CHECK(s.OutStatus(id) == "OPPRETTET");

  // Sent again: the draft is gone (404), still at once.
  auto [again, ms2] = RawExchange(s.port, curl, false);
  CHECK(again.starts_with("HTTP/1.1 404"));
  CHECK(ms2 < 5000);

  // A small body sent anyway is read and dropped; the connection stays usable.
  auto created2 = s.drafts->Create(ReceiptSbd(NewUuid(), NewUuid()).dump());
  REQUIRE(created2.ok());
  const std::string id2 =
      (*created2)["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"];
  auto [with_body, ms3] = RawExchange(s.port,
                                      "POST /api/messages/out/" + id2 +
                                          " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(s.port) +
                                          "\r\nContent-Length: 2\r\n\r\n{}",
                                      false);
  CHECK(with_body.starts_with("HTTP/1.1 200"));
  CHECK(ms3 < 5000);
  CHECK(s.OutStatus(id2) == "OPPRETTET");

  // A real body is refused without being read.
  auto created3 = s.drafts->Create(ReceiptSbd(NewUuid(), NewUuid()).dump());
  REQUIRE(created3.ok());
  const std::string id3 =
      (*created3)["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"];
  auto [large, ms5] = RawExchange(s.port,
                                  "POST /api/messages/out/" + id3 +
                                      " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(s.port) +
                                      "\r\nContent-Length: 100000\r\n\r\n",
                                  false);
  CHECK(large.starts_with("HTTP/1.1 400"));
  CHECK(large.find("takes no body") != std::string::npos);
  CHECK(ms5 < 5000);
  CHECK(s.OutStatus(id3).empty());

  // Create (it takes a body) still wants a Content-Length.
  auto [create, ms4] =
      RawExchange(s.port,
                  "POST /api/messages/out HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(s.port) +
                      "\r\nContent-Type: application/json\r\n\r\n{}",
                  false);
  CHECK(create.starts_with("HTTP/1.1 411"));
  CHECK(ms4 < 5000);
}

TEST_CASE("routes: status queue peek and DELETE, pop of a receipt 204", "[ip][api][status-queue]") {
  Served s;
  httplib::Client c("127.0.0.1", s.port);
  const std::string id = NewUuid();
  ReceiveReceipt(s, id);
  auto peek = c.Get("/api/statuses/peek");
  REQUIRE(peek);
  REQUIRE(peek->status == 200);
  const json head = json::parse(peek->body);
  CHECK(head["status"] == "INNKOMMENDE_MOTTATT");
  CHECK(head["messageId"] == id);
  REQUIRE(c.Get("/api/messages/in/peek")->status == 200);
  auto pop = c.Get(("/api/messages/in/pop/" + id).c_str());
  REQUIRE(pop);
  CHECK(pop->status == 204);
  CHECK(pop->body.empty());
  REQUIRE(c.Delete(("/api/messages/in/" + id).c_str())->status == 200);
  for (int i = 0; i < 5; ++i) {
    auto p = c.Get("/api/statuses/peek");
    REQUIRE(p);
    if (p->status == 204) break;
    REQUIRE(p->status == 200);
    const std::string sid = std::to_string(json::parse(p->body)["id"].get<int64_t>());
    CHECK(c.Delete(("/api/statuses/" + sid).c_str())->status == 200);
    CHECK(c.Delete(("/api/statuses/" + sid).c_str())->status == 404);
  }
  CHECK(c.Get("/api/statuses/peek")->status == 204);
  auto gone = c.Delete("/api/statuses/12345");
  REQUIRE(gone);
  CHECK(gone->status == 404);
  CHECK(json::parse(gone->body)["message"] == "status 12345 is not on the status queue");
  // The history still has both lines.
  auto all = c.Get(("/api/statuses/" + id).c_str());
  REQUIRE(all);
  CHECK(json::parse(all->body)["totalElements"] == 2);
}

TEST_CASE("[agency] on_behalf_of is checked and normalised at load", "[ip][config]") {
  bud::test::TempDir dir;
  auto load = [&](const std::string& list) {
    const std::string path = dir / "ip.toml";
    std::string text = "[agency]\norgnr = \"910076787\"\non_behalf_of = " + list + R"(
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
)";
    FILE* f = fopen(path.c_str(), "w");
    fputs(text.c_str(), f);
    fclose(f);
    return Config::Load(path);
  };
  auto good = load(R"(["910075918", "0192:910076787:974760673"])");
  REQUIRE(good.ok());
  CHECK(good->on_behalf_of ==
        std::vector<std::string>{"0192:910075918", "0192:910076787:974760673"});
  for (const char* bad : {R"(["910075919"])", R"(["0192:910076787:12"])", R"("910075918")"}) {
    INFO(bad);
    auto c = load(bad);
    REQUIRE_FALSE(c.ok());
    CHECK_THAT(c.status().message(), Catch::Matchers::Contains("on_behalf_of"));
  }
}

}  // namespace
}  // namespace bud::ip::api::test
