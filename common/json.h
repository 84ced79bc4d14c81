// Parsing JSON that comes from outside (outbox folders, HTTP bodies, a peer's payload metadata)
// with bounds checked before nlohmann::json allocates or recurses.
//
// Why: nlohmann::json's parser is iterative, but copying, comparing and dump() of a value recurse
// once per nesting level, so a document of ~100,000 '[' overflows the stack of whoever touches it
// later (docs/security.md, "Poison messages"). ScanJson walks the text once, without recursion or
// allocation, and refuses it when it is larger or deeper than the limits; only then is it parsed.
#pragma once

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace bud {

struct JsonLimits {
  size_t max_bytes = 1 << 20;  // 1 MiB: an SBD or message.json is a few KiB
  int max_depth = 64;          // arrays and objects nested; an SBD needs about 8
};

// Checks size and nesting depth of `text` without parsing it (strings and escapes are skipped,
// so brackets inside strings do not count). kInvalidArgument names `what` and the bound.
Status ScanJson(std::string_view text, std::string_view what, const JsonLimits& limits = {});

// ScanJson, then parse. Every failure is kInvalidArgument with `what` in the message; never throws.
Result<nlohmann::json> ParseJson(std::string_view text, std::string_view what,
                                 const JsonLimits& limits = {});

}  // namespace bud
