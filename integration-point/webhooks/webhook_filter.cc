// Webhook filters. See webhook_filter.h.
#include "integration-point/webhooks/webhook_filter.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "integration-point/api/json_shapes.h"
#include "integration-point/webhooks/webhook_events.h"

namespace bud::ip::webhooks {

namespace {
std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t at = 0;
  for (;;) {
    size_t next = s.find(sep, at);
    out.push_back(s.substr(at, next == std::string::npos ? std::string::npos : next - at));
    if (next == std::string::npos) break;
    at = next + 1;
  }
  return out;
}

bool EqualsIgnoreCase(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool IsWordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
}  // namespace

Result<std::vector<FilterPart>> ParseFilter(const std::string& filter) {
  std::vector<std::string> pieces = Split(filter, '&');
  // As Java's String.split: trailing empty pieces are dropped.
  while (!pieces.empty() && pieces.back().empty()) pieces.pop_back();
  std::vector<FilterPart> parts;
  for (const auto& piece : pieces) {
    size_t name_end = 0;
    while (name_end < piece.size() && IsWordChar(piece[name_end])) ++name_end;
    if (name_end == 0 || name_end + 1 >= piece.size() || piece[name_end] != '=') {
      return Status(Code::kInvalidArgument,
                    fmt::format("the filter part \"{}\" is not name=value", piece));
    }
    FilterPart p{piece.substr(0, name_end), Split(piece.substr(name_end + 1), ',')};
    if (p.name != "status" && p.name != "serviceIdentifier" && p.name != "direction") {
      return Status(Code::kInvalidArgument,
                    fmt::format("unknown filter \"{}\" (there are status, serviceIdentifier and "
                                "direction)",
                                p.name));
    }
    parts.push_back(std::move(p));
  }
  return parts;
}

bool Matches(const std::vector<FilterPart>& parts, const StatusEventRow& e) {
  for (const auto& p : parts) {
    std::string actual;
    if (p.name == "status") {
      actual = e.status;
    } else if (p.name == "serviceIdentifier") {
      actual = kServiceIdentifier;
    } else {
      actual = api::DirectionName(e.direction);
    }
    if (std::none_of(p.values.begin(), p.values.end(),
                     [&](const std::string& v) { return EqualsIgnoreCase(v, actual); })) {
      return false;
    }
  }
  return true;
}

}  // namespace bud::ip::webhooks
