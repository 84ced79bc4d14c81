// The HTTP API's outgoing service (integration-point/api/outgoing.h) without HTTP: the checks
// every way of sending shares, the take-in into a real store, and the one Status -> HTTP mapping.
#include <catch2/catch.hpp>

#include "integration-point/api/http_answer.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
const std::string kId = "a1b2c3d4-0000-4000-8000-000000000001";

std::vector<UploadedFile> Pdf(const std::string& name = "test.pdf") {
  return {{name, "application/pdf", "%PDF-1.4 test"}};
}

TEST_CASE("a multipart message with its main document is taken in (OPPRETTET)",
          "[ip][api][outgoing]") {
  ApiFixture f;
  auto sbd = f.outgoing->SendWithFiles(ExampleSbd(kId).dump(), Pdf());
  REQUIRE(sbd.ok());
  const auto& doc = (*sbd)["standardBusinessDocumentHeader"]["documentIdentification"];
  CHECK(doc["instanceIdentifier"] == kId);
  CHECK(doc.contains("creationDateAndTime"));
  CHECK(f.OutStatus(kId) == "OPPRETTET");
  auto row = f.store->Run([&](PointStore& s) { return s.outgoing.Get(kId); });
  REQUIRE(row.ok());
  REQUIRE(*row);
  CHECK((*row)->receiver == std::string("0192:") + kReceiver);
  CHECK((*row)->sender == std::string("0192:") + kMe);
}

TEST_CASE("a message without files is refused with 400 and not stored", "[ip][api][outgoing]") {
  ApiFixture f;
  auto sbd = f.outgoing->SendWithFiles(ExampleSbd(kId).dump(), {});
  REQUIRE_FALSE(sbd.ok());
  CHECK(sbd.status().code() == Code::kInvalidArgument);
  CHECK(sbd.status().message() == "the message has no attachments: send at least one file");
  CHECK(HttpStatusFor(sbd.status().code()) == 400);
  CHECK(f.OutStatus(kId).empty());
}

TEST_CASE("a hoveddokument no file carries is refused", "[ip][api][outgoing]") {
  ApiFixture f;
  auto sbd = f.outgoing->SendWithFiles(ExampleSbd(kId).dump(), Pdf("other.pdf"));
  REQUIRE_FALSE(sbd.ok());
  CHECK(sbd.status().message() ==
        "arkivmelding.hoveddokument names 'test.pdf' but no attachment has that name");
  CHECK(HttpStatusFor(sbd.status().code()) == 400);
  CHECK(f.OutStatus(kId).empty());
}

TEST_CASE("a receiver the registry does not know is a 400 naming it", "[ip][api][outgoing]") {
  ApiFixture f;
  f.registry.entries.clear();
  auto sbd = f.outgoing->SendWithFiles(ExampleSbd(kId).dump(), Pdf());
  REQUIRE_FALSE(sbd.ok());
  CHECK(sbd.status().message() ==
        std::string("receiver 0192:") + kReceiver + " is not in the address registry");
  CHECK(HttpStatusFor(sbd.status().code()) == 400);
}

TEST_CASE("a receiver that does not accept the process says what it accepts",
          "[ip][api][outgoing]") {
  ApiFixture f;
  wire::RegistryEntry other = Entry(kReceiver);
  other.clear_processes();
  other.add_processes("urn:no:difi:profile:other");
  f.registry.entries[kReceiver] = other;
  auto sbd = f.outgoing->SendWithFiles(ExampleSbd(kId).dump(), Pdf());
  REQUIRE_FALSE(sbd.ok());
  CHECK_THAT(sbd.status().message(),
             Catch::Contains("does not accept process") &&
                 Catch::Contains("(it accepts: urn:no:difi:profile:other)"));
  CHECK(HttpStatusFor(sbd.status().code()) == 400);
}

TEST_CASE("a registry that does not answer is a 503 (retry)", "[ip][api][outgoing]") {
  ApiFixture f;
  f.registry.unavailable = true;
  auto sbd = f.outgoing->SendWithFiles(ExampleSbd(kId).dump(), Pdf());
  REQUIRE_FALSE(sbd.ok());
  CHECK(sbd.status().code() == Code::kUnavailable);
  CHECK(HttpStatusFor(sbd.status().code()) == 503);
  CHECK(f.OutStatus(kId).empty());
}

TEST_CASE("a used message id is eFormidling's 400 and the first message stays",
          "[ip][api][outgoing]") {
  ApiFixture f;
  REQUIRE(f.outgoing->SendWithFiles(ExampleSbd(kId).dump(), Pdf()).ok());
  auto again = f.outgoing->SendWithFiles(ExampleSbd(kId).dump(), Pdf());
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == Code::kAlreadyExists);
  CHECK(HttpStatusFor(again.status().code()) == 400);
  CHECK(ExceptionFor(again.status().code()) ==
        "no.difi.meldingsutveksling.exceptions.MessageAlreadyExistsException");
  CHECK(f.OutStatus(kId) == "OPPRETTET");
}

