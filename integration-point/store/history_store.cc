// The store's read side. See history_store.h and docs/storage.md.
#include "integration-point/store/history_store.h"

#include <fmt/format.h>

#include "common/clock.h"
#include "integration-point/store/internal.h"

namespace bud::ip {

using namespace store_internal;

namespace {
// A direction filter as the queries bind it: "" for both.
std::string DirectionText(const std::optional<Direction>& d) { return d ? Text(*d) : ""; }
}  // namespace

Result<std::optional<MessageRow>> HistoryStore::Get(const std::string& message_id,
                                                    Direction direction) {
  return GetRow(db_.conn(), message_id, direction);
}

Result<bool> HistoryStore::HasMessage(const std::string& message_id, Direction direction) {
  return HasRow(db_.conn(), message_id, direction);
}

Result<std::vector<HistoryRow>> HistoryStore::History(const std::string& message_id,
                                                      Direction direction) {
  return HistoryOf(db_.conn(), message_id, direction);
}

Result<std::vector<MessageRow>> HistoryStore::List(const ListFilter& f) {
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare(fmt::format(
                    "SELECT {} FROM messages WHERE (?1='' OR message_id=?1) AND (?2='' OR "
                    "conversation_id=?2) "
                    "AND (?3='' OR direction=?3) AND (?4='' OR status=?4) AND updated_ms>=?5 "
                    "ORDER BY created_ms, message_id",
                    kListColumns)));
  st->BindAll(f.message_id, f.conversation_id, DirectionText(f.direction), f.status, f.since_ms);
  return ReadRows(*st);
}

namespace {
// ORDER BY for `sort` over `columns` (API property -> column), then `fallback`.
Result<std::string> OrderBy(const std::vector<SortKey>& sort,
                            std::initializer_list<std::pair<const char*, const char*>> columns,
                            const std::string& fallback) {
  std::string out;
  for (const auto& key : sort) {
    const char* column = nullptr;
    for (const auto& [property, c] : columns) {
      if (key.property == property) column = c;
    }
    if (!column) {
      return Status(Code::kInvalidArgument,
                    fmt::format("no property '{}' to sort by", key.property.substr(0, 64)));
    }
    out += fmt::format("{} {}, ", column, key.ascending ? "ASC" : "DESC");
  }
  return out + fallback;
}
}  // namespace

Result<Paged<StatusItem>> HistoryStore::Statuses(const StatusQuery& q) {
  constexpr const char* kWhere =
      "FROM history h JOIN messages m ON m.message_id=h.message_id AND m.direction=h.direction "
      "WHERE (?1='' OR h.message_id=?1) AND (?2='' OR h.status=?2) AND (?3='' OR h.direction=?3) "
      "AND h.at_ms>=?4 AND (?5=0 OR h.at_ms<=?5) AND m.deleted_ms=0";
  Paged<StatusItem> out;
  BUD_ASSIGN_OR_RETURN(auto* count, db_.conn().Prepare(fmt::format("SELECT count(*) {}", kWhere)));
  count->BindAll(q.message_id, q.status, DirectionText(q.direction), q.from_ms, q.to_ms);
  BUD_ASSIGN_OR_RETURN(bool row, count->Step());
  out.total = row ? count->Int(0) : 0;
  count->Reset();
  BUD_ASSIGN_OR_RETURN(const std::string order, OrderBy(q.sort,
                                                        {{"id", "h.id"},
                                                         {"lastUpdate", "h.at_ms"},
                                                         {"status", "h.status"},
                                                         {"messageId", "h.message_id"},
                                                         {"conversationId", "m.conversation_id"}},
                                                        q.newest_first ? "h.id DESC" : "h.id ASC"));
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare(fmt::format(
          "SELECT h.id, h.at_ms, h.status, h.reason, m.conversation_id, h.message_id, h.direction, "
          "h.raw_receipt, m.rowid {} ORDER BY {} LIMIT ?6 OFFSET ?7",
          kWhere, order)));
  st->BindAll(q.message_id, q.status, DirectionText(q.direction), q.from_ms, q.to_ms, q.limit,
              q.offset);
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool more, st->Step());
    if (!more) break;
    out.items.push_back({st->Int(0), st->Int(1), st->Text(2), st->Text(3), st->Text(4), st->Text(5),
                         StoredDirection(st->Text(6)), st->Text(7), st->Int(8)});
  }
  return out;
}

