// The integration point's outgoing messages: taken in from the outbox or the HTTP API (with the
// API's drafts), sealed, submitted and followed by status until final; the progress of their
// streamed uploads. Schema in docs/storage.md.
//
// Operation: a view on a PointDb (point_db.h), used on the thread that owns it; every write joins
// the PointDb's turn when one is open. Work states (column `state`) of an outgoing message:
//   new (to seal) -> sealed (to submit, envelope kept) -> sent (broker has it) | done
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "integration-point/store/point_db.h"
#include "integration-point/store/rows.h"

namespace bud::ip {

class OutgoingStore {
 public:
  explicit OutgoingStore(PointDb& db) : db_(db) {}  // `db` must outlive this view

  // Takes an outbox folder in: the message (state new, OPPRETTET) and the import record, in one
  // transaction. `folder_key` identifies the folder instance (name + message.json identity).
  Status ImportOutgoing(const MessageRow& m, const std::string& folder_key);
  Result<bool> FolderImported(const std::string& folder_key);
  // Takes a message in from the HTTP API (state new, OPPRETTET) and drops its draft, if any, in
  // one transaction. kAlreadyExists when the id was used before.
  Status CreateOutgoing(const MessageRow& m);

  // Drafts of the large-message flow: created from an SBD, files added one by one, sent with
  // CreateOutgoing or deleted.
  Status CreateDraft(const std::string& message_id, const std::string& sbd_json);
  Result<std::optional<std::string>> GetDraft(const std::string& message_id);
  // Adds `file` (the same name: replaced) unless the draft is gone (kNotFound). Returns the
  // on-disk name of the file it replaced ("" when none): the caller removes it.
  Result<std::string> AddDraftFile(const std::string& message_id, const DraftFile& file);
  Result<std::vector<DraftFile>> DraftFiles(const std::string& message_id);
  Status DeleteDraft(const std::string& message_id);  // kNotFound when there is none

  // The outgoing message `message_id` with payload or envelope, if there is one; whether it
  // exists (the id was taken in before).
  Result<std::optional<MessageRow>> Get(const std::string& message_id);
  Result<bool> Has(const std::string& message_id);
  // The message channel the incoming message `message_id` came from ("" when it came from a
  // point without one, or there is no such incoming message): where an answer to it goes.
  Result<std::string> ChannelOfIncoming(const std::string& message_id);
  // The oldest `limit` outgoing messages in work state `state`, with payload or envelope. Those
  // whose stored id `skip` returns true for (called in that order, once per message) are left
  // out, and their payloads and envelopes are never read.
  Result<std::vector<MessageRow>> OutgoingInState(
      WorkState state, int limit, const std::function<bool(const std::string&)>& skip = {});
  // new -> sealed: keeps `envelope`, drops the payload.
  Status MarkSealed(const std::string& message_id, const std::string& envelope);

  // Applies `status` to the outgoing message through the state machine and appends it to the
  // history. When `new_state` is given the work state changes too (payload/envelope dropped
  // unless kept by the new state). Returns whether the current status advanced.
  Result<bool> ApplyStatus(const std::string& message_id, MsgStatus status,
                           const std::string& reason, int64_t at_ms,
                           std::optional<WorkState> new_state = std::nullopt);

  // A receipt (arkivmelding_kvittering) for the outgoing message: `status` (LEST or FEIL) with
  // the receipt's text as the reason and the receipt itself kept as the raw receipt. The caller
  // checked that the receipt came from the message's receiver. Returns whether it advanced.
  Result<bool> ApplyReceipt(const std::string& message_id, MsgStatus status,
                            const std::string& reason, const std::string& raw_receipt,
                            int64_t at_ms);

  // Outgoing messages the receiver's point took in (MOTTATT) but its archive system did not
  // take out (LEVERT) by their expiry at `now_ms`: LEVETID_UTLOPT, at most `limit` per call, in
  // one transaction. (Before MOTTATT the broker's sweep decides.) Returns their ids.
  Result<std::vector<std::string>> ExpireUndelivered(int64_t now_ms, int limit);

  // Streamed uploads: StartTransfer creates (or restarts) the progress row of `m`;
  // TransferProgress updates the bytes the broker acknowledged (nullopt: unchanged, < 0: all of
  // them) and the note (why it waits; nullopt: unchanged); a message without a transfer row is
  // left alone.
  Status StartTransfer(const MessageRow& m, int64_t done_bytes, int64_t total_bytes);
  Status TransferProgress(const std::string& message_id, std::optional<int64_t> done_bytes,
                          std::optional<std::string> note = std::nullopt);

 private:
  Status InsertOutgoingInTx(const MessageRow& m, int64_t now);
  PointDb& db_;
};

}  // namespace bud::ip
