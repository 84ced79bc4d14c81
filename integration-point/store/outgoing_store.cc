// Outgoing messages and drafts. See outgoing_store.h and docs/storage.md.
#include "integration-point/store/outgoing_store.h"

#include <fmt/format.h>

#include "common/clock.h"
#include "integration-point/store/internal.h"

namespace bud::ip {

using namespace store_internal;

Status OutgoingStore::ImportOutgoing(const MessageRow& m, const std::string& folder_key) {
  const int64_t now = NowMs();
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_RETURN_IF_ERROR(InsertOutgoingInTx(m, now));
  BUD_ASSIGN_OR_RETURN(
      auto* imp,
      db_.conn().Prepare(
          "INSERT OR REPLACE INTO outbox_imports(folder_key, message_id, at_ms) VALUES(?,?,?)"));
  BUD_RETURN_IF_ERROR(imp->BindAll(folder_key, m.message_id, now).Run());
  return tx.Commit();
}

Status OutgoingStore::CreateOutgoing(const MessageRow& m) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_RETURN_IF_ERROR(InsertOutgoingInTx(m, NowMs()));
  // A draft of the large-message flow ends where its message begins.
  BUD_ASSIGN_OR_RETURN(auto* d1,
                       db_.conn().Prepare("DELETE FROM api_draft_files WHERE message_id=?"));
  BUD_RETURN_IF_ERROR(d1->Bind(1, m.message_id).Run());
  BUD_ASSIGN_OR_RETURN(auto* d2, db_.conn().Prepare("DELETE FROM api_drafts WHERE message_id=?"));
  BUD_RETURN_IF_ERROR(d2->Bind(1, m.message_id).Run());
  return tx.Commit();
}

Status OutgoingStore::InsertOutgoingInTx(const MessageRow& m, int64_t now) {
  BUD_ASSIGN_OR_RETURN(
      auto* exists,
      db_.conn().Prepare("SELECT 1 FROM messages WHERE message_id=? AND direction='OUT'"));
  BUD_ASSIGN_OR_RETURN(bool dup, exists->Bind(1, m.message_id).Step());
  exists->Reset();
  if (dup) {
    return Status(
        Code::kAlreadyExists,
        fmt::format("message id {} was already taken in and is sent only once", m.message_id));
  }
  BUD_ASSIGN_OR_RETURN(
      auto* ins,
      db_.conn().Prepare(
          "INSERT INTO messages(message_id, direction, conversation_id, sender, receiver, process, "
          "document_type, title, created_ms, expires_ms, status, state, payload, updated_ms, "
          "message_reference) VALUES(?,'OUT',?,?,?,?,?,?,?,?,'OPPRETTET','new',?,?,?)"));
  ins->BindAll(m.message_id, m.conversation_id, m.sender, m.receiver, m.process, m.document_type,
               m.title, m.created_ms, m.expires_ms);
  ins->BindBlob(10, m.payload).Bind(11, now).Bind(12, m.message_reference);
  BUD_RETURN_IF_ERROR(ins->Run());
  BUD_ASSIGN_OR_RETURN(
      auto* h, db_.conn().Prepare(
                   "INSERT INTO history(message_id, direction, status, reason, at_ms, advanced) "
                   "VALUES(?,'OUT','OPPRETTET','',?,1)"));
  return h->BindAll(m.message_id, now).Run();
}

