// Rendering the status listing. See status_view.h.
#include "integration-point/status_view.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/log.h"

namespace bud::ip {

namespace {

std::string Mib(int64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

int Percent(const TransferRow& t) {
  if (t.total_bytes <= 0) return 100;
  return static_cast<int>(100 * std::min(t.done_bytes, t.total_bytes) / t.total_bytes);
}

// The fields every entry has, from the message's header.
nlohmann::json EntryJson(const MessageRow& m) {
  return {{"messageId", m.message_id},
          {"conversationId", m.conversation_id},
          {"direction", m.direction == Direction::kOut ? "OUTGOING" : "INCOMING"},
          {"sender", m.sender},
          {"receiver", m.receiver},
          {"process", m.process},
          {"documentType", m.document_type},
          {"title", m.title},
          {"created", FormatTime(m.created_ms)},
          {"expires", FormatTime(m.expires_ms)}};
}

}  // namespace

std::string TransferLine(const TransferRow& t) {
  std::string line = fmt::format("{} {} of {} ({}%)",
                                 t.message.direction == Direction::kOut ? "sent" : "received",
                                 Mib(t.done_bytes), Mib(t.total_bytes), Percent(t));
  if (!t.note.empty()) line += "; " + t.note;
  return line;
}

nlohmann::json TransferJson(const TransferRow& t) {
  nlohmann::json j = {{"bytes", t.done_bytes},
                      {"totalBytes", t.total_bytes},
                      {"percent", Percent(t)},
                      {"complete", t.done_bytes >= t.total_bytes},
                      {"lastUpdate", FormatTime(t.updated_ms)}};
  if (!t.note.empty()) j["note"] = t.note;
  return j;
}

Result<std::string> RenderStatus(HistoryStore& store, const ListFilter& filter, bool json) {
  BUD_ASSIGN_OR_RETURN(auto rows, store.List(filter));
  // Incoming streamed messages still arriving have a transfer but no message row yet.
  BUD_ASSIGN_OR_RETURN(auto arriving, store.TransfersWithoutMessage(filter));
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
      nlohmann::json entry = EntryJson(m);
      entry["status"] = m.status;
      entry["history"] = std::move(h);
      BUD_ASSIGN_OR_RETURN(auto transfer, store.Transfer(m.message_id, m.direction));
      if (transfer) entry["transfer"] = TransferJson(*transfer);
      arr.push_back(std::move(entry));
    }
    for (const auto& t : arriving) {
      nlohmann::json entry = EntryJson(t.message);  // no status or history yet
      entry["status"] = nullptr;
      entry["history"] = nlohmann::json::array();
      entry["transfer"] = TransferJson(t);
      arr.push_back(std::move(entry));
    }
    // JSON escapes control characters itself; invalid UTF-8 becomes U+FFFD instead of throwing.
    return arr.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  // The table goes to a terminal: every field that came from outside (ids and parties of a
  // refused envelope, FEIL reasons, transfer notes) through Printable, so an escape sequence
  // in a peer's text is shown, not obeyed.
  const auto p = [](std::string_view text) { return Printable(text); };
  std::string out;
  for (const auto& m : rows) {
    out += fmt::format("{:<3} {}  {} -> {}  {}  conversation {}\n", Text(m.direction),
                       p(m.message_id), p(m.sender), p(m.receiver), p(m.status),
                       p(m.conversation_id));
    BUD_ASSIGN_OR_RETURN(auto transfer, store.Transfer(m.message_id, m.direction));
    if (transfer) out += "    " + p(TransferLine(*transfer)) + "\n";
    BUD_ASSIGN_OR_RETURN(auto hist, store.History(m.message_id, m.direction));
    for (const auto& e : hist) {
      out += fmt::format("    {}  {:<20}{}{}\n", FormatTime(e.at_ms), p(e.status),
                         e.reason.empty() ? "" : "  " + p(e.reason),
                         e.current ? "" : "  (late; current status unchanged)");
    }
  }
  for (const auto& t : arriving) {
    out += fmt::format("{:<3} {}  {} -> {}  (arriving)  conversation {}\n    {}\n",
                       Text(t.message.direction), p(t.message.message_id),
                       p(t.message.sender), p(t.message.receiver), p(t.message.conversation_id),
                       p(TransferLine(t)));
  }
  out += fmt::format("{} message(s)\n", rows.size() + arriving.size());
  return out;
}

}  // namespace bud::ip
