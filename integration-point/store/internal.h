// Inside the store only (point_db.cc and the role views): the column lists, row readers and the
// status step shared by more than one role. Nothing outside integration-point/store/ includes it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/storage/sqlite.h"
#include "integration-point/store/rows.h"

namespace bud::ip::store_internal {

extern const char* const kColumns;      // every column of `messages`, as ReadRow reads them
extern const char* const kListColumns;  // the same without the blobs, for listings
extern const char* const kTransferColumns;

// The stored text of a direction as the enum.
Direction StoredDirection(const std::string& text);
MessageRow ReadRow(storage::Stmt& st);
Result<std::vector<MessageRow>> ReadRows(storage::Stmt& st);
TransferRow ReadTransfer(storage::Stmt& st);

Result<std::optional<MessageRow>> GetRow(storage::Db& db, const std::string& message_id,
                                         Direction direction);
Result<std::vector<HistoryRow>> HistoryOf(storage::Db& db, const std::string& message_id,
                                          Direction direction);
Result<bool> HasRow(storage::Db& db, const std::string& message_id, Direction direction);

// Applies `status` to the message through the state machine (common/status_machine.h) and
// appends it to the history, inside the caller's transaction. When `new_state` is given the work
// state changes too (payload/envelope dropped unless kept by the new state). Returns whether the
// current status advanced; repeats are ignored entirely (one history line per status).
// `raw_receipt`: the receipt behind the status (a LEST or FEIL from an arkivmelding_kvittering).
// Every history line written enters the status queue (a trigger, docs/storage.md).
Result<bool> ApplyStatusInTx(storage::Db& db, const std::string& message_id, Direction direction,
                             MsgStatus status, const std::string& reason, int64_t at_ms,
                             std::optional<WorkState> new_state,
                             const std::string& raw_receipt = "");

// Queues `report` for the broker unless it is queued already.
Status QueueReport(storage::Db& db, const std::string& message_id, MsgStatus report,
                   const std::string& reason, int64_t at_ms);

// Creates (or restarts) the progress row of a streamed transfer.
Status StartTransferRow(storage::Db& db, const MessageRow& m, Direction direction,
                        int64_t done_bytes, int64_t total_bytes);
// Progress of a streamed transfer (see OutgoingStore::TransferProgress).
Status UpdateTransfer(storage::Db& db, const std::string& message_id, Direction direction,
                      std::optional<int64_t> done_bytes, std::optional<std::string> note);

}  // namespace bud::ip::store_internal
