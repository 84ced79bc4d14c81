// Integration point store. See store.h and docs/storage.md.
#include "integration-point/store.h"

#include <fmt/format.h>

#include <chrono>

#include "common/clock.h"
#include "common/log.h"

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
    // v2: the HTTP API. Incoming messages kept for peek/pop/delete (state 'api', payload kept,
    // lock_until_ms set by a peek), drafts of the large-message flow, time index for /statuses.
    R"(ALTER TABLE messages ADD COLUMN lock_until_ms INTEGER NOT NULL DEFAULT 0;
       CREATE INDEX history_by_time ON history(at_ms);
       CREATE INDEX messages_by_updated ON messages(updated_ms);
       CREATE TABLE api_drafts (
         message_id TEXT PRIMARY KEY,
         sbd TEXT NOT NULL,
         created_ms INTEGER NOT NULL
       ) WITHOUT ROWID;
       CREATE TABLE api_draft_files (
         message_id TEXT NOT NULL,
         name TEXT NOT NULL,
         title TEXT NOT NULL,
         media_type TEXT NOT NULL,
         data BLOB NOT NULL,
         added_ms INTEGER NOT NULL,
         PRIMARY KEY (message_id, name)
       ) WITHOUT ROWID;)",
    // v3: progress of streamed transfers (docs/large-messages.md), for `bud-ip status`. The
    // header fields are here too because an incoming message has no `messages` row until it is
    // complete.
    R"(CREATE TABLE transfers (
         message_id TEXT NOT NULL,
         direction TEXT NOT NULL CHECK (direction IN ('OUT', 'IN')),
         done_bytes INTEGER NOT NULL,
         total_bytes INTEGER NOT NULL,
         note TEXT NOT NULL DEFAULT '',
         updated_ms INTEGER NOT NULL,
         conversation_id TEXT NOT NULL,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         process TEXT NOT NULL,
         document_type TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL,
         PRIMARY KEY (message_id, direction)
       ) WITHOUT ROWID;)",
    // v4: large files through the HTTP API. A draft's file is on disk (spool/drafts/<id>/<file>,
    // `data` empty) unless `file` is '' (drafts from before v4: the bytes are in `data`). An
    // incoming streamed message kept for the API has its attachments in api-in/<id>/, listed in
    // `files` (JSON: name, mediaType, size, crc32).
    R"(ALTER TABLE api_draft_files ADD COLUMN file TEXT NOT NULL DEFAULT '';
       ALTER TABLE api_draft_files ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
       UPDATE api_draft_files SET size=length(data);
       ALTER TABLE messages ADD COLUMN files TEXT NOT NULL DEFAULT '';)",
};

constexpr const char* kTransferColumns =
    "message_id, direction, done_bytes, total_bytes, note, updated_ms, conversation_id, sender, "
    "receiver, process, document_type, created_ms, expires_ms";

TransferRow ReadTransfer(storage::Stmt& st) {
  TransferRow t;
  t.message.message_id = st.Text(0);
  t.message.direction = st.Text(1);
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

constexpr const char* kColumns =
    "message_id, direction, conversation_id, sender, receiver, process, document_type, title, "
    "created_ms, expires_ms, status, state, payload, envelope, rowid, updated_ms, lock_until_ms, "
    "files";
// The same without the blobs, for listings.
constexpr const char* kListColumns =
    "message_id, direction, conversation_id, sender, receiver, process, document_type, title, "
    "created_ms, expires_ms, status, state, NULL, NULL, rowid, updated_ms, lock_until_ms, files";

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
  m.id = st.Int(14);
  m.updated_ms = st.Int(15);
  m.lock_until_ms = st.Int(16);
  m.files = st.Text(17);
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

constexpr int64_t kCheckpointPages = 4096;  // 16 MiB of WAL
constexpr int64_t kTruncateEveryMs = 60000;
}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::OpenStore(path, kMigrations));
  std::unique_ptr<Store> store(new Store(std::move(db)));
  // Checkpoints off the engine's turn (common/storage/checkpointer.h): a turn that crossed
  // SQLite's 1,000-page threshold copied the WAL into the database file before it could answer.
  BUD_ASSIGN_OR_RETURN(store->checkpointer_,
                       storage::Checkpointer::Attach(*store->db_, kCheckpointPages));
  return store;
}

Result<std::unique_ptr<Store>> Store::OpenReadOnly(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::OpenStoreReadOnly(
                                    path, static_cast<int>(kMigrations.size()), "bud-ip"));
  return std::unique_ptr<Store>(new Store(std::move(db)));
}

