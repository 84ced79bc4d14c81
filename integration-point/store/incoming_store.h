// The integration point's incoming messages: recorded when received (with the report the broker
// is to get), advanced when delivered, kept for the HTTP API's peek/pop/delete when the delivery
// mode is api, and the reports still to be given to the broker. Schema in docs/storage.md.
//
// Operation: a view on a PointDb (point_db.h), used on the thread that owns it; every write joins
// the PointDb's turn when one is open. Work states (column `state`) of an incoming message:
//   done (nothing left; reports are in pending_reports), api (kept for the HTTP API)
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "integration-point/store/point_db.h"
#include "integration-point/store/rows.h"

namespace bud::ip {

// Which incoming messages kept for the HTTP API a peek or a list looks at (eFormidling's filters
// of /api/messages/in and /peek). Empty fields match anything; ids are compared without regard
// to case; parties are "0192:<orgnr>".
struct IncomingFilter {
  std::string message_id;
  std::string conversation_id;
  std::string sender;
  std::string receiver;
  std::string process;
};

class IncomingStore {
 public:
  explicit IncomingStore(PointDb& db) : db_(db) {}  // `db` must outlive this view

  // Records a received message (INNKOMMENDE_MOTTATT, or FEIL with a reason) and the report to
  // give the broker, in one transaction.
  Status RecordIncoming(const MessageRow& m, MsgStatus status, const std::string& reason,
                        MsgStatus report, const std::string& report_reason, int64_t at_ms);
  // Applies a later incoming status (e.g. INNKOMMENDE_LEVERT) and queues `report` for the
  // broker, in one transaction.
  Status AdvanceIncoming(const std::string& message_id, MsgStatus status, MsgStatus report,
                         int64_t at_ms);
  // The incoming message `message_id` (with its payload while kept for the API) and its status
  // history, if there is one.
  Result<std::optional<MessageRow>> Get(const std::string& message_id);
  Result<std::vector<HistoryRow>> History(const std::string& message_id);
  Result<std::vector<std::string>> IncomingWithStatus(MsgStatus status, WorkState state, int limit);

  // Incoming messages kept for the HTTP API (state 'api'). Peek locks the oldest unlocked one
  // until now + lease_ms; Locked returns it while the lock holds (kNotFound / kConflict-like
  // kInvalidArgument otherwise); Deliver records INNKOMMENDE_LEVERT, queues LEVERT for the
  // broker and drops the payload.
  Result<std::optional<MessageRow>> PeekIncoming(int64_t now_ms, int64_t lease_ms,
                                                 const std::string& process);
  // The same, the oldest unlocked one that matches `f`.
  Result<std::optional<MessageRow>> PeekIncomingMatching(int64_t now_ms, int64_t lease_ms,
                                                         const IncomingFilter& f);
  // The incoming messages kept for the HTTP API that match `f` (locked or not), oldest first.
  Result<Paged<MessageRow>> ListApiIncoming(const IncomingFilter& f, int64_t offset, int64_t limit);
  Result<MessageRow> LockedIncoming(const std::string& message_id, int64_t now_ms);
  Status DeliverIncoming(const std::string& message_id, int64_t now_ms);

  // Reports for the broker, oldest first (at most 1,000), and dropping one it acknowledged.
  Result<std::vector<PendingReport>> PendingReports();
  Status ReportDone(const std::string& message_id, MsgStatus status);

  // Streamed receipts: StartTransfer creates (or restarts) the progress row of `m` (the header
  // fields too: the message has no row of its own until it is complete); TransferProgress
  // updates the ciphertext bytes verified and written to the spool (nullopt: unchanged, < 0: all
  // of them); a message without a transfer row is left alone.
  Status StartTransfer(const MessageRow& m, int64_t done_bytes, int64_t total_bytes);
  Status TransferProgress(const std::string& message_id, std::optional<int64_t> done_bytes);

 private:
  PointDb& db_;
};

}  // namespace bud::ip
