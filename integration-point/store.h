// The integration point's store: outgoing and incoming messages, their status history, the
// outbox folders already taken in, and reports still to be given to the broker
// (schema in docs/storage.md).
//
// Operation: owned by the engine thread (the `status` command opens its own connection).
// Every status change goes through ApplyStatus, which enforces the state machine of
// common/status_machine.h and appends to the history in the same transaction.
// Work states (column `state`) say what the engine still has to do with a message:
//   OUT: new (to seal) -> sealed (to submit, envelope kept) -> sent (broker has it) | done
//   IN:  done (nothing left; reports are in pending_reports)
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/status_machine.h"
#include "common/storage/checkpointer.h"
#include "common/storage/sqlite.h"

namespace bud::ip {

struct MessageRow {
  std::string message_id;
  std::string direction;  // "OUT" or "IN"
  std::string conversation_id;
  std::string sender;     // "0192:<orgnr>"
  std::string receiver;
  std::string process;
  std::string document_type;
  std::string title;
  int64_t created_ms = 0;
  int64_t expires_ms = 0;
  std::string status;     // current status name
  std::string state;      // work state
  std::string payload;    // OUT: serialised wire::Payload while state == new
  std::string envelope;   // OUT: sealed envelope while state == sealed
  int64_t id = 0;         // rowid: the conversation id of the HTTP API
  int64_t updated_ms = 0;
  int64_t lock_until_ms = 0;  // IN, state api: locked by a peek until then
  // IN, state api, streamed: the attachments in api-in/<id>/ as JSON [{name, mediaType, size,
  // crc32}] ("" when they are in the payload).
  std::string files;
};

struct HistoryRow {
  std::string status;
  std::string reason;
  int64_t at_ms;
  bool current;  // false for a late status kept for the record that did not advance
};

struct PendingReport {
  std::string message_id;
  MsgStatus status;
  std::string reason;
  int64_t at_ms;
};

// A file uploaded to a draft of the HTTP API's large-message flow: on disk as
// spool/drafts/<message-id>/<file> (data_dirs.h), or, in drafts from before schema v3, in `data`
// (`file` empty).
struct DraftFile {
  std::string name;
  std::string title;
  std::string media_type;
  std::string data;
  std::string file;
  uint64_t size = 0;
};

// One status line as the HTTP API's /api/statuses gives it.
struct StatusItem {
  int64_t id = 0;
  int64_t at_ms = 0;
  std::string status;
  std::string reason;
  std::string conversation_id;
  std::string message_id;
  std::string direction;
};

struct StatusQuery {
  std::string message_id;
  std::string status;
  std::string direction;
  int64_t from_ms = 0;
  int64_t to_ms = 0;  // 0 = no upper bound
  int64_t offset = 0;
  int64_t limit = 20;
  bool newest_first = false;
};

// Messages as "conversations" of the HTTP API (one per message and direction).
struct ConversationQuery {
  int64_t id = 0;  // rowid; 0 = any
  std::string message_id;
  std::string conversation_id;
  std::string direction;  // OUT / IN / ""
  std::string status;     // current status
  std::string orgnr;      // "0192:<orgnr>": sender or receiver
  std::string process;
  int64_t from_ms = 0;    // last update at or after
  int64_t to_ms = 0;      // last update at or before; 0 = no bound
  bool unfinished_only = false;
  int64_t offset = 0;
  int64_t limit = 20;
};

template <typename T>
struct Paged {
  std::vector<T> items;
  int64_t total = 0;
};

struct StatusCount {
  std::string direction;
  std::string status;
  int64_t count;
};

struct QueueDepth {
  std::string receiver;
  int64_t count = 0;
  int64_t oldest_ms = 0;
};

// Progress of a streamed transfer (table `transfers`): ciphertext bytes the broker acknowledged
// (OUT) or that were verified and written to the spool (IN). `message` carries the header
// fields (an incoming message has no `messages` row until it is complete).
struct TransferRow {
  MessageRow message;
  int64_t done_bytes = 0;
  int64_t total_bytes = 0;
  std::string note;  // OUT: why it waits (the broker's last RETRY_LATER), "" when moving
  int64_t updated_ms = 0;
};

struct ListFilter {
  std::string message_id;
  std::string conversation_id;
  std::string direction;
  std::string status;
  int64_t since_ms = 0;
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::string& path);
  // For `bud-ip status` beside a running `bud-ip run`: a read-only connection that neither
  // creates nor migrates; kUnsupported when the schema is not this release's.
  static Result<std::unique_ptr<Store>> OpenReadOnly(const std::string& path);

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

  // Incoming messages kept for the HTTP API (state 'api'). Peek locks the oldest unlocked one
  // until now + lease_ms; Locked returns it while the lock holds (kNotFound / kConflict-like
  // kInvalidArgument otherwise); Deliver records INNKOMMENDE_LEVERT, queues LEVERT for the
  // broker and drops the payload.
  Result<std::optional<MessageRow>> PeekIncoming(int64_t now_ms, int64_t lease_ms,
                                                 const std::string& process);
  Result<MessageRow> LockedIncoming(const std::string& message_id, int64_t now_ms);
  Status DeliverIncoming(const std::string& message_id, int64_t now_ms);

