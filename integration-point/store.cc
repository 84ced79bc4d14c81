// Integration point store. See store.h and docs/storage.md.
#include "integration-point/store.h"

#include <fmt/format.h>

#include "common/clock.h"

namespace bud::ip {

namespace {
const std::vector<std::string> kMigrations = {
    R"(CREATE TABLE messages (
         message_id TEXT NOT NULL,
         direction TEXT NOT NULL CHECK (direction IN ('OUT', 'IN')),
         conversation_id TEXT NOT NULL,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         process TEXT NOT NULL,
         document_type TEXT NOT NULL,
         title TEXT NOT NULL DEFAULT '',
         created_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL,
         status TEXT NOT NULL,
         state TEXT NOT NULL,
         payload BLOB,
         envelope BLOB,
         updated_ms INTEGER NOT NULL,
         PRIMARY KEY (message_id, direction)
       );
       CREATE INDEX messages_by_state ON messages(direction, state);
       CREATE INDEX messages_by_conversation ON messages(conversation_id);
       CREATE TABLE history (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         message_id TEXT NOT NULL,
         direction TEXT NOT NULL,
         status TEXT NOT NULL,
         reason TEXT NOT NULL DEFAULT '',
         at_ms INTEGER NOT NULL,
         advanced INTEGER NOT NULL
       );
       CREATE INDEX history_by_message ON history(message_id, direction, id);
       CREATE TABLE outbox_imports (
         folder_key TEXT PRIMARY KEY,
         message_id TEXT NOT NULL,
         at_ms INTEGER NOT NULL
       ) WITHOUT ROWID;
       CREATE TABLE pending_reports (
         message_id TEXT NOT NULL,
         status INTEGER NOT NULL,
         reason TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         PRIMARY KEY (message_id, status)
       ) WITHOUT ROWID;)",
};

constexpr const char* kColumns =
    "message_id, direction, conversation_id, sender, receiver, process, document_type, title, "
    "created_ms, expires_ms, status, state, payload, envelope";

MessageRow ReadRow(storage::Stmt& st) {
  MessageRow m;
  m.message_id = st.Text(0);
  m.direction = st.Text(1);
  m.conversation_id = st.Text(2);
  m.sender = st.Text(3);
  m.receiver = st.Text(4);
  m.process = st.Text(5);
  m.document_type = st.Text(6);
  m.title = st.Text(7);
  m.created_ms = st.Int(8);
  m.expires_ms = st.Int(9);
  m.status = st.Text(10);
  m.state = st.Text(11);
  m.payload = st.Blob(12);
  m.envelope = st.Blob(13);
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
}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::OpenStore(path, kMigrations));
  return std::unique_ptr<Store>(new Store(std::move(db)));
}

Status Store::ImportOutgoing(const MessageRow& m, const std::string& folder_key) {
  const int64_t now = NowMs();
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto* ins, db_->Prepare(
      "INSERT INTO messages(message_id, direction, conversation_id, sender, receiver, process, "
      "document_type, title, created_ms, expires_ms, status, state, payload, updated_ms) "
      "VALUES(?,'OUT',?,?,?,?,?,?,?,?,'OPPRETTET','new',?,?)"));
  ins->BindAll(m.message_id, m.conversation_id, m.sender, m.receiver, m.process, m.document_type,
               m.title, m.created_ms, m.expires_ms);
  ins->BindBlob(10, m.payload).Bind(11, now);
  BUD_RETURN_IF_ERROR(ins->Run());
  BUD_ASSIGN_OR_RETURN(auto* h, db_->Prepare(
      "INSERT INTO history(message_id, direction, status, reason, at_ms, advanced) "
      "VALUES(?,'OUT','OPPRETTET','',?,1)"));
  BUD_RETURN_IF_ERROR(h->BindAll(m.message_id, now).Run());
  BUD_ASSIGN_OR_RETURN(auto* imp, db_->Prepare(
      "INSERT OR REPLACE INTO outbox_imports(folder_key, message_id, at_ms) VALUES(?,?,?)"));
  BUD_RETURN_IF_ERROR(imp->BindAll(folder_key, m.message_id, now).Run());
  return tx.Commit();
}

