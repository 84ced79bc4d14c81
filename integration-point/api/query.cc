// See query.h.
#include "integration-point/api/query.h"

#include <fmt/format.h>

#include <cstdlib>

#include "common/clock.h"
#include "common/http_server.h"
#include "common/orgnr.h"
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
  auto t = ParseTime(v);
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

int64_t Query::Page(int64_t& offset, int64_t& limit) {
  const int64_t page = Int("page", 0, 0, 1000000);
  limit = Int("size", 20, 1, kMaxPageSize);
  offset = page * limit;
  return page;
}

void Query::Fail(const std::string& message) {
  if (!failed) SendError(res, 400, message, req.path);
  failed = true;
}

}  // namespace bud::ip::api
