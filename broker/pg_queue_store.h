// The broker's store on PostgreSQL (libpq, common/storage/pg.h): the same QueueStore as the
// SQLite one, on a database server that can be replicated (schema in docs/storage.md, "Broker
// on PostgreSQL").
//
// Operation: owned by the broker's event-loop thread; one connection. The schema is created and
// migrated by Open (table broker_schema holds the version; migrations run in one transaction
// under an advisory lock, so two brokers starting at once do not both run them; a newer schema
// is refused). The session runs with synchronous_commit = on, so a COMMIT returns once the
// server (and, with synchronous_standby_names, its synchronous standbys) has it on disk.
// Queue positions come from the sequence broker_message_seq; CommitBatch is one transaction.
// Outcomes: durable; failed (an error before COMMIT, or COMMIT refused on a live session: the
// server rolled it back); unknown (COMMIT sent and no clean answer: the connection dropped, or the
// server stopped waiting for its synchronous standbys).
// Several brokers: any number of broker processes may use one database (docs/storage.md,
// "Several brokers on one database"). Sessions are leased in broker_sessions (TakeSession,
// RenewSessions, ReleaseSession) and deliveries are claimed under the lease in one statement
// (ClaimDeliveries, ClaimRedelivery). The queue caps are counted from the database inside the
// batch's transaction, under an advisory lock per receiver and sender. A commit that stores a
// message or a notice sends NOTIFY bud_broker_wake with the organisation in the same
// transaction; a second connection LISTENs, and its socket is what WakeFd gives the loop.
// Failover: after a lost connection or a read-only server (a demoted primary) the next call
// reconnects; with several hosts and target_session_attrs=read-write in the connection string
// libpq finds the promoted standby. A read that fails on a lost connection is tried once more
// on a new one; writes are not retried here (the loop repeats them).
// Quota: BytesUsed is pg_database_size(current_database()); with LimitBytes set, a batch whose
// envelopes would take the database past it fails with kDiskFull before anything is written.
// Chunks: the records of streamed messages are rows of broker_chunks, committed with their
// upload's next_chunk, and deleted with their message when it leaves the queue (in the same
// transaction), so an upload or a delivery resumes on any broker using the database.
// Limitations: a lost notification only delays (the loop also polls every wake_poll_ms); the
// leases are timed by the database server's clock.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "broker/queue_counts.h"
#include "broker/queue_store.h"
#include "common/storage/pg.h"

namespace bud::broker {

// The schema version the PostgreSQL store of this release writes.
int PgSchemaVersion();

// What `bud-broker db init|migrate|check` report.
struct PgStoreInfo {
  std::string server;        // host:port the connection settled on
  std::string database;      // the connection string's safe description
  int schema_version = 0;    // as found (before a migration) or as left (after)
  int migrated_from = -1;    // db init/migrate: the version before, -1 when not migrated
  bool writable = false;     // the server takes writes (not a standby, not read-only)
};

// Connects and migrates the schema to this release's (creating it in an empty database).
Result<PgStoreInfo> MigratePgQueueStore(const storage::pg::ConnectOptions& options);
// Connects and reports, creating and migrating nothing.
Result<PgStoreInfo> CheckPgQueueStore(const storage::pg::ConnectOptions& options);

// The read side over its own connection (admin commands, /metrics); kUnsupported unless the
// schema is this release's.
Result<std::unique_ptr<QueueStoreReader>> OpenPgQueueReader(
    const storage::pg::ConnectOptions& options);

class PgQueueStore final : public QueueStore {
 public:
  // Connects, creates or migrates the schema, counts the queues for the caps.
  static Result<std::unique_ptr<PgQueueStore>> Open(const storage::pg::ConnectOptions& options,
                                                    int64_t max_bytes = 0);

  // SHOW synchronous_commit on the store's own session ("on"): what every ACCEPTED relies on.
  Result<std::string> synchronous_commit();

  Result<StoreStats> Stats(bool count_history = true) override;
  Result<int64_t> QueuedCount() override;
  Result<int64_t> BytesUsed() override;
  std::string Describe() const override;
  Status CheckWritable() override;

