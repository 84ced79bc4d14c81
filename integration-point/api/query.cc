// See query.h.
#include "integration-point/api/query.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>

#include "common/clock.h"
#include "common/http_server.h"
#include "common/orgnr.h"
#include "common/oslo_time.h"
#include "common/status_machine.h"

namespace bud::ip::api {

std::string Query::Text(const char* name) const {
  return req.has_param(name) ? req.get_param_value(name) : std::string();
}

int64_t Query::Int(const char* name, int64_t def, int64_t lo, int64_t hi) {
  if (!req.has_param(name)) return def;
  const std::string v = req.get_param_value(name);
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < lo || n > hi) {
    Fail(fmt::format("query parameter '{}' must be a whole number from {} to {} (got '{}')", name,
                     lo, hi, v));
    return def;
  }
  return n;
}

int64_t Query::Time(const char* name) {
  if (!req.has_param(name)) return 0;
  const std::string v = req.get_param_value(name);
  auto t = ParseOsloTime(v);
  if (!t) {
    Fail(
        fmt::format("query parameter '{}' must be an ISO 8601 time such as "
                    "2026-12-01T12:00:00+01:00 (got '{}')",
                    name, v));
    return 0;
  }
  return *t;
}

std::string Query::StatusName(const char* name) {
  std::string v = Text(name);
  if (!v.empty() && !StatusFromName(v)) Fail(fmt::format("'{}' is not a known status", v));
  return v;
}

std::optional<ip::Direction> Query::Direction(const char* name) {
  std::string v = Text(name);
  if (v.empty()) return std::nullopt;
  if (v == "OUTGOING" || v == "OUT") return ip::Direction::kOut;
  if (v == "INCOMING" || v == "IN") return ip::Direction::kIn;
  Fail(fmt::format("query parameter '{}' must be OUTGOING or INCOMING (got '{}')", name, v));
  return std::nullopt;
}

std::string Query::Org(const char* name) {
  std::string v = Text(name);
  if (v.empty()) return v;
  auto o = Orgnr::Parse(v);
  if (!o.ok()) {
    Fail(fmt::format("query parameter '{}': {}", name, o.status().message()));
    return "";
  }
  return o->wire();
}

namespace {
// A whole number, or `def` when absent or not one (as Spring's pageable resolver reads them).
int64_t Lenient(const httplib::Request& req, const char* name, int64_t def) {
  if (!req.has_param(name)) return def;
  const std::string v = req.get_param_value(name);
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE) return def;
  return n;
}

std::string LowerAscii(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
}  // namespace

int64_t Query::Page(int64_t& offset, int64_t& limit) {
  int64_t page = Lenient(req, "page", 0);
  if (page < 0 || page > 1000000) page = 0;
  limit = Lenient(req, "size", kDefaultPageSize);
  if (limit < 1) limit = kDefaultPageSize;
  if (limit > kMaxPageSize) limit = kMaxPageSize;
  offset = page * limit;
  return page;
}

std::vector<SortOrder> Query::Sort(const std::vector<std::string>& allowed) {
  std::vector<SortOrder> out;
  const size_t n = req.get_param_value_count("sort");
  for (size_t i = 0; i < n && i < 16; ++i) {
    const std::string v = req.get_param_value("sort", i);
    std::vector<std::string> parts;
    size_t at = 0;
    while (at <= v.size()) {
      const size_t comma = v.find(',', at);
      parts.push_back(v.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
    bool ascending = true;
    if (parts.size() > 1) {
      const std::string dir = LowerAscii(parts.back());
      if (dir == "asc" || dir == "desc") {
        ascending = dir == "asc";
        parts.pop_back();
      }
    }
    for (const auto& p : parts) {
      if (p.empty()) continue;
      bool known = false;
      for (const auto& a : allowed) known = known || a == p;
      if (!known) {
        std::string names;
        for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
        Fail(fmt::format("query parameter 'sort': no property '{}' to sort by (there are: {})",
                         p.size() > 64 ? p.substr(0, 64) + "..." : p, names));
        return {};
      }
      out.push_back({p, ascending});
    }
  }
  return out;
}

void Query::Fail(const std::string& message) {
  if (!failed) SendError(res, 400, message, req.path);
  failed = true;
}

}  // namespace bud::ip::api