TEST_CASE("a bad sbd part is a 400 naming the part; hostile JSON does not crash",
          "[ip][api][outgoing]") {
  ApiFixture f;
  for (const std::string& text : {std::string("{not json"), std::string(5000, '[')}) {
    auto sbd = f.outgoing->SendWithFiles(text, Pdf());
    REQUIRE_FALSE(sbd.ok());
    CHECK(HttpStatusFor(sbd.status().code()) == 400);
    CHECK_THAT(sbd.status().message(), Catch::Contains("part 'sbd'"));
  }
  auto missing = f.outgoing->SendWithFiles(R"({"standardBusinessDocumentHeader": {}})", Pdf());
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.status().message(), Catch::Contains("receiver"));
}

TEST_CASE("files past the count limit or with a bad name are refused", "[ip][api][outgoing]") {
  ApiFixture f;
  std::vector<UploadedFile> many;
  for (int i = 0; i < 4; ++i) many.push_back({fmt::format("f{}.pdf", i), "", "x"});
  many.push_back({"test.pdf", "", "x"});
  auto sbd = f.outgoing->SendWithFiles(ExampleSbd(kId).dump(), many);
  REQUIRE_FALSE(sbd.ok());
  CHECK(HttpStatusFor(sbd.status().code()) == 400);
  auto bad = f.outgoing->SendWithFiles(ExampleSbd(kId).dump(), Pdf("../test.pdf"));
  REQUIRE_FALSE(bad.ok());
  CHECK(HttpStatusFor(bad.status().code()) == 400);
  CHECK(f.OutStatus(kId).empty());
}

TEST_CASE("a placement that fails is undone and nothing is taken in", "[ip][api][outgoing]") {
  ApiFixture f;
  json completed;
  auto draft = f.outgoing->Parse(ExampleSbd(kId), &completed);
  REQUIRE(draft.ok());
  REQUIRE(AddAttachment(*draft, "test.pdf", "", "x", f.outgoing->limits()).ok());
  bool undone = false;
  Placement p{[] { return Status(Code::kDiskFull, "no space"); }, [&] { undone = true; }};
  auto sbd = f.outgoing->Submit(std::move(*draft), completed, p);
  REQUIRE_FALSE(sbd.ok());
  CHECK(undone);
  CHECK(HttpStatusFor(sbd.status().code()) == 507);
  CHECK_THAT(sbd.status().message(), Catch::Contains("it is not sent and stays as it was"));
  CHECK(f.OutStatus(kId).empty());
}

TEST_CASE("one mapping from a Status to the HTTP status", "[ip][api]") {
  CHECK(HttpStatusFor(Code::kInvalidArgument) == 400);
  CHECK(HttpStatusFor(Code::kBadOrgnr) == 400);
  CHECK(HttpStatusFor(Code::kMalformed) == 400);
  CHECK(HttpStatusFor(Code::kNotFound) == 404);
  CHECK(HttpStatusFor(Code::kAlreadyExists) == 400);
  CHECK(HttpStatusFor(Code::kConflict) == 409);
  CHECK(HttpStatusFor(Code::kTooLarge) == 413);
  CHECK(HttpStatusFor(Code::kUnavailable) == 503);
  CHECK(HttpStatusFor(Code::kBusy) == 503);
  CHECK(HttpStatusFor(Code::kDiskFull) == 507);
  CHECK(HttpStatusFor(Code::kIo) == 500);
  CHECK(HttpStatusFor(Code::kInternal) == 500);
  httplib::Response res;
  SendStatus(res, Status(Code::kConflict, "it was sent"), "/api/x");
  CHECK(res.status == 409);
  auto body = nlohmann::json::parse(res.body);
  CHECK(body["message"] == "it was sent");
  CHECK(body["path"] == "/api/x");
  CHECK(body["status"] == 409);
  CHECK(body["error"] == "Conflict");
  CHECK(body.contains("timestamp"));
  CHECK(body["exception"] == "org.springframework.web.server.ResponseStatusException");
  httplib::Response used;
  SendStatus(used, Status(Code::kAlreadyExists, "used"), "/api/messages/out");
  CHECK(used.status == 400);
  CHECK(nlohmann::json::parse(used.body)["exception"] ==
        "no.difi.meldingsutveksling.exceptions.MessageAlreadyExistsException");
}

}  // namespace
}  // namespace bud::ip::api::test