  void SetQueueCaps(const QueueCaps& caps) override {
    caps_ = caps;
    counts_.SetCaps(caps);
  }
  // Counted from the database (a first look: CommitBatch decides under its locks).
  std::string QueueRoom(const std::string& sender, const std::string& receiver) const override;
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
  bool Shared() const override { return true; }
  int WakeFd() const override;
  Result<std::vector<std::string>> TakeWakeups() override;
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
  Result<std::optional<UploadRow>> FindUpload(const std::string& message_id) override;
  Status InsertUpload(const UploadRow& row) override;
  Status SetUploadPositions(
      const std::vector<std::pair<std::string, uint64_t>>& positions) override;
  Status DeleteUploads(const std::vector<std::string>& message_ids) override;

  bool StoresChunks() const override { return true; }
  Result<std::vector<std::string>> CommitUploadChunks(
      const std::vector<UploadProgress>& progress) override;
  Result<std::string> ReadChunk(const std::string& message_id, uint64_t index) override;
  Status DropUploads(const std::vector<std::string>& message_ids) override;

  Status Maintain() override;

 private:
  explicit PgQueueStore(std::unique_ptr<storage::pg::Connection> conn)
      : conn_(std::move(conn)) {}
  // Reconnects when the last call lost the connection or found a read-only server, and reads the
  // queue counts again when they may be stale.
  Status Ready();
  // Runs `read` once more on a new connection when it failed because the connection was lost.
  template <typename T>
  Result<T> Read(const std::function<Result<T>()>& read);
  Status LockCounts(const std::set<std::string>& keys);
  Status SaveCounts();
  // (Re)opens the listening connection and LISTENs.
  Status Listen();
  Status StoreSubmits(std::vector<SubmitItem>& submits, int64_t now, std::set<std::string>& wake);
  std::optional<storage::pg::CommitResult> SubmitAlone(std::vector<SubmitItem>& submits,
                                                       int64_t now);
  Result<std::map<std::string, std::string>> SendersOf(const std::vector<std::string_view>& ids);
  Status MarkKnown(std::vector<SubmitItem>& submits, const std::vector<size_t>& skipped);
  static constexpr size_t kRowsPerInsert = 1000;  // rows per statement at most
  Status DoBatch(std::vector<SubmitItem>& submits, std::vector<ReportItem>& reports,
                 const std::vector<NoticeAck>& acks, int64_t now);
  // A reported message's broker_seen row.
  struct SeenRow {
    std::string sender, receiver, sender_channel, receiver_channel;
    int64_t seq = 0;  // 0: never queued
  };
  using SeenRows = std::map<std::string, SeenRow>;
  Result<SeenRows> ReadSeen(const std::vector<std::string>& ids);
  Status ApplyReports(std::vector<ReportItem>& reports, size_t from, size_t to,
                      const SeenRows& seen, int64_t now);
  // Ends the selected messages (message_id, sender, receiver, number) with `status`, as reports.
  Result<std::vector<Expired>> Conclude(
      const std::string& select_sql, const storage::pg::Params& params, MsgStatus status,
      int64_t now_ms, const std::function<std::string(const Expired&, int64_t)>& reason);

  std::unique_ptr<storage::pg::Connection> conn_;
  storage::pg::ConnectOptions options_;
  std::unique_ptr<storage::pg::Connection> listen_;  // LISTEN bud_broker_wake
  int64_t listen_retry_mono_ = 0;
  QueueCaps caps_;
  QueueCounts counts_;  // inside a batch: its organisations' counts, as locked and read
  // Count row keys this connection has seen (rows are never deleted), so that LockCounts need not
  // create them; bounded (past the bound, LockCounts creates as before).
  static constexpr size_t kMaxCountKeys = 100000;
  std::set<std::string> count_keys_;
  int64_t max_bytes_ = 0;
  // pg_database_size is a stat of every file of the database: read at most every
  // kBytesRefreshMs, and between reads counted up by the envelope bytes committed.
  int64_t bytes_ = 0;
  int64_t bytes_read_mono_ = -1;
};

}  // namespace bud::broker