Result<bool> Store::FolderImported(const std::string& folder_key) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare("SELECT 1 FROM outbox_imports WHERE folder_key=?"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Bind(1, folder_key).Step());
  st->Reset();
  return row;
}

Result<bool> Store::HasMessage(const std::string& message_id, const std::string& direction) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "SELECT 1 FROM messages WHERE message_id=? AND direction=?"));
  BUD_ASSIGN_OR_RETURN(bool row, st->BindAll(message_id, direction).Step());
  st->Reset();
  return row;
}

Result<std::vector<MessageRow>> Store::OutgoingInState(const std::string& state, int limit) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(fmt::format(
      "SELECT {} FROM messages WHERE direction='OUT' AND state=? ORDER BY created_ms LIMIT ?",
      kColumns)));
  st->BindAll(state, limit);
  return ReadRows(*st);
}

Status Store::MarkSealed(const std::string& message_id, const std::string& envelope) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "UPDATE messages SET state='sealed', envelope=?, payload=NULL, updated_ms=? "
      "WHERE message_id=? AND direction='OUT' AND state='new'"));
  st->BindBlob(1, envelope).Bind(2, NowMs()).Bind(3, message_id);
  return st->Run();
}

Result<bool> Store::ApplyStatus(const std::string& message_id, const std::string& direction,
                                MsgStatus status, const std::string& reason, int64_t at_ms,
                                std::optional<std::string> new_state) {
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(bool advanced,
                       ApplyStatusInTx(message_id, direction, status, reason, at_ms, new_state));
  BUD_RETURN_IF_ERROR(tx.Commit());
  return advanced;
}

Result<bool> Store::ApplyStatusInTx(const std::string& message_id, const std::string& direction,
                                    MsgStatus status, const std::string& reason, int64_t at_ms,
                                    const std::optional<std::string>& new_state) {
  BUD_ASSIGN_OR_RETURN(auto* q, db_->Prepare(
      "SELECT status FROM messages WHERE message_id=? AND direction=?"));
  BUD_ASSIGN_OR_RETURN(bool row, q->BindAll(message_id, direction).Step());
  if (!row) {
    return Status(Code::kNotFound, fmt::format("no {} message {}", direction, message_id));
  }
  auto current = StatusFromName(q->Text(0)).value_or(wire::STATUS_UNSPECIFIED);
  q->Reset();
  // Repeats are ignored entirely: one history line per status.
  BUD_ASSIGN_OR_RETURN(auto* dup, db_->Prepare(
      "SELECT 1 FROM history WHERE message_id=? AND direction=? AND status=?"));
  BUD_ASSIGN_OR_RETURN(bool seen, dup->BindAll(message_id, direction, StatusName(status)).Step());
  dup->Reset();
  if (seen) return false;
  const bool advances = Advances(current, status);
  BUD_ASSIGN_OR_RETURN(auto* h, db_->Prepare(
      "INSERT INTO history(message_id, direction, status, reason, at_ms, advanced) "
      "VALUES(?,?,?,?,?,?)"));
  BUD_RETURN_IF_ERROR(h->BindAll(message_id, direction, StatusName(status), reason, at_ms,
                                 advances ? 1 : 0).Run());
  if (advances) {
    BUD_ASSIGN_OR_RETURN(auto* up, db_->Prepare(
        "UPDATE messages SET status=?, updated_ms=? WHERE message_id=? AND direction=?"));
    BUD_RETURN_IF_ERROR(up->BindAll(StatusName(status), NowMs(), message_id, direction).Run());
  }
  if (new_state || (advances && IsFinal(status))) {
    std::string state = new_state.value_or("done");
    BUD_ASSIGN_OR_RETURN(auto* up, db_->Prepare(
        "UPDATE messages SET state=?, "
        "payload=CASE WHEN ?='new' THEN payload END, "
        "envelope=CASE WHEN ?='sealed' THEN envelope END "
        "WHERE message_id=? AND direction=?"));
    BUD_RETURN_IF_ERROR(up->BindAll(state, state, state, message_id, direction).Run());
  }
  return advances;
}

