// What a receiving integration point relies on when a peer's text reaches it (issue: a hostile
// member knocks no one over): attachment names that are safe on Windows as well as Linux,
// metadata bounded before anything parses or copies it, control characters made visible before
// they reach a log or a terminal, and store files that other users cannot read.
#include <sys/stat.h>

#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <sstream>
#include <string>

#include "common/log.h"
#include "common/payload.h"
#include "common/storage/sqlite.h"
#include "tests/support/temp_dir.h"

namespace bud {
namespace {

TEST_CASE("ValidateAttachmentName refuses names that are unsafe on Windows", "[payload]") {
  const std::string name = GENERATE(as<std::string>{},
                                    "a:b.txt",         // an NTFS alternate data stream
                                    "C:x",             // a drive-relative path
                                    "x<y", "x>y", "say\"hi\".txt", "a|b", "why?.pdf", "*.pdf",
                                    "CON", "con", "con.txt", "Con.tar.gz", "PRN.pdf", "aux .pdf",
                                    "NUL", "nul.json", "COM1", "com9.txt", "LPT1.tar.gz", "lpt5",
                                    "brev.", "brev ", "brev.pdf.",  // trailing dot or space
                                    "mimetype", "MIMETYPE", "META-INF", "meta-inf",
                                    "Message.json", "MESSAGE.JSON");
  CAPTURE(name);
  const Status s = ValidateAttachmentName(name);
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == Code::kInvalidArgument);
}

TEST_CASE("ValidateAttachmentName keeps names that merely resemble reserved ones", "[payload]") {
  const std::string name = GENERATE(as<std::string>{}, "console.txt", "conx", "COM10.txt",
                                    "com0.txt", "lpt.txt", "auxiliary.pdf", "mimetype.txt",
                                    "META-INF.txt", "nul_og_niks.txt", "a . b.txt", "x.tar.gz");
  CAPTURE(name);
  const Status s = ValidateAttachmentName(name);
  INFO(s.ToString());
  CHECK(s.ok());
}

TEST_CASE("a refused attachment name reaches the error message with its controls escaped",
          "[payload]") {
  const Status s = ValidateAttachmentName("\x1b]0;owned\x07\x1b[2Jx.txt");
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find('\x1b') == std::string::npos);
  CHECK(s.message().find('\x07') == std::string::npos);
  CHECK_THAT(s.message(), Catch::Contains("\\x1b]0;owned\\x07\\x1b[2Jx.txt"));
}

TEST_CASE("ValidatePayload treats names that differ only in case as one", "[payload]") {
  wire::Payload p;
  p.add_attachments()->set_name("Vedlegg.pdf");
  p.add_attachments()->set_name("vedlegg.PDF");
  const Status s = ValidatePayload(p, 10);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK_THAT(s.message(), Catch::Contains("twice"));
}

TEST_CASE("ValidatePayload refuses metadata nested deeper than the JSON bound", "[payload]") {
  wire::Payload p;
  p.add_attachments()->set_name("brev.txt");
  // 64 levels pass (an SBD needs about 8); the poison message of the issue had ~100,000.
  p.set_metadata_json(std::string(64, '[') + std::string(64, ']'));
  CHECK(ValidatePayload(p, 10).ok());
  p.set_metadata_json(std::string(65, '[') + std::string(65, ']'));
  Status s = ValidatePayload(p, 10);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK_THAT(s.message(), Catch::Contains("metadata") && Catch::Contains("deep"));
  p.set_metadata_json("{\"a\":" + std::string(100000, '['));  // not even balanced
  s = ValidatePayload(p, 10);
  CHECK(s.code() == Code::kInvalidArgument);
  // Not JSON at all is no threat: it is kept as text.
  p.set_metadata_json("ikke json [[[");
  CHECK(ValidatePayload(p, 10).ok());
}

TEST_CASE("Printable escapes control characters and leaves text alone", "[log]") {
  CHECK(Printable("Søknad om løyve – 日本語 \xf0\x9f\x93\x84") ==
        "Søknad om løyve – 日本語 \xf0\x9f\x93\x84");
  CHECK(Printable("a\nb\rc\td") == "a\\nb\\rc\\td");
  CHECK(Printable("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m");
  CHECK(Printable(std::string("nul\0x", 5)) == "nul\\x00x");
  CHECK(Printable("del\x7f") == "del\\x7f");
  CHECK(Printable("c1 csi \xc2\x9b" "31m") == "c1 csi \\u009b31m");  // U+009B, the 8-bit CSI
  CHECK(Printable("\xc2\xa0nbsp") == "\xc2\xa0nbsp");                  // U+00A0 is text
  CHECK(Printable("bad \xff\xfe utf8 \xc3") == "bad \\xff\\xfe utf8 \\xc3");
  CHECK(Printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");  // a surrogate is no character
  // "evil\u202Etxt.exe" shows as "evilexe.txt" on a terminal that obeys the override.
  CHECK(Printable("evil\xe2\x80\xaetxt.exe") == "evil\\u202etxt.exe");
  CHECK(Printable("\xe2\x81\xa6x\xe2\x81\xa9") == "\\u2066x\\u2069");
  CHECK(Printable("\xe2\x80\x94 dash") == "\xe2\x80\x94 dash");  // U+2014 is text
}

TEST_CASE("log lines carry a peer's control characters escaped", "[log]") {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  spdlog::logger logger("hostile", sink);
  logger.set_formatter(LineFormatter());  // what every Logger() uses
  logger.warn("message x refused (FEIL): {}", "reason\n2026-01-01 forged line\x1b[2J");
  logger.flush();
  const std::string text = out.str();
  CHECK(text.find('\x1b') == std::string::npos);
  CHECK_THAT(text, Catch::Contains("reason\\n2026-01-01 forged line\\x1b[2J"));
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);  // one line, its own end only
}

TEST_CASE("a new store file is created 0600 and deletes securely", "[sqlite]") {
  test::TempDir dir;
  const std::string path = dir / "store.db";
  const mode_t old_umask = ::umask(022);
  auto db = storage::Db::Open(path);
  ::umask(old_umask);
  REQUIRE(db.ok());
  REQUIRE((*db)->Exec("CREATE TABLE t(x); INSERT INTO t VALUES (1)").ok());
  struct stat st;
  for (const std::string& p : {path, path + "-wal", path + "-shm"}) {
    INFO(p);
    REQUIRE(::stat(p.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
  }
  auto q = (*db)->Prepare("PRAGMA secure_delete");
  REQUIRE(q.ok());
  auto row = (*q)->Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  CHECK((*q)->Int(0) == 1);
  (*q)->Reset();
}

TEST_CASE("an existing store file keeps its mode", "[sqlite]") {
  test::TempDir dir;
  const std::string path = dir / "store.db";
  { REQUIRE(storage::Db::Open(path).ok()); }
  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  REQUIRE(storage::Db::Open(path).ok());
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
}

}  // namespace
}  // namespace bud
