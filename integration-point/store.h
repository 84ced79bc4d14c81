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
#include <vector>

#include "common/status.h"
#include "common/status_machine.h"
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

  // Takes an outbox folder in: the message (state new, OPPRETTET) and the import record, in one
  // transaction. `folder_key` identifies the folder instance (name + message.json identity).
  Status ImportOutgoing(const MessageRow& m, const std::string& folder_key);
  Result<bool> FolderImported(const std::string& folder_key);
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
  Result<std::vector<std::string>> IncomingWithStatus(MsgStatus status, int limit);
  Result<std::optional<MessageRow>> Get(const std::string& message_id, const std::string& direction);
  Result<std::vector<PendingReport>> PendingReports();
  Status ReportDone(const std::string& message_id, MsgStatus status);

  Result<std::vector<MessageRow>> List(const ListFilter& filter);
  Result<std::vector<HistoryRow>> History(const std::string& message_id,
                                          const std::string& direction);
  storage::Db& db() { return *db_; }

 private:
  explicit Store(std::unique_ptr<storage::Db> db) : db_(std::move(db)) {}
  Result<bool> ApplyStatusInTx(const std::string& message_id, const std::string& direction,
                               MsgStatus status, const std::string& reason, int64_t at_ms,
                               const std::optional<std::string>& new_state);
  std::unique_ptr<storage::Db> db_;
};

}  // namespace bud::ip
