// Times as eFormidling's Next Move API writes and reads them: with the Europe/Oslo offset
// ("2026-12-03T17:00:00+01:00", "2026-07-01T14:00:00+02:00"), and a time given without an
// offset read as Oslo local time (as the Java integration point's ZoneId does).
//
// The zone's rule is written here, not read from a tz database: Central European Time (+01:00),
// with summer time (+02:00) from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last
// Sunday of October, the EU rule Norway has followed since 1996. Times before 1996 get that rule
// too.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bud {

// Oslo's offset from UTC at `unix_ms`, in ms (3,600,000 or 7,200,000).
int64_t OsloOffsetMs(int64_t unix_ms);
// "2026-12-03T17:00:00.123+01:00".
std::string FormatOsloTime(int64_t unix_ms);
// ParseTime's grammar (clock.h), where a time without 'Z' or an offset is Oslo local time. In
// the hour skipped in March a time is moved forward by that hour; in the hour repeated in
// October it is the first (summer time) one, as java.time resolves them.
std::optional<int64_t> ParseOsloTime(std::string_view text);

}  // namespace bud