  Result<Paged<StatusItem>> Statuses(const StatusQuery& q);
  Result<Paged<MessageRow>> Conversations(const ConversationQuery& q);
  Result<std::vector<StatusCount>> CountByStatus();
  Result<int64_t> PendingReportCount();
  // Outgoing messages the broker has not accepted yet (new, sealed), per receiver.
  Result<std::vector<QueueDepth>> OutgoingQueue();
  Result<bool> HasMessage(const std::string& message_id, const std::string& direction);

  Result<std::vector<MessageRow>> OutgoingInState(const std::string& state, int limit);
  Status MarkSealed(const std::string& message_id, const std::string& envelope);

  // Applies `status` to the message through the state machine and appends it to the history.
  // When `new_state` is given the work state changes too (payload/envelope dropped unless kept
  // by the new state). Returns whether the current status advanced.
  Result<bool> ApplyStatus(const std::string& message_id, const std::string& direction,
                           MsgStatus status, const std::string& reason, int64_t at_ms,
                           std::optional<std::string> new_state = std::nullopt);

  // Records a received message (INNKOMMENDE_MOTTATT, or FEIL with a reason) and the report to
  // give the broker, in one transaction.
  Status RecordIncoming(const MessageRow& m, MsgStatus status, const std::string& reason,
                        MsgStatus report, const std::string& report_reason, int64_t at_ms);
  // Applies a later incoming status (e.g. INNKOMMENDE_LEVERT) and queues `report` for the
  // broker, in one transaction.
  Status AdvanceIncoming(const std::string& message_id, MsgStatus status, MsgStatus report,
                         int64_t at_ms);
  Result<std::vector<std::string>> IncomingWithStatus(MsgStatus status, const std::string& state,
                                                     int limit);
  Result<std::optional<MessageRow>> Get(const std::string& message_id, const std::string& direction);
  Result<std::vector<PendingReport>> PendingReports();
  Status ReportDone(const std::string& message_id, MsgStatus status);

  Result<std::vector<MessageRow>> List(const ListFilter& filter);
  // Every incoming message's id and the time (wall-clock ms) its row last changed: the
  // benchmark's view of what has arrived.
  Result<std::vector<std::pair<std::string, int64_t>>> IncomingUpdates();
  Result<std::vector<HistoryRow>> History(const std::string& message_id,
                                          const std::string& direction);

  // Streamed transfers: StartTransfer creates (or restarts) the progress row of `m`;
  // TransferProgress updates the bytes done (nullopt: unchanged, < 0: all of them) and the note
  // (nullopt: unchanged); a message without a transfer row is left alone.
  Status StartTransfer(const MessageRow& m, const std::string& direction, int64_t done_bytes,
                       int64_t total_bytes);
  Status TransferProgress(const std::string& message_id, const std::string& direction,
                          std::optional<int64_t> done_bytes,
                          std::optional<std::string> note = std::nullopt);
  Result<std::optional<TransferRow>> Transfer(const std::string& message_id,
                                              const std::string& direction);
  // Transfers (incoming ones in progress) whose message has no `messages` row yet, filtered.
  Result<std::vector<TransferRow>> TransfersWithoutMessage(const ListFilter& filter);

  // Batching (engine thread): between BeginTurn and CommitTurn every write through this Store
  // joins one transaction (each operation a savepoint inside it), so a loop turn costs one
  // commit and one fsync instead of one per message. Nothing written in the turn is durable
  // before CommitTurn returned Ok: what must follow durability (a report, an ack, removing an
  // outbox folder) waits for it. A failed CommitTurn rolls the whole turn back.
  // Checkpoints are the store's own: the Checkpointer copies the WAL into the database file off
  // the engine's thread, and at most once a minute a CommitTurn also truncates the WAL file.
  Status BeginTurn();
  Status CommitTurn();  // Ok without an open turn
  void RollbackTurn();  // drops the turn's writes
  bool InTurn() const { return turn_ != nullptr; }

 private:
  explicit Store(std::unique_ptr<storage::Db> db) : db_(std::move(db)) {}
  Status InsertOutgoingInTx(const MessageRow& m, int64_t now);
  Result<bool> ApplyStatusInTx(const std::string& message_id, const std::string& direction,
                               MsgStatus status, const std::string& reason, int64_t at_ms,
                               const std::optional<std::string>& new_state);
  std::unique_ptr<storage::Db> db_;
  std::unique_ptr<storage::Transaction> turn_;
  int64_t last_truncate_mono_ms_ = 0;  // the last truncating checkpoint (steady clock)
  // Last: stopped before the turn and the connection it is attached to go.
  std::unique_ptr<storage::Checkpointer> checkpointer_;
};

}  // namespace bud::ip