Result<bool> OutgoingStore::FolderImported(const std::string& folder_key) {
  BUD_ASSIGN_OR_RETURN(auto* st,
                       db_.conn().Prepare("SELECT 1 FROM outbox_imports WHERE folder_key=?"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Bind(1, folder_key).Step());
  st->Reset();
  return row;
}

Result<std::vector<MessageRow>> OutgoingStore::OutgoingInState(
    WorkState state, int limit, const std::function<bool(const std::string&)>& skip) {
  if (!skip) {
    BUD_ASSIGN_OR_RETURN(
        auto* st, db_.conn().Prepare(fmt::format("SELECT {} FROM messages WHERE direction='OUT' "
                                                 "AND state=? ORDER BY created_ms LIMIT ?",
                                                 kColumns)));
    st->BindAll(std::string(Text(state)), limit);
    return ReadRows(*st);
  }
  // The ids first; a row with its blobs only for those not skipped.
  BUD_ASSIGN_OR_RETURN(auto* ids, db_.conn().Prepare("SELECT message_id FROM messages WHERE "
                                                     "direction='OUT' AND state=? ORDER BY "
                                                     "created_ms LIMIT ?"));
  ids->BindAll(std::string(Text(state)), limit);
  std::vector<std::string> wanted;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, ids->Step());
    if (!row) break;
    std::string id = ids->Text(0);
    if (!skip(id)) wanted.push_back(std::move(id));
  }
  std::vector<MessageRow> out;
  for (const auto& id : wanted) {
    BUD_ASSIGN_OR_RETURN(auto row, GetRow(db_.conn(), id, Direction::kOut));
    if (row && row->state == state) out.push_back(std::move(*row));
  }
  return out;
}

Status OutgoingStore::MarkSealed(const std::string& message_id, const std::string& envelope) {
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare(
                    "UPDATE messages SET state='sealed', envelope=?, payload=NULL, updated_ms=? "
                    "WHERE message_id=? AND direction='OUT' AND state='new'"));
  st->BindBlob(1, envelope).Bind(2, NowMs()).Bind(3, message_id);
  return st->Run();
}

Result<bool> OutgoingStore::ApplyStatus(const std::string& message_id, MsgStatus status,
                                        const std::string& reason, int64_t at_ms,
                                        std::optional<WorkState> new_state) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(bool advanced, ApplyStatusInTx(db_.conn(), message_id, Direction::kOut,
                                                      status, reason, at_ms, new_state));
  BUD_RETURN_IF_ERROR(tx.Commit());
  return advanced;
}

Result<bool> OutgoingStore::ApplyReceipt(const std::string& message_id, MsgStatus status,
                                         const std::string& reason, const std::string& raw_receipt,
                                         int64_t at_ms) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(
      bool advanced, ApplyStatusInTx(db_.conn(), message_id, Direction::kOut, status, reason, at_ms,
                                     std::nullopt, raw_receipt));
  BUD_RETURN_IF_ERROR(tx.Commit());
  return advanced;
}

Result<std::vector<std::string>> OutgoingStore::ExpireUndelivered(int64_t now_ms, int limit) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto* st,
                       db_.conn().Prepare("SELECT message_id, expires_ms FROM messages WHERE "
                                          "direction='OUT' AND status=? AND expires_ms<? LIMIT ?"));
  st->BindAll(StatusName(wire::MOTTATT), now_ms, limit);
  std::vector<std::pair<std::string, int64_t>> due;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    due.emplace_back(st->Text(0), st->Int(1));
  }
  std::vector<std::string> out;
  for (const auto& [id, expires_ms] : due) {
    BUD_RETURN_IF_ERROR(
        ApplyStatusInTx(db_.conn(), id, Direction::kOut, wire::LEVETID_UTLOPT,
                        fmt::format("received by the receiver's integration point, but not taken "
                                    "out by its archive system by {}",
                                    FormatTime(expires_ms)),
                        now_ms, std::nullopt)
            .status());
    out.push_back(id);
  }
  BUD_RETURN_IF_ERROR(tx.Commit());
  return out;
}

Status OutgoingStore::StartTransfer(const MessageRow& m, int64_t done_bytes, int64_t total_bytes) {
  return StartTransferRow(db_.conn(), m, Direction::kOut, done_bytes, total_bytes);
}

Status OutgoingStore::TransferProgress(const std::string& message_id,
                                       std::optional<int64_t> done_bytes,
                                       std::optional<std::string> note) {
  return UpdateTransfer(db_.conn(), message_id, Direction::kOut, done_bytes, std::move(note));
}

