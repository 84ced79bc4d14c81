// Integration point: message.json parsing and reading outbox folders as hostile input
// (integration-point/outbox.h, the open-once helpers of common/fs.h). Regressions from fuzzing
// (tests/fuzz/findings/) live here.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "common/clock.h"
#include "integration-point/outbox.h"
#include "tests/support/temp_dir.h"

namespace bud::ip {
namespace {

const Orgnr kMe = *Orgnr::Parse("910076787");

Result<OutgoingDraft> Parse(const std::string& text) { return ParseMessageJson(text, kMe, {}); }

TEST_CASE("a good message.json gives a draft with ids and expiry", "[ip][outbox]") {
  const int64_t in_30_days = (NowMs() / 1000 + 30 * 24 * 3600) * 1000;
  auto d = Parse(R"({"receiver":"0192:910075918","process":"p","documentType":"d",
                     "title":"Vedtak","expectedResponseDateTime":")" +
                 FormatTime(in_30_days) + "\"}");
  REQUIRE(d.ok());
  CHECK(d->receiver.wire() == "0192:910075918");
  CHECK(d->payload.sender() == "0192:910076787");
  CHECK(d->payload.message_id() == d->message_id);
  CHECK(d->expires_ms == in_30_days);
}

TEST_CASE("message.json errors name the key", "[ip][outbox]") {
  struct Case {
    std::string json, phrase;
  } cases[] = {
      {"{", "not valid JSON"},
      {"[]", "must be a JSON object"},
      {R"({"process":"p","documentType":"d"})", "'receiver' is missing"},
      {R"({"receiver":"910076788","process":"p","documentType":"d"})", "check digit"},
      {R"({"receiver":"910075918","documentType":"d"})", "'process' is missing"},
      {R"({"receiver":"910075918","process":"p"})", "'documentType' is missing"},
      {R"({"receiver":"910075918","process":"p","documentType":"d","messageId":"x"})",
       "not a UUID"},
      {R"({"receiver":"910075918","process":"p","documentType":"d","sender":"910075918"})",
       "'sender'"},
      {R"({"receiver":"910075918","process":"p","documentType":"d",
           "expectedResponseDateTime":"2001-01-01T00:00:00Z"})",
       "in the past"},
      {R"({"receiver":"910075918","process":"p","documentType":"d",
           "expectedResponseDateTime":"2099-01-01T00:00:00Z"})",
       "more than 90 days ahead"},
      {"{\"receiver\":\"910075918\",\"x\":" + std::string(100000, '[') + "}", "nest"},
  };
  for (const auto& c : cases) {
    INFO(c.json);
    auto d = Parse(c.json);
    REQUIRE_FALSE(d.ok());
    CHECK(d.status().code() == Code::kInvalidArgument);
    CHECK_THAT(d.status().message(), Catch::Matchers::Contains(c.phrase));
  }
}

// Fuzz finding fuzz_message_json-number-overflow: nlohmann throws out_of_range (not
// parse_error) for a number beyond double, which terminated bud-ip.
TEST_CASE("a number too large for a double is a clear error, not a crash", "[ip][outbox][fuzz]") {
  auto d = Parse(R"({"receiver":"0192:910075918","process":"p","documentType":"d","x":1e400})");
  REQUIRE_FALSE(d.ok());
  CHECK(d.status().code() == Code::kInvalidArgument);
  CHECK_FALSE(Parse("6E590").ok());
}

// Fuzz finding fuzz_message_json-time-nan-seconds: "%lf" took "nan" seconds (UB on the cast).
TEST_CASE("expiry times take digits only", "[ip][outbox][fuzz]") {
  for (const char* t : {"2040-01-01T00:00:nan", "2040-01-01T00:00:1e1Z", "2040-01-01T00:00:0x1p3Z",
                        "2040-01-01T00:00: 1Z", "2040-01-01T00:00:00.Z", "2040-01-01T00:00:00+ 1:00"}) {
    INFO(t);
    CHECK_FALSE(ParseTime(t).has_value());
    auto d = Parse(std::string(R"({"receiver":"910075918","process":"p","documentType":"d",)") +
                   R"("expectedResponseDateTime":")" + t + "\"}");
    CHECK_FALSE(d.ok());
  }
  CHECK(ParseTime("2040-01-01T00:00:01.5Z") == ParseTime("2040-01-01T00:00:01Z").value() + 500);
}

namespace fs = std::filesystem;

