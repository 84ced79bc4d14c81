// Bounded JSON parsing. See json.h.
#include "common/json.h"

#include <fmt/format.h>

namespace bud {

Status ScanJson(std::string_view text, std::string_view what, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return Status(Code::kInvalidArgument,
                  fmt::format("{} is {} bytes, more than the {} allowed", what, text.size(),
                              limits.max_bytes));
  }
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > limits.max_depth) {
          return Status(Code::kInvalidArgument,
                        fmt::format("{} nests arrays and objects more than {} deep", what,
                                    limits.max_depth));
        }
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;  // unbalanced text is the parser's to refuse
        break;
      default: break;
    }
  }
  return Status::Ok();
}

Result<nlohmann::json> ParseJson(std::string_view text, std::string_view what,
                                 const JsonLimits& limits) {
  BUD_RETURN_IF_ERROR(ScanJson(text, what, limits));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for 1e400
    return Status(Code::kInvalidArgument, fmt::format("{} is not valid JSON: {}", what, e.what()));
  }
}

}  // namespace bud
