// Rendering the status listing. See status_view.h.
#include "integration-point/status_view.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "common/clock.h"

namespace bud::ip {

Result<std::string> RenderStatus(Store& store, const ListFilter& filter, bool json) {
  BUD_ASSIGN_OR_RETURN(auto rows, store.List(filter));
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& m : rows) {
      BUD_ASSIGN_OR_RETURN(auto hist, store.History(m.message_id, m.direction));
      nlohmann::json h = nlohmann::json::array();
      for (const auto& e : hist) {
        h.push_back({{"status", e.status},
                     {"description", e.reason},
                     {"lastUpdate", FormatTime(e.at_ms)},
                     {"current", e.current}});
      }
      arr.push_back({{"messageId", m.message_id},
                     {"conversationId", m.conversation_id},
                     {"direction", m.direction == "OUT" ? "OUTGOING" : "INCOMING"},
                     {"sender", m.sender},
                     {"receiver", m.receiver},
                     {"process", m.process},
                     {"documentType", m.document_type},
                     {"title", m.title},
                     {"created", FormatTime(m.created_ms)},
                     {"expires", FormatTime(m.expires_ms)},
                     {"status", m.status},
                     {"history", h}});
    }
    return arr.dump(2) + "\n";
  }
  std::string out;
  for (const auto& m : rows) {
    out += fmt::format("{} {}  {} -> {}  {}  conversation {}\n", m.direction == "OUT" ? "OUT" : "IN ",
                       m.message_id, m.sender, m.receiver, m.status, m.conversation_id);
    BUD_ASSIGN_OR_RETURN(auto hist, store.History(m.message_id, m.direction));
    for (const auto& e : hist) {
      out += fmt::format("    {}  {:<20}{}{}\n", FormatTime(e.at_ms), e.status,
                         e.reason.empty() ? "" : "  " + e.reason,
                         e.current ? "" : "  (late; current status unchanged)");
    }
  }
  out += fmt::format("{} message(s)\n", rows.size());
  return out;
}

}  // namespace bud::ip
