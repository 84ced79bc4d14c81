// The broker's store: queued envelopes, the dedup record, delivery reports and the status
// notices waiting for their sender (schema in docs/storage.md).
//
// Operation: owned by the broker's single event-loop thread. CommitBatch writes a whole poll's
// worth of submits and reports in one transaction (group commit); the caller answers ACCEPTED
// only after it returned ok, i.e. after SQLite's fsync (synchronous=FULL).
// Invariant: a message id is in `seen` from its first commit on, in the same transaction as the
// message itself, so a resubmission is recognised whether the message is still queued or was
// delivered long ago.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/status_machine.h"
#include "common/storage/checkpointer.h"
#include "common/storage/sqlite.h"

namespace bud::broker {

struct SubmitItem {
  std::string message_id;
  std::string sender;    // "0192:<orgnr>", the authenticated submitter
  std::string receiver;  // "0192:<orgnr>"
  std::string envelope;
  int64_t expires_ms = 0;
  bool duplicate = false;  // out: already known
  bool conflict = false;   // out: the id is already used by another sender
  std::string refused;     // out: not stored (a queue is full): the reason of a RETRY_LATER
};

// Queued messages one receiver, and one sender, may have at the broker (0: no cap).
struct QueueCaps {
  int64_t per_receiver = 0;
  int64_t per_sender = 0;
};

struct ReportItem {
  std::string reporter;  // the receiving organisation
  std::string message_id;
  MsgStatus status = wire::STATUS_UNSPECIFIED;
  std::string reason;
  int64_t at_ms = 0;
  Status result;                  // out
  std::string notify_org;         // out: the sender to notify, when a notice was created
};

// A sender's acknowledgement of a status notice: the notice is deleted if it belongs to `org`.
struct NoticeAck {
  std::string org;
  int64_t notice_id = 0;
};

struct Queued {
  int64_t seq;
  std::string message_id;
  std::string envelope;
};

struct Notice {
  int64_t notice_id;
  std::string message_id;
  MsgStatus status;
  std::string reason;
  int64_t at_ms;
};

struct Expired {
  std::string message_id;
  std::string sender;
  std::string receiver;
};

// What is waiting in a broker store, for `bud-broker stats` and the broker's /metrics.
struct ReceiverStats {
  std::string receiver;            // "0192:<orgnr>"
  int64_t queued = 0;              // messages not yet acknowledged by the receiver
  int64_t bytes = 0;               // their envelope bytes
  int64_t oldest_received_ms = 0;  // when the oldest of them was committed
  int64_t retried = 0;             // of them, messages with at least one failed delivery
  int64_t max_attempts = 0;        // the most failed deliveries of any of them
};

struct SenderNoticeStats {
  std::string sender;        // the organisation the notices are for
  int64_t pending = 0;       // status notices not yet acknowledged
  int64_t oldest_at_ms = 0;  // the oldest one's status time
};

struct StoreStats {
  int schema_version = 0;
  std::vector<ReceiverStats> receivers;    // by receiver, only those with queued messages
  std::vector<SenderNoticeStats> senders;  // by sender, only those with pending notices
  int64_t queued = 0;                      // totals over receivers
  int64_t bytes = 0;
  int64_t notices = 0;
  int64_t seen_ids = -1;  // message ids ever committed (-1: not counted)
  int64_t reports = -1;   // receiver reports applied (-1: not counted)
};

// Reads the statistics of the broker store open in `db`, in one read transaction (a consistent
// snapshot); `db` must not be inside a transaction. Only reads: works on a connection opened
// read-only, beside a running broker, as well as on the broker's own connection.
// Cost: queued messages and pending notices are grouped through their indexes (receiver, seq)
// and (org, notice_id) and are few in a healthy exchange; `count_history` also counts `seen`
// and `reports`, which grow by a row per message forever (a full scan of each: leave it off
// when scraping often).
Result<StoreStats> Stats(storage::Db& db, bool count_history = true);

// The schema version this release writes (the number of migrations).
int SchemaVersion();
// The migrations, one per version (docs/storage.md); tests build older stores from a prefix.
const std::vector<std::string>& Migrations();

// A read-only connection to an existing broker store of this release's schema version, for
// admin commands beside a running broker. kNotFound when there is no store at `path`;
// kUnsupported when its schema version is not the one this binary writes (start `bud-broker run`
// once to migrate an older one).
Result<std::unique_ptr<storage::Db>> OpenStoreReadOnly(const std::string& path);

// The main database file's size as SQLite counts it (page_count x page_size; not the WAL).
Result<int64_t> DbBytes(storage::Db& db);

// The quota the broker uses when store_max_bytes is 0: `in_use` (what the store holds now) plus
// the space free on the file system holding `path`, less kAutoQuotaReservePercent of that file
// system, never below `in_use`. So reservations of streamed uploads can never promise more disk
// than exists.
Result<int64_t> AutoQuota(const std::string& path, int64_t in_use, int64_t reserve_percent);

class Store {
 public:
  // `max_bytes` > 0 caps the database size (SQLITE_FULL beyond it, as on a full disk).
  // Counts the queued messages per receiver and per sender (one grouped scan) for the caps.
  static Result<std::unique_ptr<Store>> Open(const std::string& path, int64_t max_bytes = 0);
  // A new message beyond a cap is not stored: CommitBatch sets its `refused` (a duplicate of a
  // known id is still answered as one).
  void SetQueueCaps(const QueueCaps& caps) { caps_ = caps; }
  // Empty when one more message from `sender` to `receiver` fits the caps, else the reason.
  std::string QueueRoom(const std::string& sender, const std::string& receiver) const;
  // Caps the database at `max_bytes` from now on (never below what it holds: SQLite keeps the
  // current size then, so it cannot grow). The broker lowers it by the spool files' bytes so
  // that store_max_bytes covers both (docs/storage.md).
  Status LimitBytes(int64_t max_bytes);

