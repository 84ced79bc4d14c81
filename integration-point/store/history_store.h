// What the integration point's store knows, read only: messages of both directions with their
// status history, the HTTP API's status and conversation queries, counts for health and metrics,
// transfer progress. Schema in docs/storage.md.
//
// Operation: a view on a PointDb (point_db.h), used on the thread that owns it; it writes
// nothing, so `bud-ip status` and the benchmark use it on a read-only PointDb.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "integration-point/store/point_db.h"
#include "integration-point/store/rows.h"

namespace bud::ip {

class HistoryStore {
 public:
  explicit HistoryStore(PointDb& db) : db_(db) {}  // `db` must outlive this view

  Result<std::optional<MessageRow>> Get(const std::string& message_id, Direction direction);
  Result<bool> HasMessage(const std::string& message_id, Direction direction);
  Result<std::vector<HistoryRow>> History(const std::string& message_id, Direction direction);
  Result<std::vector<MessageRow>> List(const ListFilter& filter);

  Result<Paged<StatusItem>> Statuses(const StatusQuery& q);
  Result<Paged<MessageRow>> Conversations(const ConversationQuery& q);
  Result<std::vector<StatusCount>> CountByStatus();
  // Counts by status in all and since `day_start_ms`, the oldest outgoing message not SENDT and
  // not MOTTATT, and messages per hour in each direction for the `hours` whole hours up to the one
  // holding `now_ms`.
  Result<OverviewCounts> Overview(int64_t now_ms, int64_t day_start_ms, int hours);
  Result<int64_t> PendingReportCount();
  // Outgoing messages the broker has not accepted yet (new, sealed), per receiver.
  Result<std::vector<QueueDepth>> OutgoingQueue();

  Result<std::optional<TransferRow>> Transfer(const std::string& message_id, Direction direction);
  // Transfers (incoming ones in progress) whose message has no `messages` row yet, filtered.
  Result<std::vector<TransferRow>> TransfersWithoutMessage(const ListFilter& filter);

  // Every incoming message's id and the time (wall-clock ms) its row last changed: the
  // benchmark's view of what has arrived.
  Result<std::vector<std::pair<std::string, int64_t>>> IncomingUpdates();

 private:
  PointDb& db_;
};

}  // namespace bud::ip