Status Store::ImportOutgoing(const MessageRow& m, const std::string& folder_key) {
  const int64_t now = NowMs();
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_RETURN_IF_ERROR(InsertOutgoingInTx(m, now));
  BUD_ASSIGN_OR_RETURN(auto* imp, db_->Prepare(
      "INSERT OR REPLACE INTO outbox_imports(folder_key, message_id, at_ms) VALUES(?,?,?)"));
  BUD_RETURN_IF_ERROR(imp->BindAll(folder_key, m.message_id, now).Run());
  return tx.Commit();
}

Status Store::CreateOutgoing(const MessageRow& m) {
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_RETURN_IF_ERROR(InsertOutgoingInTx(m, NowMs()));
  // A draft of the large-message flow ends where its message begins.
  BUD_ASSIGN_OR_RETURN(auto* d1, db_->Prepare("DELETE FROM api_draft_files WHERE message_id=?"));
  BUD_RETURN_IF_ERROR(d1->Bind(1, m.message_id).Run());
  BUD_ASSIGN_OR_RETURN(auto* d2, db_->Prepare("DELETE FROM api_drafts WHERE message_id=?"));
  BUD_RETURN_IF_ERROR(d2->Bind(1, m.message_id).Run());
  return tx.Commit();
}

Status Store::InsertOutgoingInTx(const MessageRow& m, int64_t now) {
  BUD_ASSIGN_OR_RETURN(auto* exists, db_->Prepare(
      "SELECT 1 FROM messages WHERE message_id=? AND direction='OUT'"));
  BUD_ASSIGN_OR_RETURN(bool dup, exists->Bind(1, m.message_id).Step());
  exists->Reset();
  if (dup) {
    return Status(Code::kAlreadyExists,
                  fmt::format("message id {} was already taken in and is sent only once",
                              m.message_id));
  }
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
  return h->BindAll(m.message_id, now).Run();
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
        "payload=CASE WHEN ? IN ('new', 'api') THEN payload END, "
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
      "process, document_type, title, created_ms, expires_ms, status, state, payload, updated_ms, "
      "files) VALUES(?,'IN',?,?,?,?,?,?,?,?,'',?,?,?,?)"));
  const std::string state = m.state.empty() ? std::string("done") : m.state;
  ins->BindAll(m.message_id, m.conversation_id, m.sender, m.receiver, m.process, m.document_type,
               m.title, m.created_ms, m.expires_ms, state);
  if (state == "api") {
    ins->BindBlob(11, m.payload);
  } else {
    ins->BindNull(11);
  }
  ins->Bind(12, at_ms).Bind(13, state == "api" ? m.files : std::string());
  BUD_RETURN_IF_ERROR(ins->Run());
  BUD_RETURN_IF_ERROR(ApplyStatusInTx(m.message_id, "IN", status, reason, at_ms,
                                      status == wire::FEIL ? std::string("done") : state)
                          .status());
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

Result<std::vector<std::string>> Store::IncomingWithStatus(MsgStatus status,
                                                          const std::string& state, int limit) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "SELECT message_id FROM messages WHERE direction='IN' AND status=? AND state=? LIMIT ?"));
  st->Bind(1, StatusName(status)).Bind(2, state).Bind(3, limit);
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

Status Store::BeginTurn() {
  if (turn_) return Status::Ok();
  auto tx = std::make_unique<storage::Transaction>(*db_);
  BUD_RETURN_IF_ERROR(tx->began());
  turn_ = std::move(tx);
  return Status::Ok();
}

Status Store::CommitTurn() {
  if (!turn_) return Status::Ok();
  std::unique_ptr<storage::Transaction> tx = std::move(turn_);
  BUD_RETURN_IF_ERROR(tx->Commit());  // when it fails, tx's destruction rolls the turn back
  tx.reset();
  // Once a minute the WAL file is truncated, so a quiet point does not keep the largest WAL it
  // ever had; a failure here costs disk space only, never the commit.
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  if (now - last_truncate_mono_ms_ >= kTruncateEveryMs) {
    last_truncate_mono_ms_ = now;
    Status c = db_->Checkpoint();
    if (!c.ok()) Logger("ip")->warn("store: WAL checkpoint: {}", c.ToString());
  }
  return Status::Ok();
}

void Store::RollbackTurn() { turn_.reset(); }  // the destructor rolls back

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
      kListColumns)));
  st->BindAll(f.message_id, f.conversation_id, f.direction, f.status, f.since_ms);
  return ReadRows(*st);
}

