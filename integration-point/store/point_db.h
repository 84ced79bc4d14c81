// The integration point's database: one SQLite connection with its schema and migrations
// (docs/storage.md), its checkpoints and the engine's turn. The role views (outgoing_store.h,
// incoming_store.h, history_store.h) run their SQL on it; nothing else does.
//
// Operation: owned by one thread (the engine's; the HTTP API and `bud-ip status` open their own).
// Checkpoints are the store's own: a Checkpointer (common/storage/checkpointer.h) copies the WAL
// into the database file off the writer's thread, and at most once a minute a CommitTurn also
// truncates the WAL file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "common/storage/checkpointer.h"
#include "common/storage/sqlite.h"

namespace bud::ip {

class PointDb {
 public:
  static Result<std::unique_ptr<PointDb>> Open(const std::string& path);
  // For `bud-ip status` (and the benchmark) beside a running `bud-ip run`: a read-only connection
  // that neither creates nor migrates; kUnsupported when the schema is not this release's.
  static Result<std::unique_ptr<PointDb>> OpenReadOnly(const std::string& path);
  PointDb(const PointDb&) = delete;
  PointDb& operator=(const PointDb&) = delete;
  ~PointDb();

  // Batching (engine thread): between BeginTurn and CommitTurn every write through the role
  // views joins one transaction (each operation a savepoint inside it), so a loop turn costs one
  // commit and one fsync instead of one per message. Nothing written in the turn is durable
  // before CommitTurn returned Ok: what must follow durability (a report, an ack, removing an
  // outbox folder) waits for it. A failed CommitTurn rolls the whole turn back.
  Status BeginTurn();
  Status CommitTurn();  // Ok without an open turn
  void RollbackTurn();  // drops the turn's writes
  bool InTurn() const { return turn_ != nullptr; }

 private:
  friend class OutgoingStore;
  friend class IncomingStore;
  friend class HistoryStore;
  friend class StatusQueue;
  friend class RefusalStore;
  friend class SubscriptionStore;
  explicit PointDb(std::unique_ptr<storage::Db> db);
  storage::Db& conn() { return *conn_; }  // the role views' only way in

  std::unique_ptr<storage::Db> conn_;
  std::unique_ptr<storage::Transaction> turn_;
  int64_t last_truncate_mono_ms_ = 0;  // the last truncating checkpoint (steady clock)
  // Last: stopped before the turn and the connection it is attached to go.
  std::unique_ptr<storage::Checkpointer> checkpointer_;
};

}  // namespace bud::ip
