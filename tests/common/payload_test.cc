// Payload rules (common/payload.h): attachment names are plain file names that are safe to
// write into a receiver's folder, and a payload is checked before anything is written from it.
#include "common/payload.h"

#include <catch2/catch.hpp>
#include <string>

namespace bud {
namespace {

TEST_CASE("ValidateAttachmentName accepts plain file names", "[payload]") {
  const std::string name =
      GENERATE(as<std::string>{}, "rapport.pdf", "æøå fil.txt", "Søknad om løyve (endeleg).docx",
               "a", "README", "x.tar.gz", "日本語.txt", "emoji-\xf0\x9f\x93\x84.pdf",
               "dots..in..middle.txt", "message.json.txt", "Message.JSON2", std::string(255, 'n'));
  CAPTURE(name);
  Status s = ValidateAttachmentName(name);
  INFO(s.ToString());
  CHECK(s.ok());
}

TEST_CASE("ValidateAttachmentName rejects names that are not plain file names", "[payload]") {
  const std::string name = GENERATE(as<std::string>{},
                                    "",             // empty
                                    "../x",         // traversal
                                    "/etc/passwd",  // absolute
                                    ".hidden",      // hidden
                                    ".",            // directory references
                                    "..",
                                    "a/b",  // separators
                                    "a\\b", "..\\..\\windows",
                                    "x\n",  // control characters
                                    "tab\tname", "del\x7f",
                                    "message.json",          // reserved
                                    "\xff.txt",              // invalid UTF-8
                                    "\xc3",                  // truncated sequence
                                    "ab\xe6\x97",            // truncated three-byte sequence
                                    "\x80start",             // lone continuation byte
                                    std::string(256, 'n'));  // too long
  CAPTURE(name);
  Status s = ValidateAttachmentName(name);
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK_THAT(s.message(), Catch::Contains("attachment name"));
}

// KNOWN BUG (common/payload.cc, ValidUtf8): only the shape of each sequence is checked, so
// overlong forms (C0 AF is an overlong '/'), UTF-16 surrogates and code points above U+10FFFF
// pass as "valid UTF-8". Marked [!shouldfail] until the library is fixed; then drop the tag.
TEST_CASE("ValidateAttachmentName rejects overlong, surrogate and out-of-range UTF-8",
          "[payload]") {
  const std::string name = GENERATE(as<std::string>{},
                                    "\xc0\xaf..\xc0\xaf.txt",  // overlong '/'
                                    "nul\xc0\x80.txt",         // overlong NUL
                                    "\xe0\x80\xaf.txt",        // three-byte overlong '/'
                                    "\xed\xa0\x80.txt",        // surrogate U+D800
                                    "\xf4\x90\x80\x80.txt");   // U+110000
  CAPTURE(name);
  CHECK_FALSE(ValidateAttachmentName(name).ok());
}

TEST_CASE("ValidateAttachmentName sees the whole name, including after a NUL", "[payload]") {
  CHECK_FALSE(ValidateAttachmentName(std::string("ok.txt\0/../../x", 15)).ok());
  CHECK_FALSE(ValidateAttachmentName(std::string("ok\0.txt", 7)).ok());
}

TEST_CASE("ValidatePayload rejects duplicate names, too many attachments and bad names",
          "[payload]") {
  wire::Payload p;
  for (const char* name : {"a.pdf", "b.pdf", "c.pdf"}) p.add_attachments()->set_name(name);
  CHECK(ValidatePayload(p, 3).ok());
  CHECK(ValidatePayload(p, 100).ok());

  Status too_many = ValidatePayload(p, 2);
  CHECK(too_many.code() == Code::kInvalidArgument);
  CHECK_THAT(too_many.message(), Catch::Contains("3") && Catch::Contains("2"));

  wire::Payload dup = p;
  dup.add_attachments()->set_name("b.pdf");
  Status s = ValidatePayload(dup, 10);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK_THAT(s.message(), Catch::Contains("b.pdf") && Catch::Contains("twice"));

  wire::Payload bad = p;
  bad.add_attachments()->set_name("../../etc/cron.d/x");
  CHECK(ValidatePayload(bad, 10).code() == Code::kInvalidArgument);

  wire::Payload reserved = p;
  reserved.add_attachments()->set_name("message.json");
  CHECK(ValidatePayload(reserved, 10).code() == Code::kInvalidArgument);

  CHECK(ValidatePayload(wire::Payload(), 0).ok());  // a message without attachments
}

TEST_CASE("GuessMediaType maps extensions case-insensitively", "[payload]") {
  CHECK(GuessMediaType("rapport.pdf") == "application/pdf");
  CHECK(GuessMediaType("RAPPORT.PDF") == "application/pdf");
  CHECK(GuessMediaType("data.xml") == "application/xml");
  CHECK(GuessMediaType("bilde.JPeG") == "image/jpeg");
  CHECK(GuessMediaType("notat.txt") == "text/plain");
  CHECK(GuessMediaType("arkiv.tar.zip") == "application/zip");
  CHECK(GuessMediaType("ukjent.xyz") == "application/octet-stream");
  CHECK(GuessMediaType("uten_endelse") == "application/octet-stream");
  CHECK(GuessMediaType("slutter.med.punktum.") == "application/octet-stream");
}

}  // namespace
}  // namespace bud
