// A request's query parameters, validated: a bad one answers 400 naming it (once) and sets
// `failed`, so a route reads all it needs and then returns when it failed.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <optional>
#include <string>

#include "integration-point/message_state.h"

namespace bud::ip::api {

// The largest page size a client may ask for.
inline constexpr int64_t kMaxPageSize = 1000;

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
  // page (from 0) and size (1..kMaxPageSize, default 20) -> offset/limit; returns the page.
  int64_t Page(int64_t& offset, int64_t& limit);
  void Fail(const std::string& message);
};

}  // namespace bud::ip::api
