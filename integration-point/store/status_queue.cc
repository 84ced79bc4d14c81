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
          "ORDER BY q.history_id LIMIT 1"));
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

}  // namespace bud::ip
