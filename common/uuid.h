// UUIDs (version 4, lower case) for message and conversation ids.
#pragma once

#include <string>
#include <string_view>

namespace bud {

std::string NewUuid();
// 8-4-4-4-12 hex digits, either case.
bool IsUuid(std::string_view s);

}  // namespace bud
