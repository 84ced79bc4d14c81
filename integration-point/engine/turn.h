// One loop turn's transaction and what waits for its commit.
//
// Operation: Begin opens the store's turn (PointDb::BeginTurn): every write until Finish joins one
// transaction. What must follow durability (a report, an ack, removing an outbox folder) is
// handed to AfterCommit and runs only once Finish's commit returned Ok; what must happen when
// the turn is lost (a delivery recorded in it is answered Defer) is handed to OnRollback. The
// turn's inbox folders (InboxBatch) are published, with one syncfs, just before the commit.
// Outside a turn (Begin failed) AfterCommit runs at once and OnRollback is dropped: each write
// was its own transaction.
// Concurrency: the engine thread.
#pragma once

#include <functional>
#include <vector>

#include "common/status.h"
#include "integration-point/inbox.h"
#include "integration-point/store/point_store.h"

namespace bud::ip {

class Turn {
 public:
  // `store` and `inbox` must outlive the turn.
  Turn(PointDb& store, InboxBatch& inbox) : store_(store), inbox_(inbox) {}
  Turn(const Turn&) = delete;
  Turn& operator=(const Turn&) = delete;

  Status Begin();
  bool open() const { return store_.InTurn(); }
  void AfterCommit(std::function<void()> action);
  void OnRollback(std::function<void(const Status&)> action);

  struct Outcome {
    Status status;         // Ok: durable
    size_t held_back = 0;  // after-commit actions dropped because the commit failed
  };
  // Publishes the inbox folders, commits, then runs what waited (or the rollback actions).
  Outcome Finish();

 private:
  PointDb& store_;
  InboxBatch& inbox_;
  std::vector<std::function<void()>> after_commit_;
  std::vector<std::function<void(const Status&)>> on_rollback_;
};

}  // namespace bud::ip
