// See oslo_time.h.
#include "common/oslo_time.h"

#include <fmt/format.h>

#include <ctime>

#include "common/clock.h"

namespace bud {

namespace {

constexpr int64_t kHourMs = 3600 * 1000;

// 01:00 UTC on the last Sunday of `month` (1..12) of `year`, in ms.
int64_t LastSundayOneUtc(int year, int month) {
  struct tm first_of_next = {};
  first_of_next.tm_year = (month == 12 ? year + 1 : year) - 1900;
  first_of_next.tm_mon = month == 12 ? 0 : month;
  first_of_next.tm_mday = 1;
  const time_t next = timegm(&first_of_next);
  const time_t last_day = next - 24 * 3600;
  struct tm t;
  gmtime_r(&last_day, &t);
  const time_t sunday = last_day - static_cast<time_t>(t.tm_wday) * 24 * 3600;
  return (static_cast<int64_t>(sunday) + 3600) * 1000;
}

int YearOf(int64_t unix_ms) {
  const time_t secs = static_cast<time_t>(unix_ms / 1000);
  struct tm t;
  gmtime_r(&secs, &t);
  return t.tm_year + 1900;
}

// Whether the text after the seconds (and their fraction) carries a zone: 'Z' or +/-hh:mm.
bool HasZone(std::string_view text) {
  if (text.size() <= 19) return false;
  size_t pos = 19;
  if (text[pos] == '.') {
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
  }
  return pos < text.size();
}

}  // namespace

int64_t OsloOffsetMs(int64_t unix_ms) {
  const int year = YearOf(unix_ms);
  const bool summer = unix_ms >= LastSundayOneUtc(year, 3) && unix_ms < LastSundayOneUtc(year, 10);
  return summer ? 2 * kHourMs : kHourMs;
}

std::string FormatOsloTime(int64_t unix_ms) {
  const int64_t offset = OsloOffsetMs(unix_ms);
  std::string local = FormatTime(unix_ms + offset);  // "....sssZ"
  local.pop_back();
  return fmt::format("{}+{:02}:00", local, offset / kHourMs);
}

std::optional<int64_t> ParseOsloTime(std::string_view text) {
  auto t = ParseTime(text);
  if (!t || HasZone(text)) return t;
  // `*t` is the local time read as if it were UTC.
  const int64_t summer = *t - 2 * kHourMs;
  if (OsloOffsetMs(summer) == 2 * kHourMs) return summer;
  return *t - kHourMs;
}

}  // namespace bud
