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

// The table's words in each language.
struct Words {
  const char* header;  // column heads of the message lines
  const char* sent;
  const char* received;
  const char* of;
  const char* conversation;
  const char* late;
  const char* arriving;
  const char* messages;  // "{} message(s)"
  const char* refusals_header;
  const char* refused_count;  // "{} refused"
  const char* resolved;       // "resolved {} as {}"
  const char* dismissed;      // "dismissed {}"
  const char* no_refusals;
  const char* how_to_fix;
};

const Words kEnglish = {
    "DIR ID  SENDER -> RECEIVER  STATUS  CONVERSATION\n    TIME (local)               STATUS",
    "sent",
    "received",
    "of",
    "conversation",
    "(late; current status unchanged)",
    "(arriving)",
    "{} message(s)\n",
    "NO.  REFUSED (local time)       CLASS       NAME  ->  WHERE NOW\n    REASON",
    "{} refused, not sent\n",
    "resolved {}: taken in as message {}",
    "dismissed {}",
    "no refused folders or requests\n",
    "Fix each folder in .failed/ as its reason says and move it back into the outbox; an API "
    "request is resolved when its message id is sent again and taken in. `--dismiss NO.` "
    "takes one off the list.\n",
};
const Words kNorwegian = {
    "RETN ID  AVSENDER -> MOTTAKER  STATUS  SAMTALE\n    TID (lokal)                STATUS",
    "sendt",
    "mottatt",
    "av",
    "samtale",
    "(for sent; gjeldende status uendret)",
    "(på vei inn)",
    "{} melding(er)\n",
    "NR.  AVVIST (lokal tid)         KLASSE      NAVN  ->  LIGGER NÅ\n    ÅRSAK",
    "{} avvist, ikke sendt\n",
    "løst {}: tatt inn som melding {}",
    "avskrevet {}",
    "ingen avviste mapper eller forespørsler\n",
    "Rett hver mappe i .failed/ slik årsaken sier, og flytt den tilbake til utboksen; en "
    "API-forespørsel er løst når meldings-ID-en sendes på nytt og tas inn. `--dismiss NR.` "
    "tar en av lista.\n",
};
const Words& WordsFor(Lang lang) { return lang == Lang::kNb ? kNorwegian : kEnglish; }

}  // namespace

std::string TransferLine(const TransferRow& t, Lang lang) {
  const Words& w = WordsFor(lang);
  std::string line =
      fmt::format("{} {} {} {} ({}%)", t.message.direction == Direction::kOut ? w.sent : w.received,
                  Mib(t.done_bytes), w.of, Mib(t.total_bytes), Percent(t));
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

Result<std::string> RenderStatus(HistoryStore& store, const ListFilter& filter, bool json,
                                 Lang lang) {
  const Words& w = WordsFor(lang);
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
  if (!rows.empty() || !arriving.empty()) out += std::string(w.header) + "\n";
  for (const auto& m : rows) {
    out +=
        fmt::format("{:<3} {}  {} -> {}  {}  {} {}\n", Text(m.direction), p(m.message_id),
                    p(m.sender), p(m.receiver), p(m.status), w.conversation, p(m.conversation_id));
    BUD_ASSIGN_OR_RETURN(auto transfer, store.Transfer(m.message_id, m.direction));
    if (transfer) out += "    " + p(TransferLine(*transfer, lang)) + "\n";
    BUD_ASSIGN_OR_RETURN(auto hist, store.History(m.message_id, m.direction));
    for (const auto& e : hist) {
      out += fmt::format("    {}  {:<20}{}{}\n", FormatLocalTime(e.at_ms), p(e.status),
                         e.reason.empty() ? "" : "  " + p(e.reason),
                         e.current ? "" : std::string("  ") + w.late);
    }
  }
  for (const auto& t : arriving) {
    out +=
        fmt::format("{:<3} {}  {} -> {}  {}  {} {}\n    {}\n", Text(t.message.direction),
                    p(t.message.message_id), p(t.message.sender), p(t.message.receiver), w.arriving,
                    w.conversation, p(t.message.conversation_id), p(TransferLine(t, lang)));
  }
  out += fmt::format(fmt::runtime(w.messages), rows.size() + arriving.size());
  return out;
}

nlohmann::json RefusalJson(const RefusalRow& r) {
  nlohmann::json j = {{"id", r.id},
                      {"source", r.source},
                      {"name", r.name},
                      {"movedTo", r.moved_to},
                      {"messageId", r.message_id},
                      {"reason", r.reason},
                      {"class", Text(r.reason_class)},
                      {"refused", FormatTime(r.refused_ms)}};
  if (r.resolved_ms != 0) {
    j["resolved"] = FormatTime(r.resolved_ms);
    j["resolvedMessageId"] = r.resolved_message_id;
  }
  return j;
}

Result<std::string> RenderRefusals(RefusalStore& store, bool include_resolved, bool json,
                                   Lang lang) {
  constexpr int kLimit = 1000;
  BUD_ASSIGN_OR_RETURN(auto rows, store.List(include_resolved, kLimit));
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : rows) arr.push_back(RefusalJson(r));
    return arr.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  const Words& w = WordsFor(lang);
  const auto p = [](std::string_view text) { return Printable(text); };
  if (rows.empty()) return std::string(w.no_refusals);
  std::string out = std::string(w.refusals_header) + "\n";
  size_t open = 0;
  for (const auto& r : rows) {
    if (r.resolved_ms == 0) ++open;
    std::string name = p(r.name);
    if (!r.message_id.empty()) name += " (" + p(r.message_id) + ")";
    out += fmt::format("{:<4} {}  {:<10}  {}  ->  {}\n    {}\n", r.id,
                       FormatLocalTime(r.refused_ms), Text(r.reason_class), name,
                       p(r.moved_to.empty() ? "-" : r.moved_to), p(r.reason));
    if (r.resolved_ms != 0 && r.resolved_message_id.empty()) {
      out += "    " + fmt::format(fmt::runtime(w.dismissed), FormatLocalTime(r.resolved_ms)) + "\n";
    } else if (r.resolved_ms != 0) {
      out += "    " +
             fmt::format(fmt::runtime(w.resolved), FormatLocalTime(r.resolved_ms),
                         p(r.resolved_message_id)) +
             "\n";
    }
  }
  out += fmt::format(fmt::runtime(w.refused_count), open);
  if (open > 0) out += w.how_to_fix;
  return out;
}

}  // namespace bud::ip