Result<Paged<MessageRow>> HistoryStore::Conversations(const ConversationQuery& q) {
  // Finished as the state machine knows it (common/status_machine.h).
  std::string finals;
  for (int s = wire::MessageStatus_MIN; s <= wire::MessageStatus_MAX; ++s) {
    auto st = static_cast<MsgStatus>(s);
    if (wire::MessageStatus_IsValid(s) && IsFinished(st)) {
      finals += fmt::format("{}'{}'", finals.empty() ? "" : ",", StatusName(st));
    }
  }
  const std::string where = fmt::format(
      "FROM messages WHERE (?1=0 OR rowid=?1) AND (?2='' OR message_id=?2) "
      "AND (?3='' OR conversation_id=?3) AND (?4='' OR direction=?4) AND (?5='' OR status=?5) "
      "AND (?6='' OR sender=?6 OR receiver=?6) AND (?7='' OR process=?7) AND updated_ms>=?8 "
      "AND (?9=0 OR updated_ms<=?9) AND (?10=0 OR status NOT IN ({})) AND (?13='' OR sender=?13) "
      "AND (?14='' OR receiver=?14) AND (?15='' OR (CASE WHEN message_reference='' THEN "
      "conversation_id ELSE message_reference END)=?15) AND (?16 IS NULL OR title=?16){}",
      finals, q.include_deleted ? "" : " AND deleted_ms=0");
  auto bind = [&](storage::Stmt& st) {
    st.BindAll(q.id, q.message_id, q.conversation_id, DirectionText(q.direction), q.status, q.orgnr,
               q.process, q.from_ms, q.to_ms, q.unfinished_only ? 1 : 0);
    st.Bind(13, q.sender).Bind(14, q.receiver).Bind(15, q.message_reference);
    if (q.title) st.Bind(16, *q.title);
  };
  Paged<MessageRow> out;
  BUD_ASSIGN_OR_RETURN(auto* count, db_.conn().Prepare("SELECT count(*) " + where));
  bind(*count);
  BUD_ASSIGN_OR_RETURN(bool row, count->Step());
  out.total = row ? count->Int(0) : 0;
  count->Reset();
  BUD_ASSIGN_OR_RETURN(const std::string order, OrderBy(q.sort,
                                                        {{"id", "rowid"},
                                                         {"lastUpdate", "updated_ms"},
                                                         {"created", "created_ms"},
                                                         {"expiry", "expires_ms"},
                                                         {"messageId", "message_id"},
                                                         {"conversationId", "conversation_id"},
                                                         {"senderIdentifier", "sender"},
                                                         {"receiverIdentifier", "receiver"},
                                                         {"processIdentifier", "process"},
                                                         {"messageTitle", "title"},
                                                         {"messageReference", "message_reference"},
                                                         {"direction", "direction"},
                                                         {"status", "status"}},
                                                        "updated_ms DESC, rowid DESC"));
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare(fmt::format("SELECT {} {} ORDER BY {} LIMIT ?11 OFFSET ?12",
                                               kListColumns, where, order)));
  bind(*st);
  st->Bind(11, q.limit).Bind(12, q.offset);
  BUD_ASSIGN_OR_RETURN(out.items, ReadRows(*st));
  return out;
}

Result<std::vector<StatusCount>> HistoryStore::CountByStatus() {
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare(
                    "SELECT direction, status, count(*) FROM messages GROUP BY direction, status"));
  std::vector<StatusCount> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({StoredDirection(st->Text(0)), st->Text(1), st->Int(2)});
  }
  return out;
}

