// A request's query parameters, validated: a bad one answers 400 naming it (once) and sets
// `failed`, so a route reads all it needs and then returns when it failed.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "integration-point/message_state.h"
#include "integration-point/store/rows.h"

namespace bud::ip::api {

// Page sizes as Spring Data's (and so eFormidling's): 10 when not asked for, a larger one is
// clamped to 2000, a size below 1 (or not a number) is the default.
inline constexpr int64_t kDefaultPageSize = 10;
inline constexpr int64_t kMaxPageSize = 2000;

// One `sort=prop[,asc|desc]` of a list (store/rows.h).
using SortOrder = SortKey;

struct Query {
  const httplib::Request& req;
  httplib::Response& res;
  bool failed = false;

  std::string Text(const char* name) const;
  int64_t Int(const char* name, int64_t def, int64_t lo, int64_t hi);
  int64_t Time(const char* name);            // ISO 8601 -> ms; 0 when absent
  std::string StatusName(const char* name);  // a known status name or ""
  // OUTGOING/OUT, INCOMING/IN; nullopt when not given.
  std::optional<ip::Direction> Direction(const char* name);
  std::string Org(const char* name);  // "0192:<orgnr>" or ""
  // page (from 0; below 0 or not a number: 0) and size (above) -> offset/limit; returns the
  // page. Never fails: Spring falls back to the defaults.
  int64_t Page(int64_t& offset, int64_t& limit);
  // Every `sort` parameter ("prop", "prop,desc", "a,b,asc"), in order; a property not in
  // `allowed` fails (400 naming the ones there are), a direction other than asc/desc too.
  std::vector<SortOrder> Sort(const std::vector<std::string>& allowed);
  void Fail(const std::string& message);
};

}  // namespace bud::ip::api
