// Incoming messages and the reports for the broker. See incoming_store.h and docs/storage.md.
#include "integration-point/store/incoming_store.h"

#include <fmt/format.h>

#include "common/clock.h"
#include "common/status_machine.h"
#include "integration-point/store/internal.h"

namespace bud::ip {

using namespace store_internal;

Status IncomingStore::RecordIncoming(const MessageRow& m, MsgStatus status,
                                     const std::string& reason, MsgStatus report,
                                     const std::string& report_reason, int64_t at_ms) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  // Kept for the HTTP API, or done; a FEIL is done at once.
  const WorkState kept = m.state == WorkState::kApi ? WorkState::kApi : WorkState::kDone;
  const WorkState state = status == wire::FEIL ? WorkState::kDone : kept;
  const bool first = Advances(wire::STATUS_UNSPECIFIED, status);  // FEIL, INNKOMMENDE_MOTTATT
  // A new message is inserted with its first status and work state, and its history line
  // written beside it: what ApplyStatusInTx would do to a row without a status, without
  // rewriting the row twice.
  BUD_ASSIGN_OR_RETURN(auto* ins,
                       db_.conn().Prepare("INSERT OR IGNORE INTO messages(message_id, direction, "
                                          "conversation_id, sender, receiver, "
                                          "process, document_type, title, created_ms, expires_ms, "
                                          "status, state, payload, updated_ms, "
                                          "files, sender_channel) "
                                          "VALUES(?,'IN',?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  ins->BindAll(m.message_id, m.conversation_id, m.sender, m.receiver, m.process, m.document_type,
               m.title, m.created_ms, m.expires_ms, first ? StatusName(status) : std::string_view(),
               std::string(Text(state)));
  if (state == WorkState::kApi) {
    ins->BindBlob(12, m.payload);
  } else {
    ins->BindNull(12);
  }
  ins->Bind(13, NowMs()).Bind(14, state == WorkState::kApi ? m.files : std::string());
  ins->Bind(15, m.sender_channel);
  BUD_RETURN_IF_ERROR(ins->Run());
  if (first && ins->Changes() == 1) {
    BUD_ASSIGN_OR_RETURN(
        auto* h, db_.conn().Prepare("INSERT INTO history(message_id, direction, status, reason, "
                                    "at_ms, advanced) VALUES(?,'IN',?,?,?,1)"));
    BUD_RETURN_IF_ERROR(h->BindAll(m.message_id, StatusName(status), reason, at_ms).Run());
  } else {
    // Recorded before (the engine screens repeats out first), or a status that is not a first
    // one: the state machine decides.
    BUD_RETURN_IF_ERROR(ApplyStatusInTx(db_.conn(), m.message_id, Direction::kIn, status, reason,
                                        at_ms, status == wire::FEIL ? WorkState::kDone : kept)
                            .status());
  }
  BUD_ASSIGN_OR_RETURN(auto* rep,
                       db_.conn().Prepare("INSERT OR IGNORE INTO pending_reports(message_id, "
                                          "status, reason, at_ms) VALUES(?,?,?,?)"));
  BUD_RETURN_IF_ERROR(
      rep->BindAll(m.message_id, static_cast<int64_t>(report), report_reason, at_ms).Run());
  return tx.Commit();
}

Status IncomingStore::AdvanceIncoming(const std::string& message_id, MsgStatus status,
                                      MsgStatus report, int64_t at_ms) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(bool advanced, ApplyStatusInTx(db_.conn(), message_id, Direction::kIn,
                                                      status, "", at_ms, std::nullopt));
  if (advanced) {
    BUD_ASSIGN_OR_RETURN(
        auto* rep, db_.conn().Prepare(
                       "INSERT OR IGNORE INTO pending_reports(message_id, status, reason, at_ms) "
                       "VALUES(?,?,'',?)"));
    BUD_RETURN_IF_ERROR(rep->BindAll(message_id, static_cast<int64_t>(report), at_ms).Run());
  }
  return tx.Commit();
}