Result<std::vector<std::pair<std::string, int64_t>>> Store::IncomingUpdates() {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "SELECT message_id, updated_ms FROM messages WHERE direction='IN'"));
  std::vector<std::pair<std::string, int64_t>> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.emplace_back(st->Text(0), st->Int(1));
  }
  return out;
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

// ---------------------------------------------------------------------------------------------
// Streamed transfers

Status Store::StartTransfer(const MessageRow& m, const std::string& direction, int64_t done_bytes,
                            int64_t total_bytes) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "INSERT INTO transfers(message_id, direction, done_bytes, total_bytes, note, updated_ms, "
      "conversation_id, sender, receiver, process, document_type, created_ms, expires_ms) "
      "VALUES(?,?,?,?,'',?,?,?,?,?,?,?,?) ON CONFLICT(message_id, direction) DO UPDATE SET "
      "done_bytes=excluded.done_bytes, total_bytes=excluded.total_bytes, note='', "
      "updated_ms=excluded.updated_ms"));
  return st->BindAll(m.message_id, direction, done_bytes, total_bytes, NowMs(), m.conversation_id,
                     m.sender, m.receiver, m.process, m.document_type, m.created_ms, m.expires_ms)
      .Run();
}

Status Store::TransferProgress(const std::string& message_id, const std::string& direction,
                               std::optional<int64_t> done_bytes,
                               std::optional<std::string> note) {
  // done_bytes < 0: all of it.
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
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
  return st->Bind(3, NowMs()).Bind(4, message_id).Bind(5, direction).Run();
}

Result<std::optional<TransferRow>> Store::Transfer(const std::string& message_id,
                                                   const std::string& direction) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(fmt::format(
      "SELECT {} FROM transfers WHERE message_id=? AND direction=?", kTransferColumns)));
  st->BindAll(message_id, direction);
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  std::optional<TransferRow> out;
  if (row) out = ReadTransfer(*st);
  st->Reset();
  return out;
}

Result<std::vector<TransferRow>> Store::TransfersWithoutMessage(const ListFilter& f) {
  std::vector<TransferRow> out;
  if (!f.status.empty()) return out;  // no status yet
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(fmt::format(
      "SELECT {} FROM transfers t WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE "
      "m.message_id=t.message_id AND m.direction=t.direction) AND (?1='' OR message_id=?1) AND "
      "(?2='' OR conversation_id=?2) AND (?3='' OR direction=?3) AND updated_ms>=?4 "
      "ORDER BY created_ms, message_id",
      kTransferColumns)));
  st->BindAll(f.message_id, f.conversation_id, f.direction, f.since_ms);
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(ReadTransfer(*st));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// HTTP API

Status Store::CreateDraft(const std::string& message_id, const std::string& sbd_json) {
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(bool used, HasMessage(message_id, "OUT"));
  BUD_ASSIGN_OR_RETURN(auto draft, GetDraft(message_id));
  if (used || draft) {
    return Status(Code::kAlreadyExists,
                  fmt::format("message id {} is already used; give a new instanceIdentifier",
                              message_id));
  }
  BUD_ASSIGN_OR_RETURN(auto* ins, db_->Prepare(
      "INSERT INTO api_drafts(message_id, sbd, created_ms) VALUES(?,?,?)"));
  BUD_RETURN_IF_ERROR(ins->BindAll(message_id, sbd_json, NowMs()).Run());
  return tx.Commit();
}

Result<std::optional<std::string>> Store::GetDraft(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare("SELECT sbd FROM api_drafts WHERE message_id=?"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Bind(1, message_id).Step());
  std::optional<std::string> out;
  if (row) out = st->Text(0);
  st->Reset();
  return out;
}

Result<std::string> Store::AddDraftFile(const std::string& message_id, const DraftFile& f) {
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto draft, GetDraft(message_id));
  if (!draft) {
    return Status(Code::kNotFound, fmt::format("no created, unsent message {} (sent or deleted "
                                               "meanwhile?)", message_id));
  }
  BUD_ASSIGN_OR_RETURN(auto* old, db_->Prepare(
      "SELECT file FROM api_draft_files WHERE message_id=? AND name=?"));
  BUD_ASSIGN_OR_RETURN(bool had, old->BindAll(message_id, f.name).Step());
  std::string replaced = had ? old->Text(0) : std::string();
  old->Reset();
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "INSERT OR REPLACE INTO api_draft_files(message_id, name, title, media_type, data, added_ms, "
      "file, size) VALUES(?,?,?,?,?,?,?,?)"));
  st->BindAll(message_id, f.name, f.title, f.media_type);
  st->BindBlob(5, f.data).Bind(6, NowMs()).Bind(7, f.file).Bind(8, static_cast<int64_t>(f.size));
  BUD_RETURN_IF_ERROR(st->Run());
  BUD_RETURN_IF_ERROR(tx.Commit());
  return replaced;
}

