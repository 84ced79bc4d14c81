// The HTTP API's drafts (integration-point/api/drafts.h) without HTTP: create, upload from a
// byte source, replace, send small and streamed, delete, get, over a real store and real files.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "common/fs.h"
#include "integration-point/api/http_answer.h"
#include "integration-point/data_dirs.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
const std::string kId = "d0000000-0000-4000-8000-000000000001";

FileUpload File(const std::string& name, std::optional<uint64_t> announced = std::nullopt) {
  return {name, "Title", "application/pdf", announced};
}

// Entries of the draft's directory (the stored files), 0 when it is gone.
size_t FilesOnDisk(const ApiFixture& f, const std::string& id) {
  const std::string dir = DraftDir(f.config, id);
  if (!std::filesystem::exists(dir)) return 0;
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

std::vector<DraftFile> Files(ApiFixture& f, const std::string& id) {
  auto files = f.store->Run([&](PointStore& s) { return s.outgoing.DraftFiles(id); });
  REQUIRE(files.ok());
  return *files;
}

TEST_CASE("a draft is created, gets a file, and is sent small (OPPRETTET)", "[ip][api][drafts]") {
  ApiFixture f;
  auto created = f.drafts->Create(ExampleSbd(kId).dump());
  REQUIRE(created.ok());
  CHECK((*created)["standardBusinessDocumentHeader"]["documentIdentification"]
                  ["instanceIdentifier"] == kId);
  auto got = f.drafts->Get(kId);
  REQUIRE(got.ok());
  CHECK(*got == *created);
  REQUIRE(f.drafts->Upload(kId, File("test.pdf"), StringSource("%PDF small")).ok());
  CHECK(FilesOnDisk(f, kId) == 1);
  CHECK(f.OutStatus(kId).empty());
  auto sent = f.drafts->Send(kId);
  REQUIRE(sent.ok());
  CHECK(f.OutStatus(kId) == "OPPRETTET");
  CHECK_FALSE(std::filesystem::exists(DraftDir(f.config, kId)));
  auto row = f.store->Run([&](PointStore& s) { return s.outgoing.Get(kId); });
  REQUIRE(row.ok());
  wire::Payload payload;
  REQUIRE(payload.ParseFromString((*row)->payload));
  REQUIRE(payload.attachments_size() == 1);
  CHECK(payload.attachments(0).data() == "%PDF small");
  CHECK(payload.attachments(0).media_type() == "application/pdf");
  // A sent message is still found, now as the stored message's SBD.
  auto after = f.drafts->Get(kId);
  REQUIRE(after.ok());
  CHECK(
      (*after)["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"] ==
      kId);
}

TEST_CASE("creating a draft checks the receiver and the id", "[ip][api][drafts]") {
  ApiFixture f;
  f.registry.entries.clear();
  auto unknown = f.drafts->Create(ExampleSbd(kId).dump());
  REQUIRE_FALSE(unknown.ok());
  CHECK(HttpStatusFor(unknown.status().code()) == 400);
  CHECK_THAT(unknown.status().message(), Catch::Contains("is not in the address registry"));
  CHECK(f.drafts->Get(kId).status().code() == Code::kNotFound);
  f.registry.entries[kReceiver] = Entry(kReceiver);
  REQUIRE(f.drafts->Create(ExampleSbd(kId).dump()).ok());
  auto again = f.drafts->Create(ExampleSbd(kId).dump());
  CHECK(HttpStatusFor(again.status().code()) == 400);  // eFormidling's MessageAlreadyExists
  CHECK(again.status().code() == Code::kAlreadyExists);
  auto bad = f.drafts->Create("[1,2");
  CHECK(HttpStatusFor(bad.status().code()) == 400);
  CHECK_THAT(bad.status().message(), Catch::Contains("the body"));
}

TEST_CASE("uploads to a missing draft or without a filename are refused", "[ip][api][drafts]") {
  ApiFixture f;
  Status missing = f.drafts->Upload(kId, File("test.pdf"), StringSource("x"));
  CHECK(missing.code() == Code::kNotFound);
  CHECK(missing.message() ==
        "no created, unsent message " + kId + " (POST /api/messages/out creates one)");
  REQUIRE(f.drafts->Create(ExampleSbd(kId).dump()).ok());
  Status nameless = f.drafts->Upload(kId, File(""), StringSource("x"));
  CHECK(HttpStatusFor(nameless.code()) == 400);
  CHECK_THAT(nameless.message(), Catch::StartsWith("Content-Disposition needs a filename"));
  Status bad_name = f.drafts->Upload(kId, File("../x.pdf"), StringSource("x"));
  CHECK(HttpStatusFor(bad_name.code()) == 400);
  CHECK(Files(f, kId).empty());
  CHECK(FilesOnDisk(f, kId) == 0);
}

TEST_CASE("the same filename again replaces the file and its bytes on disk", "[ip][api][drafts]") {
  ApiFixture f;
  REQUIRE(f.drafts->Create(ExampleSbd(kId).dump()).ok());
  REQUIRE(f.drafts->Upload(kId, File("test.pdf"), StringSource("first version")).ok());
  REQUIRE(f.drafts->Upload(kId, File("test.pdf"), StringSource("second")).ok());
  auto files = Files(f, kId);
  REQUIRE(files.size() == 1);
  CHECK(files[0].size == 6);
  CHECK(files[0].title == "Title");
  CHECK(FilesOnDisk(f, kId) == 1);
  auto data = ReadFile(JoinPath(DraftDir(f.config, kId), files[0].file));
  REQUIRE(data.ok());
  CHECK(*data == "second");
}

TEST_CASE("an announced size past max_message_bytes is 413 before a byte is read",
          "[ip][api][drafts]") {
  ApiFixture f;
  REQUIRE(f.drafts->Create(ExampleSbd(kId).dump()).ok());
  bool read = false;
  Status st = f.drafts->Upload(kId, File("test.pdf", 5000), [&](const ByteSink&) {
    read = true;
    return true;
  });
  CHECK_FALSE(read);
  CHECK(HttpStatusFor(st.code()) == 413);
  CHECK(st.message() == "'test.pdf' has more than 1000 bytes; the files of message " + kId +
                            " may have 1000 bytes together (outbox.max_message_bytes) and the "
                            "others have 0: nothing of it was kept");
}

TEST_CASE("a body that grows past the limit is cut off and nothing is kept", "[ip][api][drafts]") {
  ApiFixture f;
  REQUIRE(f.drafts->Create(ExampleSbd(kId).dump()).ok());
  REQUIRE(f.drafts->Upload(kId, File("a.pdf"), StringSource(std::string(600, 'a'))).ok());
  // 400 left; a chunked body of 500 stops at the piece that would pass them.
  Status st = f.drafts->Upload(kId, File("b.pdf"), StringSource(std::string(500, 'b'), 100));
  CHECK(st.code() == Code::kTooLarge);
  CHECK_THAT(st.message(), Catch::Contains("the others have 600"));
  auto files = Files(f, kId);
  REQUIRE(files.size() == 1);
  CHECK(files[0].name == "a.pdf");
  CHECK(FilesOnDisk(f, kId) == 1);
}

TEST_CASE("a body cut short is a 400 and leaves the draft as it was", "[ip][api][drafts]") {
  ApiFixture f;
  REQUIRE(f.drafts->Create(ExampleSbd(kId).dump()).ok());
  Status st = f.drafts->Upload(kId, File("test.pdf"), StringSource("0123456789", 4, 8));
  CHECK(HttpStatusFor(st.code()) == 400);
  CHECK(st.message() ==
        "the body of 'test.pdf' ended early (after 8 bytes); nothing of it was kept");
  CHECK(Files(f, kId).empty());
  CHECK(FilesOnDisk(f, kId) == 0);
}

TEST_CASE("sending a draft: unknown is 404, without files 400", "[ip][api][drafts]") {
  ApiFixture f;
  auto unknown = f.drafts->Send(kId);
  CHECK(unknown.status().code() == Code::kNotFound);
  CHECK(unknown.status().message() == "no created, unsent message " + kId);
  REQUIRE(f.drafts->Create(ExampleSbd(kId).dump()).ok());
  auto empty = f.drafts->Send(kId);
  CHECK(empty.status().message() == "the message has no attachments: send at least one file");
  CHECK(f.OutStatus(kId).empty());
  CHECK(f.drafts->Get(kId).ok());  // still a draft
}

TEST_CASE("a draft above the stream threshold is linked into the spool and sent streamed",
          "[ip][api][drafts]") {
  ApiFixture f;
  REQUIRE(f.drafts->Create(ExampleSbd(kId).dump()).ok());
  const std::string big(300, 'z');
  REQUIRE(f.drafts->Upload(kId, File("test.pdf"), StringSource(big, 64)).ok());
  REQUIRE(f.drafts->Upload(kId, File("annex.txt"), StringSource("annex")).ok());
  auto sent = f.drafts->Send(kId);
  REQUIRE(sent.ok());
  CHECK(f.OutStatus(kId) == "OPPRETTET");
  const std::string spool = SpoolSource(f.config, kId);
  auto placed = ReadFile(JoinPath(spool, "test.pdf"));
  REQUIRE(placed.ok());
  CHECK(*placed == big);
  CHECK(ReadFile(JoinPath(spool, "annex.txt")).ok());
  CHECK_FALSE(std::filesystem::exists(DraftDir(f.config, kId)));
  auto row = f.store->Run([&](PointStore& s) { return s.outgoing.Get(kId); });
  wire::Payload payload;
  REQUIRE(payload.ParseFromString((*row)->payload));
  REQUIRE(payload.attachments_size() == 2);
  CHECK(payload.attachments(0).size() + payload.attachments(1).size() == 305);
  CHECK(payload.attachments(0).data().empty());
}

TEST_CASE("a streamed send the take-in refuses leaves no files in the spool", "[ip][api][drafts]") {
  ApiFixture f;
  REQUIRE(f.drafts->Create(ExampleSbd(kId).dump()).ok());
  REQUIRE(f.drafts->Upload(kId, File("test.pdf"), StringSource(std::string(300, 'z'))).ok());
  f.take_in_refusal = Status(Code::kAlreadyExists, "message id used");
  auto sent = f.drafts->Send(kId);
  REQUIRE_FALSE(sent.ok());
  CHECK(sent.status().code() == Code::kAlreadyExists);
  CHECK(HttpStatusFor(sent.status().code()) == 400);  // eFormidling's MessageAlreadyExists
  CHECK_FALSE(std::filesystem::exists(SpoolSource(f.config, kId)));
  CHECK(FilesOnDisk(f, kId) == 1);  // the draft is as it was: it can be sent again
  // An engine that may still store it (kUnavailable): the files stay placed for its recovery.
  f.take_in_refusal = Status(Code::kUnavailable, "not stored within 30000 ms");
  auto late = f.drafts->Send(kId);
  CHECK(HttpStatusFor(late.status().code()) == 503);
  CHECK(std::filesystem::exists(JoinPath(SpoolSource(f.config, kId), "test.pdf")));
  f.take_in_refusal = Status::Ok();
  REQUIRE(f.drafts->Send(kId).ok());
  CHECK(f.OutStatus(kId) == "OPPRETTET");
}

TEST_CASE("deleting a draft; a sent message cannot be deleted (409)", "[ip][api][drafts]") {
  ApiFixture f;
  REQUIRE(f.drafts->Create(ExampleSbd(kId).dump()).ok());
  REQUIRE(f.drafts->Upload(kId, File("test.pdf"), StringSource("x")).ok());
  REQUIRE(f.drafts->Delete(kId).ok());
  CHECK_FALSE(std::filesystem::exists(DraftDir(f.config, kId)));
  CHECK(f.drafts->Delete(kId).ok());  // nothing to remove: 200, as eFormidling
  CHECK(f.drafts->Get(kId).status().message() == "no outgoing message " + kId);

  const std::string sent_id = "d0000000-0000-4000-8000-000000000002";
  REQUIRE(f.drafts->Create(ExampleSbd(sent_id).dump()).ok());
  REQUIRE(f.drafts->Upload(sent_id, File("test.pdf"), StringSource("x")).ok());
  REQUIRE(f.drafts->Send(sent_id).ok());
  Status st = f.drafts->Delete(sent_id);
  CHECK(st.code() == Code::kConflict);
  CHECK(HttpStatusFor(st.code()) == 409);
  CHECK(st.message() == "message " + sent_id +
                            " was already sent and cannot be removed; "
                            "follow it in /api/statuses/" +
                            sent_id);
  CHECK(f.OutStatus(sent_id) == "OPPRETTET");
  CHECK(f.drafts->Get(sent_id).ok());  // handed on, not sent yet: still under /out

  // Accepted by the broker: gone from /api/messages/out, as eFormidling's list; DELETE removes
  // nothing and answers 200.
  REQUIRE(f.store
              ->Run([&](PointStore& s) {
                return s.outgoing.ApplyStatus(sent_id, wire::SENDT, "", f.now, WorkState::kSent);
              })
              .ok());
  CHECK(f.drafts->Get(sent_id).status().code() == Code::kNotFound);
  CHECK_THAT(f.drafts->Get(sent_id).status().message(), Catch::Contains("is sent (status SENDT)"));
  CHECK(f.drafts->Delete(sent_id).ok());
  CHECK(f.OutStatus(sent_id) == "SENDT");
}

}  // namespace
}  // namespace bud::ip::api::test
