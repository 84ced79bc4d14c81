// Europe/Oslo times (common/oslo_time.h): the offset on both sides of each change, written with
// it, and read with Oslo as the zone of a time without one.
#include "common/oslo_time.h"

#include <catch2/catch.hpp>

#include "common/clock.h"

namespace bud {
namespace {

int64_t Utc(const char* text) {
  auto t = ParseTime(text);
  REQUIRE(t);
  return *t;
}

TEST_CASE("Oslo's offset: +01:00 in winter, +02:00 in summer, switching at 01:00 UTC",
          "[common][time]") {
  CHECK(OsloOffsetMs(Utc("2026-12-03T12:00:00Z")) == 3600000);
  CHECK(OsloOffsetMs(Utc("2026-07-01T12:00:00Z")) == 7200000);
  // 2026: summer time from Sunday 29 March 01:00 UTC to Sunday 25 October 01:00 UTC.
  CHECK(OsloOffsetMs(Utc("2026-03-29T00:59:59Z")) == 3600000);
  CHECK(OsloOffsetMs(Utc("2026-03-29T01:00:00Z")) == 7200000);
  CHECK(OsloOffsetMs(Utc("2026-10-25T00:59:59Z")) == 7200000);
  CHECK(OsloOffsetMs(Utc("2026-10-25T01:00:00Z")) == 3600000);
  // 2024 (a leap year): 31 March and 27 October.
  CHECK(OsloOffsetMs(Utc("2024-03-31T01:00:00Z")) == 7200000);
  CHECK(OsloOffsetMs(Utc("2024-03-30T12:00:00Z")) == 3600000);
  CHECK(OsloOffsetMs(Utc("2024-10-27T00:30:00Z")) == 7200000);
  CHECK(OsloOffsetMs(Utc("2024-10-27T01:30:00Z")) == 3600000);
}

TEST_CASE("times are written with Oslo's offset", "[common][time]") {
  CHECK(FormatOsloTime(Utc("2026-12-03T16:00:00.123Z")) == "2026-12-03T17:00:00.123+01:00");
  CHECK(FormatOsloTime(Utc("2026-07-01T22:30:00Z")) == "2026-07-02T00:30:00.000+02:00");
  CHECK(ParseTime(FormatOsloTime(1798761600123)) == std::optional<int64_t>(1798761600123));
}

TEST_CASE("a time without an offset is Oslo local time", "[common][time]") {
  CHECK(ParseOsloTime("2026-12-03T17:00:00") ==
        std::optional<int64_t>(Utc("2026-12-03T16:00:00Z")));
  CHECK(ParseOsloTime("2026-07-01T12:00:00.5") ==
        std::optional<int64_t>(Utc("2026-07-01T10:00:00.5Z")));
  // With a zone it is taken as given.
  CHECK(ParseOsloTime("2026-12-03T17:00:00Z") ==
        std::optional<int64_t>(Utc("2026-12-03T17:00:00Z")));
  CHECK(ParseOsloTime("2026-12-03T17:00:00+05:00") ==
        std::optional<int64_t>(Utc("2026-12-03T12:00:00Z")));
  // The hour skipped on 29 March 2026 (02:00-03:00 local) moves forward, as java.time does.
  CHECK(ParseOsloTime("2026-03-29T02:30:00") ==
        std::optional<int64_t>(Utc("2026-03-29T01:30:00Z")));
  // The hour repeated on 25 October 2026 (02:00-03:00 local): the first, summer time, one.
  CHECK(ParseOsloTime("2026-10-25T02:30:00") ==
        std::optional<int64_t>(Utc("2026-10-25T00:30:00Z")));
  CHECK(ParseOsloTime("2026-10-25T03:30:00") ==
        std::optional<int64_t>(Utc("2026-10-25T02:30:00Z")));
  CHECK_FALSE(ParseOsloTime("2026-12-03"));
  CHECK_FALSE(ParseOsloTime("2026-12-03T17:00:00+1"));
  CHECK_FALSE(ParseOsloTime("yesterday"));
}

}  // namespace
}  // namespace bud