Result<std::vector<std::string>> IncomingStore::IncomingWithStatus(MsgStatus status,
                                                                   WorkState state, int limit) {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare(
          "SELECT message_id FROM messages WHERE direction='IN' AND status=? AND state=? LIMIT ?"));
  st->Bind(1, StatusName(status)).Bind(2, std::string(Text(state))).Bind(3, limit);
  std::vector<std::string> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(st->Text(0));
  }
  return out;
}

Result<std::optional<MessageRow>> IncomingStore::PeekIncoming(int64_t now_ms, int64_t lease_ms,
                                                              const std::string& process) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare(fmt::format(
          "SELECT {} FROM messages WHERE direction='IN' AND state='api' AND status=? "
          "AND lock_until_ms<=? AND (?='' OR process=?) ORDER BY created_ms, rowid LIMIT 1",
          kListColumns)));
  st->BindAll(StatusName(wire::INNKOMMENDE_MOTTATT), now_ms, process, process);
  BUD_ASSIGN_OR_RETURN(auto rows, ReadRows(*st));
  if (rows.empty()) return std::optional<MessageRow>();
  MessageRow m = std::move(rows.front());
  m.lock_until_ms = now_ms + lease_ms;
  BUD_ASSIGN_OR_RETURN(
      auto* up, db_.conn().Prepare(
                    "UPDATE messages SET lock_until_ms=? WHERE message_id=? AND direction='IN'"));
  BUD_RETURN_IF_ERROR(up->BindAll(m.lock_until_ms, m.message_id).Run());
  BUD_RETURN_IF_ERROR(tx.Commit());
  return std::optional<MessageRow>(std::move(m));
}

namespace {
// The WHERE of the API's incoming messages matching an IncomingFilter (bound as ?1..?5).
constexpr const char* kApiIncomingWhere =
    "FROM messages WHERE direction='IN' AND state='api' AND status=?6 "
    "AND (?1='' OR lower(message_id)=lower(?1)) AND (?2='' OR lower(conversation_id)=lower(?2)) "
    "AND (?3='' OR sender=?3) AND (?4='' OR receiver=?4) AND (?5='' OR process=?5)";

void BindIncomingFilter(storage::Stmt& st, const IncomingFilter& f) {
  st.BindAll(f.message_id, f.conversation_id, f.sender, f.receiver, f.process,
             StatusName(wire::INNKOMMENDE_MOTTATT));
}
}  // namespace

Result<std::optional<MessageRow>> IncomingStore::PeekIncomingMatching(int64_t now_ms,
                                                                      int64_t lease_ms,
                                                                      const IncomingFilter& f) {
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto* st,
                       db_.conn().Prepare(fmt::format(
                           "SELECT {} {} AND lock_until_ms<=?7 ORDER BY created_ms, rowid LIMIT 1",
                           kListColumns, kApiIncomingWhere)));
  BindIncomingFilter(*st, f);
  st->Bind(7, now_ms);
  BUD_ASSIGN_OR_RETURN(auto rows, ReadRows(*st));
  if (rows.empty()) return std::optional<MessageRow>();
  MessageRow m = std::move(rows.front());
  m.lock_until_ms = now_ms + lease_ms;
  BUD_ASSIGN_OR_RETURN(
      auto* up, db_.conn().Prepare(
                    "UPDATE messages SET lock_until_ms=? WHERE message_id=? AND direction='IN'"));
  BUD_RETURN_IF_ERROR(up->BindAll(m.lock_until_ms, m.message_id).Run());
  BUD_RETURN_IF_ERROR(tx.Commit());
  return std::optional<MessageRow>(std::move(m));
}

