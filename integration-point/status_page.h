// The status page served at "/": one self-contained HTML page that reads /api/conversations and
// shows every message with its status history; filters by status, direction, organisation and
// time (also taken from the page's own query string, e.g. /?status=FEIL); refreshes itself.
#pragma once

#include <string_view>

namespace bud::ip {

extern const std::string_view kStatusPageHtml;

}  // namespace bud::ip