void Put(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

const char* kGoodJson = R"({"receiver":"0192:910075918","process":"p","documentType":"d"})";

TEST_CASE("OpenRegularNoFollow takes a regular file and refuses links, FIFOs, folders and hard "
          "links", "[ip][outbox][hostile]") {
  test::TempDir dir;
  Put(dir / "ok", "data");
  Put(dir / "secret", "the private key");
  fs::create_symlink(dir / "secret", dir / "link");
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  fs::create_directory(dir / "sub");
  Put(dir / "linked", "x");
  fs::create_hard_link(dir / "linked", dir / "linked2");
  auto d = OpenDir(dir.path());
  REQUIRE(d.ok());

  auto ok = OpenRegularNoFollow(d->get(), "ok", "'ok'");
  REQUIRE(ok.ok());
  CHECK(ReadAllFd(ok->fd.get(), 100, "ok").value() == "data");
  CHECK(ReadAllFd(ok->fd.get(), 3, "'ok'").status().code() == Code::kInvalidArgument);

  struct Case {
    const char* name;
    const char* phrase;
  } cases[] = {{"link", "symbolic link"},
               {"fifo", "not a regular file"},  // and the open did not block
               {"sub", "not a regular file"},
               {"linked", "2 hard links"}};
  for (const auto& c : cases) {
    INFO(c.name);
    auto f = OpenRegularNoFollow(d->get(), c.name, fmt::format("'{}'", c.name));
    REQUIRE_FALSE(f.ok());
    CHECK(f.status().code() == Code::kInvalidArgument);
    CHECK_THAT(f.status().message(), Catch::Matchers::Contains(c.phrase));
  }
  CHECK(OpenRegularNoFollow(d->get(), "missing", "'missing'").status().code() == Code::kNotFound);
}

TEST_CASE("WriteNewFileAt never writes through a link or over a file", "[ip][outbox][hostile]") {
  test::TempDir dir;
  Put(dir / "victim", "precious");
  fs::create_symlink(dir / "victim", dir / "error.txt");
  Put(dir / "there", "old");
  auto d = OpenDir(dir.path());
  REQUIRE(d.ok());
  CHECK(WriteNewFileAt(d->get(), "error.txt", "overwritten", 0640).code() ==
        Code::kAlreadyExists);
  CHECK(WriteNewFileAt(d->get(), "there", "new", 0640).code() == Code::kAlreadyExists);
  CHECK(Slurp(dir / "victim") == "precious");
  CHECK(Slurp(dir / "there") == "old");
  REQUIRE(WriteNewFile(dir / "key", "secret", 0600).ok());
  struct stat st;
  REQUIRE(::stat((dir / "key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(WriteNewFile(dir / "key", "other", 0600).code() == Code::kAlreadyExists);
  CHECK(Slurp(dir / "key") == "secret");
}

TEST_CASE("EscapeControl keeps text on one line", "[ip][outbox][hostile]") {
  CHECK(EscapeControl("plain name.pdf") == "plain name.pdf");
  CHECK(EscapeControl("a\nFORGED\r\t\x1b[31m\\") == "a\\nFORGED\\r\\t\\x1b[31m\\\\");
}

TEST_CASE("a folder or message.json that is a link is refused", "[ip][outbox][hostile]") {
  test::TempDir dir;
  fs::create_directories(dir / "outbox/real");
  Put(dir / "outbox/real/message.json", kGoodJson);
  Put(dir / "outbox/real/a.txt", "a");
  fs::create_directory_symlink(dir / "outbox/real", dir / "outbox/linked");
  fs::create_directories(dir / "outbox/mj");
  Put(dir / "elsewhere.json", kGoodJson);
  fs::create_symlink(dir / "elsewhere.json", dir / "outbox/mj/message.json");
  auto out = OpenDir(dir / "outbox");
  REQUIRE(out.ok());
  auto linked = OpenOutboxFolder(out->get(), dir / "outbox", "linked");
  REQUIRE_FALSE(linked.ok());
  CHECK(linked.status().code() == Code::kInvalidArgument);
  CHECK_THAT(linked.status().message(), Catch::Matchers::Contains("symbolic link"));
  auto mj = OpenOutboxFolder(out->get(), dir / "outbox", "mj");
  REQUIRE_FALSE(mj.ok());
  CHECK(mj.status().code() == Code::kInvalidArgument);
  auto real = OpenOutboxFolder(out->get(), dir / "outbox", "real");
  REQUIRE(real.ok());
  auto draft = ReadOutboxFolder(*real, kMe, {});
  REQUIRE(draft.ok());
  REQUIRE(draft->payload.attachments_size() == 1);
  CHECK(draft->payload.attachments(0).data() == "a");
}

TEST_CASE("MoveToFailed creates error.txt anew: a planted link is not followed and a name "
          "cannot add lines", "[ip][outbox][hostile]") {
  test::TempDir dir;
  const std::string outbox = dir / "outbox";
  fs::create_directories(outbox + "/bad");
  Put(dir / "victim", "precious\n");
  fs::create_symlink(dir / "victim", outbox + "/bad/error.txt");
  auto moved = MoveToFailed(outbox, "bad", "attachment 'x\nSTATUS: OK' is not allowed");
  REQUIRE(moved.ok());
  CHECK(*moved == outbox + "/.failed/bad");
  CHECK(Slurp(dir / "victim") == "precious\n");
  CHECK_FALSE(fs::is_symlink(outbox + "/.failed/bad/error.txt"));
  const std::string text = Slurp(outbox + "/.failed/bad/error.txt");
  CHECK_THAT(text, Catch::Matchers::StartsWith("attachment 'x\\nSTATUS: OK' is not allowed\n"));

  // A link in the outbox itself moves into a folder of its own, beside its error.txt.
  fs::create_directory_symlink(dir.path(), outbox + "/lenke");
  auto link = MoveToFailed(outbox, "lenke", "a link");
  REQUIRE(link.ok());
  CHECK(fs::is_symlink(outbox + "/.failed/lenke/lenke"));
  CHECK_THAT(Slurp(outbox + "/.failed/lenke/error.txt"), Catch::Matchers::StartsWith("a link"));

  // .failed as a link is refused: refused folders are not moved where it points.
  const std::string outbox2 = dir / "outbox2";
  fs::create_directories(outbox2 + "/bad");
  fs::create_directories(dir / "inbox");
  fs::create_directory_symlink(dir / "inbox", outbox2 + "/.failed");
  auto refused = MoveToFailed(outbox2, "bad", "x");
  REQUIRE_FALSE(refused.ok());
  CHECK(fs::is_empty(dir / "inbox"));
}

TEST_CASE("MoveOutboxFiles moves only the files that were checked", "[ip][outbox][hostile]") {
  test::TempDir dir;
  const std::string outbox = dir / "outbox";
  fs::create_directories(outbox + "/big");
  fs::create_directories(dir / "spool");
  Put(outbox + "/big/message.json", kGoodJson);
  Put(outbox + "/big/a.bin", "aaaa");
  Put(dir / "secret", "the private key");
  auto out = OpenDir(outbox);
  REQUIRE(out.ok());
  OutboxLimits limits;
  limits.read_data = false;

  auto folder = OpenOutboxFolder(out->get(), outbox, "big");
  REQUIRE(folder.ok());
  REQUIRE(ReadOutboxFolder(*folder, kMe, limits).ok());
  // Swapped for a link to a secret after the check, before the move.
  fs::rename(outbox + "/big/a.bin", dir / "a.bin.orig");
  fs::create_symlink(dir / "secret", outbox + "/big/a.bin");
  Status st = MoveOutboxFiles(*folder, dir / "spool/one");
  CHECK(st.code() == Code::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Matchers::Contains("was replaced"));
  CHECK_FALSE(fs::exists(dir / "spool/one"));
  CHECK(fs::is_symlink(outbox + "/big/a.bin"));  // put back as it was
  CHECK(fs::exists(outbox + "/big/message.json"));

  // Unchanged: both move, and the spool holds the very files.
  fs::remove(outbox + "/big/a.bin");
  fs::rename(dir / "a.bin.orig", outbox + "/big/a.bin");
  auto again = OpenOutboxFolder(out->get(), outbox, "big");
  REQUIRE(again.ok());
  REQUIRE(ReadOutboxFolder(*again, kMe, limits).ok());
  REQUIRE(MoveOutboxFiles(*again, dir / "spool/two").ok());
  CHECK(Slurp(dir / "spool/two/a.bin") == "aaaa");
  CHECK(fs::exists(dir / "spool/two/message.json"));
  CHECK(fs::is_empty(outbox + "/big"));
}

TEST_CASE("a large folder's arkivmelding.xml is read as a small one's",
          "[ip][outbox][arkivmelding]") {
  test::TempDir dir;
  const std::string outbox = dir / "outbox";
  fs::create_directories(outbox + "/big");
  fs::create_directories(outbox + "/bad");
  Put(outbox + "/big/message.json", kGoodJson);
  Put(outbox + "/big/arkivmelding.xml",
      "<arkivmelding xmlns=\"http://www.arkivverket.no/standarder/noark5/arkivmelding\" "
      "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><mappe xsi:type=\"saksmappe\">"
      "<systemID>s</systemID><basisregistrering xsi:type=\"journalpost\"><journalpostnummer>3"
      "</journalpostnummer><offentligTittel>Stort vedlegg</offentligTittel></basisregistrering>"
      "</mappe></arkivmelding>");
  Put(outbox + "/bad/message.json", kGoodJson);
  Put(outbox + "/bad/arkivmelding.xml", "<!DOCTYPE x><arkivmelding/>");
  auto out = OpenDir(outbox);
  REQUIRE(out.ok());
  OutboxLimits limits;
  for (bool read_data : {true, false}) {  // small (read) and large (streamed from the spool)
    INFO("read_data " << read_data);
    limits.read_data = read_data;
    auto big = OpenOutboxFolder(out->get(), outbox, "big");
    REQUIRE(big.ok());
    auto draft = ReadOutboxFolder(*big, kMe, limits);
    REQUIRE(draft.ok());
    CHECK(draft->title == "Stort vedlegg");
    CHECK(draft->payload.title() == "Stort vedlegg");
    CHECK(draft->message_reference == "s-3");
    auto bad = OpenOutboxFolder(out->get(), outbox, "bad");
    REQUIRE(bad.ok());
    auto refused = ReadOutboxFolder(*bad, kMe, limits);
    REQUIRE_FALSE(refused.ok());
    CHECK_THAT(refused.status().message(), Catch::Matchers::Contains("DOCTYPE"));
  }
}

}  // namespace
}  // namespace bud::ip