  // One transaction for all items. On error nothing of the batch is stored.
  Status CommitBatch(std::vector<SubmitItem>& submits, std::vector<ReportItem>& reports,
                     const std::vector<NoticeAck>& acks = {});
  // Queued messages for `receiver` with seq > after_seq, oldest first.
  Result<std::vector<Queued>> NextFor(const std::string& receiver, int64_t after_seq, int limit);
  Result<std::optional<Queued>> BySeq(int64_t seq);
  Result<std::vector<Notice>> NoticesFor(const std::string& org, int64_t after_id, int limit);
  Result<int64_t> QueuedCount();
  // Counts one more failed delivery attempt (ack timeout, or the session dropped with it in
  // flight) for each message.
  Result<int64_t> AddAttempts(const std::vector<std::string>& message_ids);
  // Messages with at least max_attempts failed deliveries become FEIL for their sender (a
  // notice) and are deleted, as if the receiver had reported FEIL. Returns them.
  Result<std::vector<Expired>> FailExhausted(int64_t max_attempts, int64_t now_ms);
  // Deletes up to `limit` messages whose expiry is at or before now_ms, and stores a
  // LEVETID_UTLOPT notice for each sender, in one transaction. Returns the expired ones.
  Result<std::vector<Expired>> ExpireDue(int64_t now_ms, int limit);
  // Forgets up to `limit` message ids first seen before `before_ms` whose message is no longer
  // queued nor being uploaded: their `seen` row and their `reports` rows, in one transaction.
  // Returns how many ids went. The caller picks before_ms = now - retention, a retention longer
  // than any envelope's life: an id forgotten earlier could be submitted again and be taken as
  // a new message (docs/storage.md).
  Result<int64_t> PruneHistory(int64_t before_ms, int limit);
  storage::Db& db() { return *db_; }

 private:
  explicit Store(std::unique_ptr<storage::Db> db) : db_(std::move(db)) {}
  Status ApplyReport(ReportItem& r, int64_t now);
  Result<std::vector<Expired>> Conclude(
      storage::Stmt& query, MsgStatus status, int64_t now_ms,
      const std::function<std::string(const Expired&, int64_t)>& reason);
  // Queued messages by receiver and by sender, as committed; the pending_ maps hold the changes
  // of the transaction in progress and are applied when it commits.
  void ApplyPendingCounts();
  void CountQueued(const std::string& sender, const std::string& receiver, int64_t delta);
  QueueCaps caps_;
  std::map<std::string, int64_t> queued_by_receiver_, queued_by_sender_;
  std::map<std::string, int64_t> pending_by_receiver_, pending_by_sender_;
  std::unique_ptr<storage::Db> db_;
  // The next queue position handed out (above every seq ever used: sqlite_sequence and the
  // table). Chosen here so the seen row is written once, with its seq; a rolled-back batch only
  // leaves a gap.
  int64_t next_seq_ = 1;
  // After db_: destroyed (joined) before the connection it is attached to closes.
  std::unique_ptr<storage::Checkpointer> checkpointer_;
};

}  // namespace bud::broker
