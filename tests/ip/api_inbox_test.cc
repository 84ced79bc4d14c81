// The HTTP API's inbox (integration-point/api/api_inbox.h) without HTTP: peek with its lock, pop
// as an ASiC-E container, delete -> INNKOMMENDE_LEVERT and LEVERT queued, over a real store and
// a clock the test moves.
#include <catch2/catch.hpp>
#include <filesystem>

#include "common/fs.h"
#include "integration-point/api/http_answer.h"
#include "integration-point/data_dirs.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
const std::string kA = "e0000000-0000-4000-8000-00000000000a";
const std::string kB = "e0000000-0000-4000-8000-00000000000b";

// An incoming message kept for the API, as the engine records it; `files` for a streamed one.
void Receive(ApiFixture& f, const std::string& id, int64_t created_ms,
             const std::string& process = kProcess, const std::string& files = "") {
  MessageRow m;
  m.message_id = id;
  m.conversation_id = "conv-" + id;
  m.sender = std::string("0192:") + kReceiver;
  m.receiver = std::string("0192:") + kMe;
  m.process = process;
  m.document_type = kStandard;
  m.title = "Vedtak";
  m.created_ms = created_ms;
  m.expires_ms = created_ms + 3600 * 1000;
  m.state = WorkState::kApi;
  m.files = files;
  wire::Payload p;
  p.set_message_id(id);
  p.set_metadata_json(ExampleSbd(id, kMe).dump());  // the sender's SBD
  auto* a = p.add_attachments();
  a->set_name("test.pdf");
  a->set_media_type("application/pdf");
  a->set_data("%PDF body of " + id);
  p.SerializeToString(&m.payload);
  REQUIRE(f.store
              ->Run([&](PointStore& s) {
                return s.incoming.RecordIncoming(m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT,
                                                 "", created_ms);
              })
              .ok());
}

std::string ReadAll(AsicStream& zip) {
  std::string out;
  for (;;) {
    auto piece = zip.Read(out.size(), 1000);
    REQUIRE(piece.ok());
    if (piece->empty()) return out;
    out.append(*piece);
  }
}

std::string InStatus(ApiFixture& f, const std::string& id) {
  auto row = f.store->Run([&](PointStore& s) { return s.incoming.Get(id); });
  return row.ok() && *row ? (*row)->status : "";
}

TEST_CASE("peek with nothing waiting is empty (204)", "[ip][api][inbox]") {
  ApiFixture f;
  auto peeked = f.inbox->Peek("");
  REQUIRE(peeked.ok());
  CHECK_FALSE(*peeked);
}

TEST_CASE("peek locks the oldest message and gives its SBD; the next peek gets the next",
          "[ip][api][inbox]") {
  ApiFixture f;
  Receive(f, kB, f.now - 1000);
  Receive(f, kA, f.now - 2000);
  auto first = f.inbox->Peek("");
  REQUIRE(first.ok());
  REQUIRE(*first);
  const json& header = (**first)["standardBusinessDocumentHeader"];
  CHECK(header["documentIdentification"]["instanceIdentifier"] == kA);
  CHECK((**first)["arkivmelding"]["hoveddokument"] == "test.pdf");  // the sender's own SBD
  auto second = f.inbox->Peek("");
  REQUIRE(*second);
  CHECK((**second)["standardBusinessDocumentHeader"]["documentIdentification"]
                  ["instanceIdentifier"] == kB);
  CHECK_FALSE(*f.inbox->Peek(""));     // both locked
  f.now += f.config.peek_lock_ms + 1;  // the locks run out
  CHECK(*f.inbox->Peek(""));
}

TEST_CASE("peek filters by process", "[ip][api][inbox]") {
  ApiFixture f;
  Receive(f, kA, f.now - 2000, "urn:no:difi:profile:other");
  auto none = f.inbox->Peek(kProcess);
  REQUIRE(none.ok());
  CHECK_FALSE(*none);
  auto other = f.inbox->Peek("urn:no:difi:profile:other");
  REQUIRE(*other);
}

TEST_CASE("pop without a lock is a conflict; an unknown id is not found", "[ip][api][inbox]") {
  ApiFixture f;
  Receive(f, kA, f.now - 2000);
  auto unlocked = f.inbox->Pop(kA);
  REQUIRE_FALSE(unlocked.ok());
  CHECK(unlocked.status().code() == Code::kConflict);
  CHECK(HttpStatusFor(unlocked.status().code()) == 409);
  CHECK_THAT(unlocked.status().message(), Catch::Contains("is not locked: peek it first"));
  auto unknown = f.inbox->Pop("no-such-message");
  CHECK(HttpStatusFor(unknown.status().code()) == 404);
  CHECK(f.inbox->Delete(kA).code() == Code::kConflict);
  CHECK(InStatus(f, kA) == "INNKOMMENDE_MOTTATT");
}