Result<std::vector<DraftFile>> Store::DraftFiles(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "SELECT name, title, media_type, data, file, size FROM api_draft_files WHERE message_id=? "
      "ORDER BY added_ms, name"));
  st->Bind(1, message_id);
  std::vector<DraftFile> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->Text(0), st->Text(1), st->Text(2), st->Blob(3), st->Text(4),
                   static_cast<uint64_t>(st->Int(5))});
  }
  return out;
}

Status Store::DeleteDraft(const std::string& message_id) {
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto* f, db_->Prepare("DELETE FROM api_draft_files WHERE message_id=?"));
  BUD_RETURN_IF_ERROR(f->Bind(1, message_id).Run());
  BUD_ASSIGN_OR_RETURN(auto* d, db_->Prepare("DELETE FROM api_drafts WHERE message_id=?"));
  BUD_RETURN_IF_ERROR(d->Bind(1, message_id).Run());
  if (d->Changes() == 0) {
    return Status(Code::kNotFound, fmt::format("no unsent message {}", message_id));
  }
  return tx.Commit();
}

Result<std::optional<MessageRow>> Store::PeekIncoming(int64_t now_ms, int64_t lease_ms,
                                                      const std::string& process) {
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(fmt::format(
      "SELECT {} FROM messages WHERE direction='IN' AND state='api' AND status=? "
      "AND lock_until_ms<=? AND (?='' OR process=?) ORDER BY created_ms, rowid LIMIT 1",
      kListColumns)));
  st->BindAll(StatusName(wire::INNKOMMENDE_MOTTATT), now_ms, process, process);
  BUD_ASSIGN_OR_RETURN(auto rows, ReadRows(*st));
  if (rows.empty()) return std::optional<MessageRow>();
  MessageRow m = std::move(rows.front());
  m.lock_until_ms = now_ms + lease_ms;
  BUD_ASSIGN_OR_RETURN(auto* up, db_->Prepare(
      "UPDATE messages SET lock_until_ms=? WHERE message_id=? AND direction='IN'"));
  BUD_RETURN_IF_ERROR(up->BindAll(m.lock_until_ms, m.message_id).Run());
  BUD_RETURN_IF_ERROR(tx.Commit());
  return std::optional<MessageRow>(std::move(m));
}

Result<MessageRow> Store::LockedIncoming(const std::string& message_id, int64_t now_ms) {
  BUD_ASSIGN_OR_RETURN(auto row, Get(message_id, "IN"));
  if (!row || (row->state != "api" && row->status != StatusName(wire::INNKOMMENDE_LEVERT))) {
    return Status(Code::kNotFound, fmt::format("no incoming message {} is waiting for the API",
                                               message_id));
  }
  if (row->state != "api") {
    return Status(Code::kNotFound,
                  fmt::format("incoming message {} was already deleted (INNKOMMENDE_LEVERT)",
                              message_id));
  }
  if (row->lock_until_ms <= now_ms) {
    return Status(Code::kInvalidArgument,
                  fmt::format("incoming message {} is not locked: peek it first "
                              "(GET /api/messages/in/peek), then pop and delete it while the "
                              "lock lasts",
                              message_id));
  }
  return std::move(*row);
}

Status Store::DeliverIncoming(const std::string& message_id, int64_t now_ms) {
  BUD_ASSIGN_OR_RETURN(MessageRow row, LockedIncoming(message_id, now_ms));
  (void)row;
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(bool advanced, ApplyStatusInTx(message_id, "IN", wire::INNKOMMENDE_LEVERT,
                                                      "", now_ms, std::string("done")));
  if (advanced) {
    BUD_ASSIGN_OR_RETURN(auto* rep, db_->Prepare(
        "INSERT OR IGNORE INTO pending_reports(message_id, status, reason, at_ms) "
        "VALUES(?,?,'',?)"));
    BUD_RETURN_IF_ERROR(
        rep->BindAll(message_id, static_cast<int64_t>(wire::LEVERT), now_ms).Run());
  }
  BUD_ASSIGN_OR_RETURN(auto* unlock, db_->Prepare(
      "UPDATE messages SET lock_until_ms=0 WHERE message_id=? AND direction='IN'"));
  BUD_RETURN_IF_ERROR(unlock->Bind(1, message_id).Run());
  return tx.Commit();
}

