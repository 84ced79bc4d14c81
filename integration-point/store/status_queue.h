// The Next Move status queue (GET /api/statuses/peek, DELETE /api/statuses/{id}): every status
// line written to the history enters it (a trigger on `history`, docs/storage.md, "v5"), oldest
// first; a client reads the head, handles it and removes it, until the queue is empty.
//
// Operation: a view on a PointDb (point_db.h), used on the thread that owns it (the HTTP API's
// connection). Peeking changes nothing; Remove takes one line off the queue, never out of the
// history. DeleteConversations hides conversations from the API's views (and their lines from
// the queue); the rows stay for the engine and the incoming dedup (docs/storage.md, "v9").
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "integration-point/store/point_db.h"
#include "integration-point/store/rows.h"

namespace bud::ip {

class StatusQueue {
 public:
  explicit StatusQueue(PointDb& db) : db_(db) {}  // `db` must outlive this view

  // The oldest status line still on the queue; nullopt when it is empty.
  Result<std::optional<StatusItem>> Peek();
  // Takes status line `id` off the queue; kNotFound when it is not on it.
  Status Remove(int64_t id);
  Result<int64_t> Size();

  // DELETE /api/conversations/{id} and /api/conversations/messageId/{messageId}: marks the
  // conversations with rowid `id` (when non-zero) or with message id `message_id` (any case,
  // both directions) deleted at `now_ms` and takes their status lines off the queue, in one
  // transaction. Returns how many conversations it hid (0: none, or all hidden before).
  Result<int64_t> DeleteConversations(int64_t id, const std::string& message_id, int64_t now_ms);

 private:
  PointDb& db_;
};

}  // namespace bud::ip
