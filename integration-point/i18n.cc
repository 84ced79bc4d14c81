// Language and local time for the admin's views. See i18n.h.
#include "integration-point/i18n.h"

#include <fmt/format.h>

#include <cctype>
#include <cstdlib>
#include <ctime>
#include <vector>

namespace bud::ip {

std::optional<Lang> ParseLang(std::string_view text) {
  std::string lower;
  for (char c : text.substr(0, 32))
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto starts = [&](std::string_view p) {
    return lower.size() >= p.size() && lower.compare(0, p.size(), p) == 0 &&
           (lower.size() == p.size() || lower[p.size()] == '_' || lower[p.size()] == '-' ||
            lower[p.size()] == '.');
  };
  if (starts("nb") || starts("nn") || starts("no")) return Lang::kNb;
  if (starts("en") || lower == "c" || starts("c") || lower == "posix") return Lang::kEn;
  return std::nullopt;
}

Lang LangFromEnvironment() {
  for (const char* var : {"LC_ALL", "LC_MESSAGES", "LANG"}) {
    const char* v = std::getenv(var);
    if (v == nullptr || *v == '\0') continue;
    if (auto lang = ParseLang(v)) return *lang;
    return Lang::kEn;  // the first set variable decides, as for gettext
  }
  return Lang::kEn;
}

Lang LangFromAcceptLanguage(std::string_view header) {
  // "nb-NO,nb;q=0.9,en;q=0.8": ranges separated by commas, each with an optional ;q=.
  std::optional<Lang> best;
  double best_q = -1;
  size_t at = 0;
  for (int n = 0; at <= header.size() && n < 32; ++n) {
    size_t comma = header.find(',', at);
    std::string_view item =
        header.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at);
    at = comma == std::string_view::npos ? header.size() + 1 : comma + 1;
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    double q = 1.0;
    if (size_t semi = item.find(';'); semi != std::string_view::npos) {
      std::string_view params = item.substr(semi + 1);
      item = item.substr(0, semi);
      if (size_t qpos = params.find("q="); qpos != std::string_view::npos) {
        q = std::atof(std::string(params.substr(qpos + 2, 8)).c_str());
      }
    }
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    auto lang = ParseLang(item);
    if (lang && q > best_q) {
      best = lang;
      best_q = q;
    }
  }
  return best.value_or(Lang::kEn);
}

const char* Code(Lang lang) { return lang == Lang::kNb ? "nb" : "en"; }

std::string FormatLocalTime(int64_t unix_ms) {
  int64_t secs64 = unix_ms / 1000;
  if (unix_ms % 1000 < 0) secs64 -= 1;
  const time_t secs = static_cast<time_t>(secs64);
  struct tm tm;
  localtime_r(&secs, &tm);
  const long off = tm.tm_gmtoff;  // seconds east of UTC
  const long abs_off = off < 0 ? -off : off;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     off < 0 ? '-' : '+', abs_off / 3600, (abs_off % 3600) / 60);
}

}  // namespace bud::ip
