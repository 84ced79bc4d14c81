// The broker's store on SQLite: one file, WAL, synchronous=FULL, embedded in the broker's
// process (schema and migrations in docs/storage.md, "Broker").
//
// Operation: owned by the broker's event-loop thread (QueueStore). CommitBatch is one SQLite
// transaction; it returns kDurable after SQLite's fsync of the WAL, kFailed otherwise (never
// kUnknown: an embedded engine knows whether its own commit happened). A background
// storage::Checkpointer copies the WAL back on its own connection; Maintain() checkpoints and
// truncates the WAL.
// Concurrency: other processes read the file through their own read-only connections
// (OpenSqliteQueueReader), beside the broker.
// Sessions: one broker process owns the file, so the session leases live in memory (a map of
// organisation to holder and epoch); the epochs start again at each open.
// Limitations: one machine; the quota is the file system's free space or store_max_bytes.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "broker/fresh_envelopes.h"
#include "broker/queue_counts.h"
#include "broker/queue_store.h"
#include "broker/seen_index.h"
#include "common/storage/checkpointer.h"
#include "common/storage/sqlite.h"

namespace bud::broker {

// The schema version this release writes (the number of migrations).
int SchemaVersion();
// The migrations, one per version (docs/storage.md); tests build older stores from a prefix.
const std::vector<std::string>& Migrations();

// A read-only connection to an existing broker store of this release's schema version, for
// admin commands and /metrics beside a running broker. kNotFound when there is no store at
// `path`; kUnsupported when its schema version is not the one this binary writes (start
// `bud-broker run` once to migrate an older one).
Result<std::unique_ptr<QueueStoreReader>> OpenSqliteQueueReader(const std::string& path);

class SqliteQueueStore final : public QueueStore {
 public:
  // Opens (creating or migrating) the store at `path`. `max_bytes` > 0 caps the database size
  // (SQLITE_FULL beyond it, as on a full disk). Counts the queued messages per receiver and per
  // sender (one grouped scan) for the caps.
  // `merge_at` is the id index's merge size (SeenIndex::kMergeAt; lower in tests).
  static Result<std::unique_ptr<SqliteQueueStore>> Open(const std::string& path,
                                                        int64_t max_bytes = 0,
                                                        int64_t merge_at = SeenIndex::kMergeAt);

  // The durability settings of the store's own connection: PRAGMA synchronous (2 = FULL) and
  // journal_mode ("wal"). What every ACCEPTED relies on; tests check it.
  struct Durability {
    int64_t synchronous = 0;
    std::string journal_mode;
  };
  Result<Durability> durability();

  Result<StoreStats> Stats(bool count_history = true) override;
  Result<int64_t> QueuedCount() override;
  Result<int64_t> BytesUsed() override;
  std::string Describe() const override;
  Status CheckWritable() override;

  void SetQueueCaps(const QueueCaps& caps) override { counts_.SetCaps(caps); }
  std::string QueueRoom(const std::string& sender, const std::string& receiver) const override {
    return counts_.Room(sender, receiver);
  }
  // Never below what the file holds: SQLite keeps the current size then, so it cannot grow.
  Status LimitBytes(int64_t max_bytes) override;