TEST_CASE("pop of a locked message gives an ASiC-E with mimetype first and the file",
          "[ip][api][inbox]") {
  ApiFixture f;
  Receive(f, kA, f.now - 2000);
  REQUIRE(*f.inbox->Peek(""));
  auto zip = f.inbox->Pop(kA);
  REQUIRE(zip.ok());
  const std::string bytes = ReadAll(**zip);
  CHECK(bytes.size() == (*zip)->size());
  CHECK(bytes.substr(0, 4) == "PK\x03\x04");
  CHECK(bytes.substr(30, 8) == "mimetype");
  CHECK(bytes.find("application/vnd.etsi.asic-e+zip") != std::string::npos);
  CHECK(bytes.find("%PDF body of " + kA) != std::string::npos);
  CHECK(bytes.find("META-INF/manifest.xml") != std::string::npos);
  // Pop does not take it out: it is still locked and may be popped again.
  CHECK(f.inbox->Pop(kA).ok());
  f.now += f.config.peek_lock_ms + 1;
  CHECK(f.inbox->Pop(kA).status().code() == Code::kConflict);
}

TEST_CASE("a streamed message pops from its files in api-in", "[ip][api][inbox]") {
  ApiFixture f;
  const std::string dir = JoinPath(ApiInboxDir(f.config), kA);
  REQUIRE(MakeDirs(dir).ok());
  const std::string big(5000, 'q');
  REQUIRE(WriteFileSynced(JoinPath(dir, "big.bin"), big).ok());
  auto crc = FileCrc32(JoinPath(dir, "big.bin"));
  REQUIRE(crc.ok());
  Receive(f, kA, f.now - 2000, kProcess,
          json::array({{{"name", "big.bin"},
                        {"mediaType", "application/octet-stream"},
                        {"size", big.size()},
                        {"crc32", *crc}}})
              .dump());
  REQUIRE(*f.inbox->Peek(""));
  auto zip = f.inbox->Pop(kA);
  REQUIRE(zip.ok());
  const std::string bytes = ReadAll(**zip);
  CHECK(bytes.find(big) != std::string::npos);
  CHECK(bytes.find("%PDF body of") == std::string::npos);  // not the payload's
  REQUIRE(f.inbox->Delete(kA).ok());
  CHECK_FALSE(std::filesystem::exists(dir));
}

TEST_CASE("a stored message that cannot be read is a 500, not a crash", "[ip][api][inbox]") {
  ApiFixture f;
  Receive(f, kA, f.now - 2000, kProcess, "{not a list");
  Receive(f, kB, f.now - 1000, kProcess,
          R"([{"name": "gone.bin", "mediaType": "", "size": 10, "crc32": 0}])");
  REQUIRE(*f.inbox->Peek(""));
  REQUIRE(*f.inbox->Peek(""));
  auto bad_list = f.inbox->Pop(kA);
  REQUIRE_FALSE(bad_list.ok());
  CHECK(HttpStatusFor(bad_list.status().code()) == 500);
  CHECK_THAT(bad_list.status().message(), Catch::Contains("cannot be read"));
  auto missing_file = f.inbox->Pop(kB);
  REQUIRE_FALSE(missing_file.ok());
  CHECK(HttpStatusFor(missing_file.status().code()) == 500);
  CHECK_THAT(missing_file.status().message(), Catch::StartsWith("stored message " + kB));
}

TEST_CASE("delete records INNKOMMENDE_LEVERT, queues LEVERT and wakes the engine",
          "[ip][api][inbox]") {
  ApiFixture f;
  Receive(f, kA, f.now - 2000);
  REQUIRE(*f.inbox->Peek(""));
  REQUIRE(f.inbox->Delete(kA).ok());
  CHECK(f.wakes == 1);
  CHECK(InStatus(f, kA) == "INNKOMMENDE_LEVERT");
  auto reports = f.store->Run([](PointStore& s) { return s.incoming.PendingReports(); });
  REQUIRE(reports.ok());
  bool levert = false;
  for (const auto& r : *reports)
    levert = levert || (r.message_id == kA && r.status == wire::LEVERT);
  CHECK(levert);
  Status again = f.inbox->Delete(kA);
  CHECK(again.code() == Code::kNotFound);
  CHECK_THAT(again.message(), Catch::Contains("was already deleted (INNKOMMENDE_LEVERT)"));
  CHECK(f.inbox->Pop(kA).status().code() == Code::kNotFound);
  CHECK_FALSE(*f.inbox->Peek(""));
  CHECK(f.wakes == 1);
}

}  // namespace
}  // namespace bud::ip::api::test
