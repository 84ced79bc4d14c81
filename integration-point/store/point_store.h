// The integration point's store as a process opens it: the PointDb (connection, schema, turn)
// and its role views. Owners hand each part the narrow view it needs.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "integration-point/store/history_store.h"
#include "integration-point/store/incoming_store.h"
#include "integration-point/store/outgoing_store.h"
#include "integration-point/store/point_db.h"
#include "integration-point/store/refusal_store.h"
#include "integration-point/store/status_queue.h"
#include "integration-point/store/subscription_store.h"

namespace bud::ip {

struct PointStore {
  // Opens (creating and migrating) the store at `path`.
  static Result<std::unique_ptr<PointStore>> Open(const std::string& path);
  // A read-only connection that neither creates nor migrates (point_db.h).
  static Result<std::unique_ptr<PointStore>> OpenReadOnly(const std::string& path);

  explicit PointStore(std::unique_ptr<PointDb> db)
      : point(std::move(db)),
        outgoing(*point),
        incoming(*point),
        history(*point),
        status_queue(*point),
        refusals(*point),
        subscriptions(*point) {}
  PointStore(const PointStore&) = delete;
  PointStore& operator=(const PointStore&) = delete;

  std::unique_ptr<PointDb> point;  // first: the views borrow it
  OutgoingStore outgoing;
  IncomingStore incoming;
  HistoryStore history;
  StatusQueue status_queue;
  RefusalStore refusals;
  SubscriptionStore subscriptions;
};

}  // namespace bud::ip
