// Message channel names. See message_channel.h.
#include "common/message_channel.h"

#include <fmt/format.h>

namespace bud {

bool IsChannelName(std::string_view name) {
  if (name.empty() || name.size() > kMaxChannelBytes) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

Status CheckChannel(std::string_view channel, std::string_view what) {
  if (channel.empty() || IsChannelName(channel)) return Status::Ok();
  bool printable = channel.size() <= 64;
  for (char c : channel) printable = printable && c >= 0x20 && c < 0x7f;
  return Status(Code::kInvalidArgument,
                fmt::format("{} {} is not a message channel name (1 to {} of a-z, A-Z, 0-9, '-' "
                            "and '_')",
                            what, printable ? fmt::format("'{}'", channel) : "(unprintable)",
                            kMaxChannelBytes));
}

}  // namespace bud