Status Store::RecordIncoming(const MessageRow& m, MsgStatus status, const std::string& reason,
                             MsgStatus report, const std::string& report_reason, int64_t at_ms) {
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto* ins, db_->Prepare(
      "INSERT OR IGNORE INTO messages(message_id, direction, conversation_id, sender, receiver, "
      "process, document_type, title, created_ms, expires_ms, status, state, updated_ms) "
      "VALUES(?,'IN',?,?,?,?,?,?,?,?,'',?,?)"));
  ins->BindAll(m.message_id, m.conversation_id, m.sender, m.receiver, m.process, m.document_type,
               m.title, m.created_ms, m.expires_ms, std::string("done"), at_ms);
  BUD_RETURN_IF_ERROR(ins->Run());
  BUD_RETURN_IF_ERROR(
      ApplyStatusInTx(m.message_id, "IN", status, reason, at_ms, std::string("done")).status());
  BUD_ASSIGN_OR_RETURN(auto* rep, db_->Prepare(
      "INSERT OR IGNORE INTO pending_reports(message_id, status, reason, at_ms) VALUES(?,?,?,?)"));
  BUD_RETURN_IF_ERROR(
      rep->BindAll(m.message_id, static_cast<int64_t>(report), report_reason, at_ms).Run());
  return tx.Commit();
}

Status Store::AdvanceIncoming(const std::string& message_id, MsgStatus status, MsgStatus report,
                              int64_t at_ms) {
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(bool advanced,
                       ApplyStatusInTx(message_id, "IN", status, "", at_ms, std::nullopt));
  if (advanced) {
    BUD_ASSIGN_OR_RETURN(auto* rep, db_->Prepare(
        "INSERT OR IGNORE INTO pending_reports(message_id, status, reason, at_ms) "
        "VALUES(?,?,'',?)"));
    BUD_RETURN_IF_ERROR(rep->BindAll(message_id, static_cast<int64_t>(report), at_ms).Run());
  }
  return tx.Commit();
}

Result<std::vector<std::string>> Store::IncomingWithStatus(MsgStatus status, int limit) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "SELECT message_id FROM messages WHERE direction='IN' AND status=? LIMIT ?"));
  st->Bind(1, StatusName(status)).Bind(2, limit);
  std::vector<std::string> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(st->Text(0));
  }
  return out;
}

Result<std::optional<MessageRow>> Store::Get(const std::string& message_id,
                                             const std::string& direction) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(fmt::format(
      "SELECT {} FROM messages WHERE message_id=? AND direction=?", kColumns)));
  st->BindAll(message_id, direction);
  BUD_ASSIGN_OR_RETURN(auto rows, ReadRows(*st));
  if (rows.empty()) return std::optional<MessageRow>();
  return std::optional<MessageRow>(std::move(rows.front()));
}

Result<std::vector<PendingReport>> Store::PendingReports() {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "SELECT message_id, status, reason, at_ms FROM pending_reports ORDER BY at_ms LIMIT 1000"));
  std::vector<PendingReport> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->Text(0), static_cast<MsgStatus>(st->Int(1)), st->Text(2), st->Int(3)});
  }
  return out;
}

Status Store::ReportDone(const std::string& message_id, MsgStatus status) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "DELETE FROM pending_reports WHERE message_id=? AND status=?"));
  return st->Bind(1, message_id).Bind(2, static_cast<int64_t>(status)).Run();
}

Result<std::vector<MessageRow>> Store::List(const ListFilter& f) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(fmt::format(
      "SELECT {} FROM messages WHERE (?1='' OR message_id=?1) AND (?2='' OR conversation_id=?2) "
      "AND (?3='' OR direction=?3) AND (?4='' OR status=?4) AND updated_ms>=?5 "
      "ORDER BY created_ms, message_id",
      kColumns)));
  st->BindAll(f.message_id, f.conversation_id, f.direction, f.status, f.since_ms);
  return ReadRows(*st);
}

Result<std::vector<HistoryRow>> Store::History(const std::string& message_id,
                                               const std::string& direction) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "SELECT status, reason, at_ms, advanced FROM history WHERE message_id=? AND direction=? "
      "ORDER BY id"));
  st->BindAll(message_id, direction);
  std::vector<HistoryRow> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->Text(0), st->Text(1), st->Int(2), st->Int(3) != 0});
  }
  return out;
}

}  // namespace bud::ip
