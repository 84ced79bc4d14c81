// How an admin reads the point's own views (`bud-ip status`, the status page): in Norwegian
// bokmål or English, with times in the admin's time zone and their offset shown. JSON for tools
// keeps ISO 8601 in UTC and English keys.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bud::ip {

enum class Lang { kEn, kNb };

// "nb", "nn", "no" and their locale forms ("nb_NO.UTF-8", "nb-NO") are Norwegian; "en..." and
// "C"/"POSIX" English; anything else nullopt.
std::optional<Lang> ParseLang(std::string_view text);
// The first of LC_ALL, LC_MESSAGES and LANG that is set and names a language we have; English
// otherwise.
Lang LangFromEnvironment();
// The first language of an HTTP Accept-Language header we have, by quality then order; English
// when none.
Lang LangFromAcceptLanguage(std::string_view header);
const char* Code(Lang lang);  // "nb", "en"

// `unix_ms` in the local time zone (TZ, /etc/localtime) with its offset:
// "2026-12-03T16:05:09+01:00".
std::string FormatLocalTime(int64_t unix_ms);

}  // namespace bud::ip