  CommitResult CommitBatch(std::vector<SubmitItem>& submits, std::vector<ReportItem>& reports,
                           const std::vector<NoticeAck>& acks = {}) override;
  Result<SessionLease> TakeSession(const std::string& org, const std::string& holder,
                                   int64_t lease_ms) override;
  Result<std::vector<std::pair<std::string, int64_t>>> RenewSessions(const std::string& holder,
                                                                     int64_t lease_ms) override;
  Status ReleaseSession(const LeaseRef& lease) override;
  Result<std::vector<Queued>> ClaimDeliveries(const LeaseRef& lease,
                                              const std::vector<int64_t>& handed_out,
                                              int limit) override;
  Result<std::optional<Queued>> ClaimRedelivery(const LeaseRef& lease, int64_t seq) override;
  Result<std::vector<Queued>> NextFor(const std::string& receiver, int64_t after_seq,
                                      int limit) override;
  Result<std::optional<Queued>> BySeq(int64_t seq) override;
  Result<std::vector<Notice>> NoticesFor(const std::string& org, int64_t after_id,
                                         int limit) override;
  Result<int64_t> AddAttempts(const std::vector<std::string>& message_ids) override;
  Result<int64_t> Attempts(const std::string& message_id) override;
  Result<std::vector<Expired>> FailExhausted(int64_t max_attempts, int64_t now_ms) override;
  Result<std::vector<Expired>> ExpireDue(int64_t now_ms, int limit) override;
  Result<int64_t> PruneHistory(int64_t before_ms, int limit) override;

  Result<bool> IsKnown(const std::string& message_id) override;
  Result<bool> IsQueued(const std::string& message_id) override;

  Result<std::vector<UploadRow>> LoadUploads() override;
  Status InsertUpload(const UploadRow& row) override;
  Status SetUploadPositions(
      const std::vector<std::pair<std::string, uint64_t>>& positions) override;
  Status DeleteUploads(const std::vector<std::string>& message_ids) override;

  Status Maintain() override;
  std::optional<IdIndexStats> IdIndex() const override;

  // The id index of `seen` (broker/seen_index.h), for tests and metrics.
  SeenIndex& seen_index() { return *seen_index_; }

 private:
  explicit SqliteQueueStore(std::unique_ptr<storage::Db> db) : db_(std::move(db)) {}
  Status DoCommitBatch(std::vector<SubmitItem>& submits, std::vector<ReportItem>& reports,
                       const std::vector<NoticeAck>& acks);
  Status ApplyReport(ReportItem& r, int64_t now);
  // A message's seen row, found through the id index and checked against the row.
  struct SeenRow {
    int64_t n = 0;
    std::string sender, receiver;
    int64_t seq = 0;  // 0 when no copy was ever queued (rows older than schema v4)
    std::string sender_channel, receiver_channel;
    int64_t reported = 0;  // bit 1 << status for each status a receiver reported
  };
  Result<std::optional<SeenRow>> FindSeen(const std::string& message_id);
  Result<std::vector<Expired>> Conclude(
      storage::Stmt& query, MsgStatus status, int64_t now_ms,
      const std::function<std::string(const Expired&, int64_t)>& reason);
  // Queued messages by receiver and by sender, as committed; the pending_ maps hold the changes
  // of the transaction in progress and are applied when it commits.
  Status CheckLease(const LeaseRef& lease) const;
  QueueCounts counts_;
  struct Lease {
    std::string holder;  // "" once released
    int64_t epoch = 0;
  };
  std::map<std::string, Lease> leases_;  // by organisation
  // The envelopes just committed, for the deliveries that follow them closely: 8 MiB is a few
  // hundred milliseconds of a busy broker's submits; larger envelopes are read from the store.
  static constexpr size_t kFreshBytes = 8 << 20;
  static constexpr size_t kFreshMaxEnvelope = 64 << 10;
  FreshEnvelopes fresh_{kFreshBytes, kFreshMaxEnvelope};
  std::unique_ptr<storage::Db> db_;
  // The next queue position handed out (above every seq ever used: sqlite_sequence and the
  // table). Chosen here so the seen row is written once, with its seq; a rolled-back batch only
  // leaves a gap.
  int64_t next_seq_ = 1;
  // The next row number of the `seen` log (above the log's and the index's highest).
  int64_t next_n_ = 1;
  // After db_: closed first (its threads read the same file).
  std::unique_ptr<SeenIndex> seen_index_;
  // After db_: destroyed (joined) before the connection it is attached to closes.
  std::unique_ptr<storage::Checkpointer> checkpointer_;
};

}  // namespace bud::broker
