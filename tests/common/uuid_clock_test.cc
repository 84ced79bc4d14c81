// UUIDs (common/uuid.h) and time formatting (common/clock.h).
#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <string>

#include "common/clock.h"
#include "common/uuid.h"

namespace bud {
namespace {

TEST_CASE("NewUuid gives distinct lower-case version 4 UUIDs", "[uuid]") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string u = NewUuid();
    INFO(u);
    REQUIRE(IsUuid(u));
    REQUIRE(u.size() == 36);
    CHECK(u[14] == '4');                                          // version 4
    CHECK(std::string("89ab").find(u[19]) != std::string::npos);  // RFC 4122 variant
    CHECK(u.find_first_of("ABCDEF") == std::string::npos);        // lower case
    seen.insert(u);
  }
  CHECK(seen.size() == 1000);
  CHECK(NewUuid() != NewUuid());
}

TEST_CASE("IsUuid accepts 8-4-4-4-12 hex in either case and rejects the rest", "[uuid]") {
  CHECK(IsUuid("123e4567-e89b-42d3-a456-426614174000"));
  CHECK(IsUuid("123E4567-E89B-42D3-A456-426614174000"));
  const std::string bad = GENERATE(as<std::string>{}, "",
                                   "123e4567e89b42d3a456426614174000",       // no dashes
                                   "123e4567-e89b-42d3-a456-42661417400",    // short
                                   "123e4567-e89b-42d3-a456-4266141740000",  // long
                                   "123e4567-e89b-42d3-a456_426614174000",   // wrong separator
                                   "123e4567-e89b-42d3-a456-42661417400g",   // not hex
                                   "{123e4567-e89b-42d3-a456-426614174000}",
                                   "123e4567-e89b-42d3-a4564-26614174000",  // dash misplaced
                                   " 23e4567-e89b-42d3-a456-426614174000");
  CAPTURE(bad);
  CHECK_FALSE(IsUuid(bad));
}

TEST_CASE("FormatTime writes UTC ISO 8601 with milliseconds", "[clock]") {
  CHECK(FormatTime(0) == "1970-01-01T00:00:00.000Z");
  CHECK(FormatTime(1795942800123) == "2026-11-29T09:00:00.123Z");
  CHECK(FormatTime(951782400007) == "2000-02-29T00:00:00.007Z");  // leap day
}

TEST_CASE("ParseTime reads Z and +hh:mm offsets, with or without fractions", "[clock]") {
  const int64_t t = 1795942800123;  // 2026-11-29T09:00:00.123Z
  CHECK(ParseTime("2026-11-29T09:00:00.123Z") == t);
  CHECK(ParseTime("2026-11-29T10:00:00.123+01:00") == t);
  CHECK(ParseTime("2026-11-29T08:00:00.123-01:00") == t);
  CHECK(ParseTime("2026-11-29T14:30:00.123+05:30") == t);
  CHECK(ParseTime("2026-11-29T09:00:00Z") == t - 123);
  CHECK(ParseTime("2026-11-29T10:00:00+01:00") == t - 123);
  CHECK(ParseTime("2026-11-29T09:00:00.5Z") == t - 123 + 500);
}

TEST_CASE("ParseTime rejects what is not a timestamp", "[clock]") {
  const std::string bad =
      GENERATE(as<std::string>{}, "", "garbage", "2026-11-29", "2026-11-29T09:00",
               "2026-11-29T09:00:00X", "2026-11-29T09:00:00*01:00");
  CAPTURE(bad);
  CHECK_FALSE(ParseTime(bad).has_value());
}

// KNOWN BUG (common/log.cc, FormatTime): truncating division gives a negative millisecond
// field before 1970: FormatTime(-1) is "1970-01-01T00:00:00.-01Z". Marked [!shouldfail] until
// fixed (floor-divide: secs = floor(ms / 1000), millis = ms - secs * 1000); then drop the tag.
TEST_CASE("FormatTime handles instants before 1970", "[clock]") {
  CHECK(FormatTime(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(FormatTime(-1500) == "1969-12-31T23:59:58.500Z");
}

// KNOWN BUG (common/log.cc, ParseTime): sscanf + timegm accept out-of-range fields (month 13,
// hour 25 are silently normalised into another date) and ignore anything after a "+hh:mm"
// offset. Marked [!shouldfail] until fixed; then drop the tag.
TEST_CASE("ParseTime rejects out-of-range fields and trailing garbage",
          "[clock]") {
  const std::string bad = GENERATE(as<std::string>{}, "2026-13-45T25:61:00Z",
                                   "2026-02-30T09:00:00Z", "2026-11-29T09:00:00+01:00xyz");
  CAPTURE(bad);
  CHECK_FALSE(ParseTime(bad).has_value());
}

TEST_CASE("FormatTime and ParseTime round trip", "[clock]") {
  std::mt19937_64 rng(1729);
  std::uniform_int_distribution<int64_t> when(0, 4102444800000);  // 1970 .. 2100
  for (int i = 0; i < 2000; ++i) {
    const int64_t ms = i < 3 ? std::vector<int64_t>{0, 999, 1795942800999}[i] : when(rng);
    const std::string text = FormatTime(ms);
    INFO(ms << " -> " << text);
    REQUIRE(ParseTime(text) == ms);
  }
  const int64_t now = NowMs();
  CHECK(ParseTime(FormatTime(now)) == now);
  CHECK(MonoMs() <= MonoMs());
}

}  // namespace
}  // namespace bud