Result<Paged<MessageRow>> IncomingStore::ListApiIncoming(const IncomingFilter& f, int64_t offset,
                                                         int64_t limit) {
  Paged<MessageRow> out;
  BUD_ASSIGN_OR_RETURN(auto* count,
                       db_.conn().Prepare(fmt::format("SELECT count(*) {}", kApiIncomingWhere)));
  BindIncomingFilter(*count, f);
  BUD_ASSIGN_OR_RETURN(bool row, count->Step());
  out.total = row ? count->Int(0) : 0;
  count->Reset();
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare(fmt::format(
                                     "SELECT {} {} ORDER BY created_ms, rowid LIMIT ?7 OFFSET ?8",
                                     kListColumns, kApiIncomingWhere)));
  BindIncomingFilter(*st, f);
  st->Bind(7, limit).Bind(8, offset);
  BUD_ASSIGN_OR_RETURN(out.items, ReadRows(*st));
  return out;
}

Result<MessageRow> IncomingStore::LockedIncoming(const std::string& message_id, int64_t now_ms) {
  BUD_ASSIGN_OR_RETURN(auto row, GetRow(db_.conn(), message_id, Direction::kIn));
  if (!row ||
      (row->state != WorkState::kApi && row->status != StatusName(wire::INNKOMMENDE_LEVERT))) {
    return Status(Code::kNotFound,
                  fmt::format("no incoming message {} is waiting for the API", message_id));
  }
  if (row->state != WorkState::kApi) {
    return Status(
        Code::kNotFound,
        fmt::format("incoming message {} was already deleted (INNKOMMENDE_LEVERT)", message_id));
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

Status IncomingStore::DeliverIncoming(const std::string& message_id, int64_t now_ms) {
  BUD_ASSIGN_OR_RETURN(MessageRow row, LockedIncoming(message_id, now_ms));
  // The id as received: the broker knows the message by it, whatever case the caller used.
  const std::string& id = row.message_id;
  storage::Transaction tx(db_.conn());
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(bool advanced,
                       ApplyStatusInTx(db_.conn(), id, Direction::kIn, wire::INNKOMMENDE_LEVERT, "",
                                       now_ms, WorkState::kDone));
  if (advanced) {
    BUD_ASSIGN_OR_RETURN(
        auto* rep, db_.conn().Prepare(
                       "INSERT OR IGNORE INTO pending_reports(message_id, status, reason, at_ms) "
                       "VALUES(?,?,'',?)"));
    BUD_RETURN_IF_ERROR(rep->BindAll(id, static_cast<int64_t>(wire::LEVERT), now_ms).Run());
  }
  BUD_ASSIGN_OR_RETURN(
      auto* unlock,
      db_.conn().Prepare(
          "UPDATE messages SET lock_until_ms=0 WHERE message_id=? AND direction='IN'"));
  BUD_RETURN_IF_ERROR(unlock->Bind(1, id).Run());
  return tx.Commit();
}

Result<std::vector<PendingReport>> IncomingStore::PendingReports() {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare("SELECT message_id, status, reason, at_ms FROM "
                                                    "pending_reports ORDER BY at_ms LIMIT 1000"));
  std::vector<PendingReport> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->Text(0), static_cast<MsgStatus>(st->Int(1)), st->Text(2), st->Int(3)});
  }
  return out;
}

Status IncomingStore::ReportDone(const std::string& message_id, MsgStatus status) {
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare("DELETE FROM pending_reports WHERE message_id=? AND status=?"));
  return st->Bind(1, message_id).Bind(2, static_cast<int64_t>(status)).Run();
}

Status IncomingStore::StartTransfer(const MessageRow& m, int64_t done_bytes, int64_t total_bytes) {
  return StartTransferRow(db_.conn(), m, Direction::kIn, done_bytes, total_bytes);
}

Status IncomingStore::TransferProgress(const std::string& message_id,
                                       std::optional<int64_t> done_bytes) {
  return UpdateTransfer(db_.conn(), message_id, Direction::kIn, done_bytes, std::nullopt);
}

Result<std::optional<MessageRow>> IncomingStore::Get(const std::string& message_id) {
  return GetRow(db_.conn(), message_id, Direction::kIn);
}

Result<std::vector<HistoryRow>> IncomingStore::History(const std::string& message_id) {
  return HistoryOf(db_.conn(), message_id, Direction::kIn);
}

}  // namespace bud::ip
