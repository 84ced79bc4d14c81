// Helpers shared by the store's role views. See internal.h.
#include "integration-point/store/internal.h"

#include <fmt/format.h>

#include "common/clock.h"

namespace bud::ip::store_internal {

Direction StoredDirection(const std::string& text) {
  // The column's CHECK allows only these two.
  return ParseDirection(text).value_or(Direction::kIn);
}

const char* const kTransferColumns =
    "message_id, direction, done_bytes, total_bytes, note, updated_ms, conversation_id, sender, "
    "receiver, process, document_type, created_ms, expires_ms";

const char* const kColumns =
    "message_id, direction, conversation_id, sender, receiver, process, document_type, title, "
    "created_ms, expires_ms, status, state, payload, envelope, rowid, updated_ms, lock_until_ms, "
    "files, message_reference, sender_channel";
const char* const kListColumns =
    "message_id, direction, conversation_id, sender, receiver, process, document_type, title, "
    "created_ms, expires_ms, status, state, NULL, NULL, rowid, updated_ms, lock_until_ms, files, "
    "message_reference, sender_channel";

TransferRow ReadTransfer(storage::Stmt& st) {
  TransferRow t;
  t.message.message_id = st.Text(0);
  t.message.direction = StoredDirection(st.Text(1));
  t.done_bytes = st.Int(2);
  t.total_bytes = st.Int(3);
  t.note = st.Text(4);
  t.updated_ms = st.Int(5);
  t.message.conversation_id = st.Text(6);
  t.message.sender = st.Text(7);
  t.message.receiver = st.Text(8);
  t.message.process = st.Text(9);
  t.message.document_type = st.Text(10);
  t.message.created_ms = st.Int(11);
  t.message.expires_ms = st.Int(12);
  return t;
}

MessageRow ReadRow(storage::Stmt& st) {
  MessageRow m;
  m.message_id = st.Text(0);
  m.direction = StoredDirection(st.Text(1));
  m.conversation_id = st.Text(2);
  m.sender = st.Text(3);
  m.receiver = st.Text(4);
  m.process = st.Text(5);
  m.document_type = st.Text(6);
  m.title = st.Text(7);
  m.created_ms = st.Int(8);
  m.expires_ms = st.Int(9);
  m.status = st.Text(10);
  m.state = ParseWorkState(st.Text(11)).value_or(WorkState::kDone);
  m.payload = st.Blob(12);
  m.envelope = st.Blob(13);
  m.id = st.Int(14);
  m.updated_ms = st.Int(15);
  m.lock_until_ms = st.Int(16);
  m.files = st.Text(17);
  m.message_reference = st.Text(18);
  m.sender_channel = st.Text(19);
  return m;
}

Result<std::vector<MessageRow>> ReadRows(storage::Stmt& st) {
  std::vector<MessageRow> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadRow(st));
  }
  return out;
}

Result<std::optional<MessageRow>> GetRow(storage::Db& db, const std::string& message_id,
                                         Direction direction) {
  BUD_ASSIGN_OR_RETURN(
      auto* st, db.Prepare(fmt::format("SELECT {} FROM messages WHERE message_id=? AND direction=?",
                                       kColumns)));
  st->BindAll(message_id, std::string(Text(direction)));
  BUD_ASSIGN_OR_RETURN(auto rows, ReadRows(*st));
  if (rows.empty()) return std::optional<MessageRow>();
  return std::optional<MessageRow>(std::move(rows.front()));
}

Result<std::vector<HistoryRow>> HistoryOf(storage::Db& db, const std::string& message_id,
                                          Direction direction) {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db.Prepare("SELECT status, reason, at_ms, advanced, id FROM history WHERE message_id=? AND "
                 "direction=? "
                 "ORDER BY id"));
  st->BindAll(message_id, std::string(Text(direction)));
  std::vector<HistoryRow> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->Text(0), st->Text(1), st->Int(2), st->Int(3) != 0, st->Int(4)});
  }
  return out;
}

Result<bool> HasRow(storage::Db& db, const std::string& message_id, Direction direction) {
  BUD_ASSIGN_OR_RETURN(auto* st,
                       db.Prepare("SELECT 1 FROM messages WHERE message_id=? AND direction=?"));
  BUD_ASSIGN_OR_RETURN(bool row, st->BindAll(message_id, std::string(Text(direction))).Step());
  st->Reset();
  return row;
}

