// Organisation numbers (common/orgnr.h): nine digits with a mod-11 check digit, optionally
// prefixed with the ICD "0192:".
#include "common/orgnr.h"

#include <catch2/catch.hpp>
#include <string>

namespace bud {
namespace {

TEST_CASE("Orgnr::Parse accepts valid numbers with and without the 0192 prefix", "[orgnr]") {
  const std::string text = GENERATE(as<std::string>{}, "0192:910076787", "910076787", "910075918",
                                    "974760673", "0192:974760673");
  CAPTURE(text);
  auto org = Orgnr::Parse(text);
  INFO(org.status().ToString());
  REQUIRE(org.ok());
  const std::string digits = text.substr(text.size() - 9);
  CHECK(org->digits() == digits);
  CHECK(org->wire() == "0192:" + digits);
}

TEST_CASE("Orgnr wire form, equality and ordering", "[orgnr]") {
  auto a = Orgnr::Parse("910076787");
  auto b = Orgnr::Parse("0192:910076787");
  auto c = Orgnr::Parse("910075918");
  REQUIRE((a.ok() && b.ok() && c.ok()));
  CHECK(a->wire() == "0192:910076787");
  CHECK(*a == *b);
  CHECK_FALSE(*a == *c);
  CHECK(*c < *a);
  // A wire form parses back to the same number.
  auto again = Orgnr::Parse(a->wire());
  REQUIRE(again.ok());
  CHECK(*again == *a);
}

TEST_CASE("Orgnr::Parse rejects everything else with BAD_ORGNR", "[orgnr]") {
  const std::string text = GENERATE(as<std::string>{},
                                    "910076788",       // wrong check digit
                                    "910076780",       // wrong check digit
                                    "91007678",        // 8 digits
                                    "9100767870",      // 10 digits
                                    "91007678A",       // a letter
                                    "ABCDEFGHI",       // letters
                                    "0191:910076787",  // another ICD
                                    "0192:",           // prefix only
                                    "0192:0192:910076787",
                                    " 910076787",  // whitespace
                                    "910076787 ",
                                    "910 076 787",  // grouped
                                    "-10076787", "",
                                    "910076710",   // check digit would be 10: never valid
                                    "910076850");  // idem
  CAPTURE(text);
  auto org = Orgnr::Parse(text);
  REQUIRE_FALSE(org.ok());
  CHECK(org.status().code() == Code::kBadOrgnr);
  CHECK_THAT(org.status().message(), Catch::Contains("'" + text + "'"));
}

TEST_CASE("Orgnr::Parse says which rule was broken", "[orgnr]") {
  CHECK_THAT(Orgnr::Parse("910076788").status().message(), Catch::Contains("check digit"));
  CHECK_THAT(Orgnr::Parse("91007678").status().message(), Catch::Contains("9 digits"));
  CHECK_THAT(Orgnr::Parse("91007678X").status().message(), Catch::Contains("non-digit"));
}

}  // namespace
}  // namespace bud