Result<Paged<StatusItem>> Store::Statuses(const StatusQuery& q) {
  constexpr const char* kWhere =
      "FROM history h JOIN messages m ON m.message_id=h.message_id AND m.direction=h.direction "
      "WHERE (?1='' OR h.message_id=?1) AND (?2='' OR h.status=?2) AND (?3='' OR h.direction=?3) "
      "AND h.at_ms>=?4 AND (?5=0 OR h.at_ms<=?5)";
  Paged<StatusItem> out;
  BUD_ASSIGN_OR_RETURN(auto* count, db_->Prepare(fmt::format("SELECT count(*) {}", kWhere)));
  count->BindAll(q.message_id, q.status, q.direction, q.from_ms, q.to_ms);
  BUD_ASSIGN_OR_RETURN(bool row, count->Step());
  out.total = row ? count->Int(0) : 0;
  count->Reset();
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(fmt::format(
      "SELECT h.id, h.at_ms, h.status, h.reason, m.conversation_id, h.message_id, h.direction "
      "{} ORDER BY h.id {} LIMIT ?6 OFFSET ?7",
      kWhere, q.newest_first ? "DESC" : "ASC")));
  st->BindAll(q.message_id, q.status, q.direction, q.from_ms, q.to_ms, q.limit, q.offset);
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool more, st->Step());
    if (!more) break;
    out.items.push_back({st->Int(0), st->Int(1), st->Text(2), st->Text(3), st->Text(4),
                         st->Text(5), st->Text(6)});
  }
  return out;
}

Result<Paged<MessageRow>> Store::Conversations(const ConversationQuery& q) {
  // Finals as the state machine knows them (common/status_machine.h).
  std::string finals;
  for (int s = wire::MessageStatus_MIN; s <= wire::MessageStatus_MAX; ++s) {
    auto st = static_cast<MsgStatus>(s);
    if (wire::MessageStatus_IsValid(s) && IsFinal(st)) {
      finals += fmt::format("{}'{}'", finals.empty() ? "" : ",", StatusName(st));
    }
  }
  const std::string where = fmt::format(
      "FROM messages WHERE (?1=0 OR rowid=?1) AND (?2='' OR message_id=?2) "
      "AND (?3='' OR conversation_id=?3) AND (?4='' OR direction=?4) AND (?5='' OR status=?5) "
      "AND (?6='' OR sender=?6 OR receiver=?6) AND (?7='' OR process=?7) AND updated_ms>=?8 "
      "AND (?9=0 OR updated_ms<=?9) AND (?10=0 OR status NOT IN ({}))",
      finals);
  auto bind = [&](storage::Stmt& st) {
    st.BindAll(q.id, q.message_id, q.conversation_id, q.direction, q.status, q.orgnr, q.process,
               q.from_ms, q.to_ms, q.unfinished_only ? 1 : 0);
  };
  Paged<MessageRow> out;
  BUD_ASSIGN_OR_RETURN(auto* count, db_->Prepare("SELECT count(*) " + where));
  bind(*count);
  BUD_ASSIGN_OR_RETURN(bool row, count->Step());
  out.total = row ? count->Int(0) : 0;
  count->Reset();
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(fmt::format(
      "SELECT {} {} ORDER BY updated_ms DESC, rowid DESC LIMIT ?11 OFFSET ?12", kListColumns,
      where)));
  bind(*st);
  st->Bind(11, q.limit).Bind(12, q.offset);
  BUD_ASSIGN_OR_RETURN(out.items, ReadRows(*st));
  return out;
}

Result<std::vector<StatusCount>> Store::CountByStatus() {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "SELECT direction, status, count(*) FROM messages GROUP BY direction, status"));
  std::vector<StatusCount> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->Text(0), st->Text(1), st->Int(2)});
  }
  return out;
}

Result<std::vector<QueueDepth>> Store::OutgoingQueue() {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "SELECT receiver, count(*), min(created_ms) FROM messages "
      "WHERE direction='OUT' AND state IN ('new', 'sealed') GROUP BY receiver"));
  std::vector<QueueDepth> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->Text(0), st->Int(1), st->Int(2)});
  }
  return out;
}

Result<int64_t> Store::PendingReportCount() {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare("SELECT count(*) FROM pending_reports"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  int64_t n = row ? st->Int(0) : 0;
  st->Reset();
  return n;
}

}  // namespace bud::ip