Result<OverviewCounts> HistoryStore::Overview(int64_t now_ms, int64_t day_start_ms, int hours) {
  OverviewCounts out;
  BUD_ASSIGN_OR_RETURN(out.total, CountByStatus());
  BUD_ASSIGN_OR_RETURN(auto* today,
                       db_.conn().Prepare("SELECT direction, status, count(*) FROM messages "
                                          "WHERE updated_ms>=?1 GROUP BY direction, status"));
  today->BindAll(day_start_ms);
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, today->Step());
    if (!row) break;
    out.today.push_back({StoredDirection(today->Text(0)), today->Text(1), today->Int(2)});
  }
  auto oldest = [&](const char* status, OldestWaiting& w) -> Status {
    BUD_ASSIGN_OR_RETURN(auto* st,
                         db_.conn().Prepare("SELECT message_id, receiver, created_ms FROM messages "
                                            "WHERE direction='OUT' AND status=?1 "
                                            "ORDER BY created_ms LIMIT 1"));
    st->BindAll(std::string(status));
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (row) w = {st->Text(0), st->Text(1), st->Int(2)};
    st->Reset();
    return Status::Ok();
  };
  BUD_RETURN_IF_ERROR(oldest("OPPRETTET", out.oldest_not_sent));
  BUD_RETURN_IF_ERROR(oldest("SENDT", out.oldest_not_received));
  constexpr int64_t kHour = 3'600'000;
  const int64_t last_hour = now_ms - now_ms % kHour;
  const int64_t first_hour = last_hour - (hours - 1) * kHour;
  for (int i = 0; i < hours; ++i) out.hourly.push_back({first_hour + i * kHour, 0, 0});
  BUD_ASSIGN_OR_RETURN(auto* hourly,
                       db_.conn().Prepare("SELECT direction, created_ms/3600000, count(*) FROM "
                                          "messages WHERE created_ms>=?1 GROUP BY 1, 2"));
  hourly->BindAll(first_hour);
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, hourly->Step());
    if (!row) break;
    const int64_t index = (hourly->Int(1) * kHour - first_hour) / kHour;
    if (index < 0 || index >= hours) continue;  // a clock set back: created in the "future"
    auto& h = out.hourly[static_cast<size_t>(index)];
    (StoredDirection(hourly->Text(0)) == Direction::kOut ? h.out : h.in) += hourly->Int(2);
  }
  return out;
}

Result<int64_t> HistoryStore::PendingReportCount() {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare("SELECT count(*) FROM pending_reports"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  int64_t n = row ? st->Int(0) : 0;
  st->Reset();
  return n;
}

Result<std::vector<QueueDepth>> HistoryStore::OutgoingQueue() {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare("SELECT receiver, count(*), min(created_ms) FROM messages "
                         "WHERE direction='OUT' AND state IN ('new', 'sealed') GROUP BY receiver"));
  std::vector<QueueDepth> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->Text(0), st->Int(1), st->Int(2)});
  }
  return out;
}

Result<std::optional<TransferRow>> HistoryStore::Transfer(const std::string& message_id,
                                                          Direction direction) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare(fmt::format(
                                     "SELECT {} FROM transfers WHERE message_id=? AND direction=?",
                                     kTransferColumns)));
  st->BindAll(message_id, std::string(Text(direction)));
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  std::optional<TransferRow> out;
  if (row) out = ReadTransfer(*st);
  st->Reset();
  return out;
}

Result<std::vector<TransferRow>> HistoryStore::TransfersWithoutMessage(const ListFilter& f) {
  std::vector<TransferRow> out;
  if (!f.status.empty()) return out;  // no status yet
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare(fmt::format(
          "SELECT {} FROM transfers t WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE "
          "m.message_id=t.message_id AND m.direction=t.direction) AND (?1='' OR message_id=?1) AND "
          "(?2='' OR conversation_id=?2) AND (?3='' OR direction=?3) AND updated_ms>=?4 "
          "ORDER BY created_ms, message_id",
          kTransferColumns)));
  st->BindAll(f.message_id, f.conversation_id, DirectionText(f.direction), f.since_ms);
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(ReadTransfer(*st));
  }
  return out;
}

Result<std::vector<std::pair<std::string, int64_t>>> HistoryStore::IncomingUpdates() {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare("SELECT message_id, updated_ms FROM messages WHERE direction='IN'"));
  std::vector<std::pair<std::string, int64_t>> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.emplace_back(st->Text(0), st->Int(1));
  }
  return out;
}

}  // namespace bud::ip
