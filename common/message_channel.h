// Message channels (eFormidling's `MessageChannel` scope, docs/protocol.md "Message channels"):
// one organisation may run several integration points, each configured with a channel name and
// taking only the traffic of its channel; a point without a channel takes the traffic of none.
// The name is what eFormidling allows: 1 to 25 of a-z, A-Z, 0-9, '-' and '_'.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace bud {

inline constexpr size_t kMaxChannelBytes = 25;

// True for a valid channel name (not for "": "no channel" is not a name).
bool IsChannelName(std::string_view name);

// Ok for "" (no channel) and for a valid name; kInvalidArgument naming `what` and the rule
// otherwise. The offending value is quoted only when it is printable and short.
Status CheckChannel(std::string_view channel, std::string_view what);

}  // namespace bud