Result<bool> ApplyStatusInTx(storage::Db& db, const std::string& message_id, Direction direction,
                             MsgStatus status, const std::string& reason, int64_t at_ms,
                             std::optional<WorkState> new_state, const std::string& raw_receipt) {
  const std::string dir(Text(direction));
  const std::string name(StatusName(status));
  // The current status, and whether this status is in the history already (repeats are ignored
  // entirely: one history line per status).
  BUD_ASSIGN_OR_RETURN(
      auto* q, db.Prepare("SELECT status, EXISTS(SELECT 1 FROM history WHERE message_id=?1 AND "
                          "direction=?2 AND status=?3) FROM messages WHERE message_id=?1 AND "
                          "direction=?2"));
  BUD_ASSIGN_OR_RETURN(bool row, q->BindAll(message_id, dir, name).Step());
  if (!row) {
    return Status(Code::kNotFound, fmt::format("no {} message {}", Text(direction), message_id));
  }
  const auto current = StatusFromName(q->Text(0)).value_or(wire::STATUS_UNSPECIFIED);
  const bool seen = q->Int(1) != 0;
  q->Reset();
  if (seen) return false;
  const bool advances = Advances(current, status);
  BUD_ASSIGN_OR_RETURN(
      auto* h,
      db.Prepare("INSERT INTO history(message_id, direction, status, reason, at_ms, advanced, "
                 "raw_receipt) SELECT message_id, direction, ?, ?, ?, ?, ? FROM messages "
                 "WHERE message_id=? AND direction=?"));
  // The message's id as stored (the client's spelling), whatever case the caller gave.
  BUD_RETURN_IF_ERROR(
      h->BindAll(name, reason, at_ms, advances ? 1 : 0, raw_receipt, message_id, dir).Run());
  const bool state_changes = new_state || (advances && IsFinal(status));
  if (!advances && !state_changes) return advances;
  if (!state_changes) {
    BUD_ASSIGN_OR_RETURN(
        auto* up,
        db.Prepare(
            "UPDATE messages SET status=?, updated_ms=? WHERE message_id=? AND direction=?"));
    BUD_RETURN_IF_ERROR(up->BindAll(name, NowMs(), message_id, dir).Run());
    return advances;
  }
  // The status and the work state in one UPDATE: each UPDATE rewrites the whole row, envelope
  // included.
  const std::string state = Text(new_state.value_or(WorkState::kDone));
  BUD_ASSIGN_OR_RETURN(
      auto* up, db.Prepare("UPDATE messages SET status=CASE WHEN ?1 THEN ?2 ELSE status END, "
                           "updated_ms=CASE WHEN ?1 THEN ?3 ELSE updated_ms END, state=?4, "
                           "payload=CASE WHEN ?4 IN ('new', 'api') THEN payload END, "
                           "envelope=CASE WHEN ?4='sealed' THEN envelope END "
                           "WHERE message_id=?5 AND direction=?6"));
  BUD_RETURN_IF_ERROR(up->BindAll(advances ? 1 : 0, name, NowMs(), state, message_id, dir).Run());
  return advances;
}

Status QueueReport(storage::Db& db, const std::string& message_id, MsgStatus report,
                   const std::string& reason, int64_t at_ms) {
  BUD_ASSIGN_OR_RETURN(auto* rep, db.Prepare("INSERT OR IGNORE INTO pending_reports(message_id, "
                                             "status, reason, at_ms) VALUES(?,?,?,?)"));
  return rep->BindAll(message_id, static_cast<int64_t>(report), reason, at_ms).Run();
}

Status StartTransferRow(storage::Db& db, const MessageRow& m, Direction direction,
                        int64_t done_bytes, int64_t total_bytes) {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db.Prepare(
          "INSERT INTO transfers(message_id, direction, done_bytes, total_bytes, note, updated_ms, "
          "conversation_id, sender, receiver, process, document_type, created_ms, expires_ms) "
          "VALUES(?,?,?,?,'',?,?,?,?,?,?,?,?) ON CONFLICT(message_id, direction) DO UPDATE SET "
          "done_bytes=excluded.done_bytes, total_bytes=excluded.total_bytes, note='', "
          "updated_ms=excluded.updated_ms"));
  return st
      ->BindAll(m.message_id, std::string(Text(direction)), done_bytes, total_bytes, NowMs(),
                m.conversation_id, m.sender, m.receiver, m.process, m.document_type, m.created_ms,
                m.expires_ms)
      .Run();
}

Status UpdateTransfer(storage::Db& db, const std::string& message_id, Direction direction,
                      std::optional<int64_t> done_bytes, std::optional<std::string> note) {
  // done_bytes < 0: all of it.
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db.Prepare(
          "UPDATE transfers SET done_bytes=CASE WHEN ?1 IS NULL THEN done_bytes WHEN ?1 < 0 THEN "
          "total_bytes ELSE ?1 END, note=coalesce(?2, note), updated_ms=?3 "
          "WHERE message_id=?4 AND direction=?5"));
  if (done_bytes) {
    st->Bind(1, *done_bytes);
  } else {
    st->BindNull(1);
  }
  if (note) {
    st->Bind(2, *note);
  } else {
    st->BindNull(2);
  }
  return st->Bind(3, NowMs()).Bind(4, message_id).Bind(5, std::string(Text(direction))).Run();
}

}  // namespace bud::ip::store_internal
