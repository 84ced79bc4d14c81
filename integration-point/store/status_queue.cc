// The status queue. See status_queue.h and docs/storage.md.
#include "integration-point/store/status_queue.h"

#include <fmt/format.h>

#include "integration-point/store/internal.h"

namespace bud::ip {

using namespace store_internal;

Result<std::optional<StatusItem>> StatusQueue::Peek() {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare(
          "SELECT h.id, h.at_ms, h.status, h.reason, coalesce(m.conversation_id, ''), "
          "h.message_id, h.direction, h.raw_receipt, coalesce(m.rowid, 0) FROM status_queue q "
          "JOIN history h ON h.id=q.history_id "
          "LEFT JOIN messages m ON m.message_id=h.message_id AND m.direction=h.direction "
          "WHERE coalesce(m.deleted_ms, 0)=0 ORDER BY q.history_id LIMIT 1"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  std::optional<StatusItem> out;
  if (row) {
    out = StatusItem{st->Int(0),
                     st->Int(1),
                     st->Text(2),
                     st->Text(3),
                     st->Text(4),
                     st->Text(5),
                     StoredDirection(st->Text(6)),
                     st->Text(7),
                     st->Int(8)};
  }
  st->Reset();
  return out;
}

Status StatusQueue::Remove(int64_t id) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare("DELETE FROM status_queue WHERE history_id=?"));
  BUD_RETURN_IF_ERROR(st->Bind(1, id).Run());
  if (st->Changes() == 0) {
    return Status(Code::kNotFound, fmt::format("status {} is not on the status queue", id));
  }
  return Status::Ok();
}

Result<int64_t> StatusQueue::Size() {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare("SELECT count(*) FROM status_queue"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  const int64_t n = row ? st->Int(0) : 0;
  st->Reset();
  return n;
}

Result<int64_t> StatusQueue::DeleteConversations(int64_t id, const std::string& message_id,
                                                 int64_t now_ms) {
  // Which conversations: by rowid, or by message id in both directions; not those hidden before.
  constexpr const char* kWhich =
      "m.deleted_ms=0 AND ((?1<>0 AND m.rowid=?1) OR (?1=0 AND ?2<>'' AND m.message_id=?2))";
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(
      auto* unqueue,
      db_.conn().Prepare(fmt::format(
          "DELETE FROM status_queue WHERE history_id IN (SELECT h.id FROM history h JOIN messages "
          "m ON m.message_id=h.message_id AND m.direction=h.direction WHERE {})",
          kWhich)));
  BUD_RETURN_IF_ERROR(unqueue->BindAll(id, message_id).Run());
  BUD_ASSIGN_OR_RETURN(
      auto* hide,
      db_.conn().Prepare(fmt::format(
          "UPDATE messages SET deleted_ms=?3 WHERE rowid IN (SELECT m.rowid FROM messages m "
          "WHERE {})",
          kWhich)));
  BUD_RETURN_IF_ERROR(hide->BindAll(id, message_id, now_ms).Run());
  const int64_t hidden = hide->Changes();
  BUD_RETURN_IF_ERROR(tx.Commit());
  return hidden;
}

}  // namespace bud::ip
