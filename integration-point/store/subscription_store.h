// Webhook subscriptions (/api/subscriptions) and how far each has been pushed. A subscription
// holds a cursor into the status history (`pushed_through`, a history id): the status lines after
// it are the events still to push to it, so an event is durable the moment its status line is
// committed (by the engine or the HTTP API, in the same transaction as the status), and survives
// a restart until the pusher moves the cursor past it (docs/storage.md, "v7").
//
// Operation: a view on a PointDb (point_db.h), used on the thread that owns that connection (the
// HTTP API's for the subscriptions, the webhook pusher's for the events and cursors).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "integration-point/store/point_db.h"
#include "integration-point/store/rows.h"

namespace bud::ip {

struct SubscriptionRow {
  int64_t id = 0;
  std::string name;
  std::string push_endpoint;
  std::string resource;        // "all" or "messages"
  std::string event;           // "all" or "status"
  std::string filter;          // "" = none
  int64_t pushed_through = 0;  // the last history id handled (pushed, dropped or not matching)
  int64_t created_ms = 0;
};

// A status line as a webhook event carries it (history joined with its message).
struct StatusEventRow {
  int64_t history_id = 0;
  int64_t at_ms = 0;
  std::string message_id;
  std::string conversation_id;
  Direction direction = Direction::kOut;
  std::string process;
  std::string status;
  std::string reason;
};

class SubscriptionStore {
 public:
  explicit SubscriptionStore(PointDb& db) : db_(db) {}  // `db` must outlive this view

  Result<Paged<SubscriptionRow>> List(int64_t offset, int64_t limit);
  Result<std::optional<SubscriptionRow>> Get(int64_t id);
  Result<std::optional<SubscriptionRow>> FindByNameAndEndpoint(const std::string& name,
                                                               const std::string& endpoint);
  Result<int64_t> Count();
  // Stores `row` (its id and cursor ignored) with its cursor at the newest status line, so it
  // receives the statuses written after it; returns its id.
  Result<int64_t> Create(const SubscriptionRow& row, int64_t now_ms);
  // Replaces name, endpoint, resource, event and filter of subscription `row.id`; kNotFound.
  Status Update(const SubscriptionRow& row);
  Status Delete(int64_t id);  // kNotFound when there is none
  Status DeleteAll();

  // Up to `limit` status lines after history id `after`, oldest first.
  Result<std::vector<StatusEventRow>> EventsAfter(int64_t after, int64_t limit);
  // Moves subscription `id`'s cursor forward to `history_id` (never back; nothing when the
  // subscription is gone).
  Status Advance(int64_t id, int64_t history_id);
  // Status lines not yet handled by subscription `id` (all of them, matching or not).
  Result<int64_t> Backlog(int64_t id);

 private:
  PointDb& db_;
};

}  // namespace bud::ip