Status OutgoingStore::CreateDraft(const std::string& message_id, const std::string& sbd_json) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(bool used, HasRow(db_.conn(), message_id, Direction::kOut));
  BUD_ASSIGN_OR_RETURN(auto draft, GetDraft(message_id));
  if (used || draft) {
    return Status(
        Code::kAlreadyExists,
        fmt::format("message id {} is already used; give a new instanceIdentifier", message_id));
  }
  BUD_ASSIGN_OR_RETURN(
      auto* ins,
      db_.conn().Prepare("INSERT INTO api_drafts(message_id, sbd, created_ms) VALUES(?,?,?)"));
  BUD_RETURN_IF_ERROR(ins->BindAll(message_id, sbd_json, NowMs()).Run());
  return tx.Commit();
}

Result<std::optional<std::string>> OutgoingStore::GetDraft(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto* st,
                       db_.conn().Prepare("SELECT sbd FROM api_drafts WHERE message_id=?"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Bind(1, message_id).Step());
  std::optional<std::string> out;
  if (row) out = st->Text(0);
  st->Reset();
  return out;
}

Result<std::string> OutgoingStore::AddDraftFile(const std::string& message_id, const DraftFile& f) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto draft, GetDraft(message_id));
  if (!draft) {
    return Status(Code::kNotFound, fmt::format("no created, unsent message {} (sent or deleted "
                                               "meanwhile?)",
                                               message_id));
  }
  BUD_ASSIGN_OR_RETURN(
      auto* old,
      db_.conn().Prepare("SELECT file FROM api_draft_files WHERE message_id=? AND name=?"));
  BUD_ASSIGN_OR_RETURN(bool had, old->BindAll(message_id, f.name).Step());
  std::string replaced = had ? old->Text(0) : std::string();
  old->Reset();
  BUD_ASSIGN_OR_RETURN(auto* st,
                       db_.conn().Prepare("INSERT OR REPLACE INTO api_draft_files(message_id, "
                                          "name, title, media_type, data, added_ms, "
                                          "file, size) VALUES(?,?,?,?,?,?,?,?)"));
  st->BindAll(message_id, f.name, f.title, f.media_type);
  st->BindBlob(5, f.data).Bind(6, NowMs()).Bind(7, f.file).Bind(8, static_cast<int64_t>(f.size));
  BUD_RETURN_IF_ERROR(st->Run());
  BUD_RETURN_IF_ERROR(tx.Commit());
  return replaced;
}

Result<std::vector<DraftFile>> OutgoingStore::DraftFiles(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare("SELECT name, title, media_type, data, file, "
                                                    "size FROM api_draft_files WHERE message_id=? "
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

Status OutgoingStore::DeleteDraft(const std::string& message_id) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto* f,
                       db_.conn().Prepare("DELETE FROM api_draft_files WHERE message_id=?"));
  BUD_RETURN_IF_ERROR(f->Bind(1, message_id).Run());
  BUD_ASSIGN_OR_RETURN(auto* d, db_.conn().Prepare("DELETE FROM api_drafts WHERE message_id=?"));
  BUD_RETURN_IF_ERROR(d->Bind(1, message_id).Run());
  if (d->Changes() == 0) {
    return Status(Code::kNotFound, fmt::format("no unsent message {}", message_id));
  }
  return tx.Commit();
}

Result<std::optional<MessageRow>> OutgoingStore::Get(const std::string& message_id) {
  return GetRow(db_.conn(), message_id, Direction::kOut);
}

Result<bool> OutgoingStore::Has(const std::string& message_id) {
  return HasRow(db_.conn(), message_id, Direction::kOut);
}

Result<std::string> OutgoingStore::ChannelOfIncoming(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare("SELECT sender_channel FROM messages "
                                                    "WHERE message_id=? AND direction='IN'"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Bind(1, message_id).Step());
  std::string channel = row ? st->Text(0) : std::string();
  st->Reset();
  return channel;
}

}  // namespace bud::ip
