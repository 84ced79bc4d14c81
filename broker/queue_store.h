// The broker's store, as the broker's loop sees it: one interface, one implementation per engine
// (SqliteQueueStore, broker/sqlite_queue_store.h; schemas in docs/storage.md).
//
// What it keeps: queued envelopes, the dedup record (`seen`), the delivery reports already
// applied, the status notices waiting for their sender, and the streamed uploads in progress.
//
// Operation: a QueueStore is owned and used by one thread, the broker's event loop. CommitBatch
// writes a whole poll's worth of submits, reports and notice acks as one durable unit (group
// commit); the caller answers ACCEPTED only after it returned kDurable.
// Invariant: a message id is in `seen` from its first commit on, in the same unit as the message
// itself, so a resubmission is recognised whether the message is still queued or was delivered
// long ago, and an id used by one sender is refused to every other.
// Outcomes: a commit is durable, failed (nothing of it is stored) or unknown (the connection to a
// database server dropped while the commit was on its way, or the server cancelled the wait for
// its replicas: it may or may not have been stored). An embedded engine never answers unknown.
// The broker answers nothing to a batch whose outcome is unknown: the integration point submits
// again and the dedup makes that exact (docs/protocol.md, "Broker").
// Other writes (attempts, expiry, pruning, uploads) are each one unit too; an error means "not
// known to be done": each is safe to repeat, and the loop repeats them at its next sweep or on
// the peer's next message.
// Mailboxes: an integration point's session takes the deliveries and notices of one mailbox,
// (organisation, message channel), named by its key (MailboxKey: "0192:<orgnr>" without a
// channel, "0192:<orgnr>/<channel>" with one). The store keeps the organisation in the sender
// and receiver columns (dedup, caps and the "id used by another organisation" check are per
// organisation) and the channels in their own columns; every call below that names a session's
// queue, notices or lease takes the mailbox key.
// Sessions: a mailbox's session lives on one broker at a time, also when several broker
// processes share one store (PostgreSQL). The broker that holds it holds the organisation's
// lease, with a fencing epoch that grows at every take; deliveries are handed out only through
// ClaimDeliveries / ClaimRedelivery, which check the lease and epoch in the statement that reads
// them, so a broker whose lease was taken over hands out nothing more (docs/storage.md,
// "Sessions and leases"). An engine used by one process only (SQLite) keeps the leases in memory.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/status_machine.h"

namespace bud::broker {

// "0192:<orgnr>" for no channel, "0192:<orgnr>/<channel>" otherwise ('/' is in no channel name).
std::string MailboxKey(const std::string& org, const std::string& channel);
// The organisation and the channel of a mailbox key.
std::pair<std::string, std::string> SplitMailboxKey(const std::string& key);

struct SubmitItem {
  std::string message_id;
  std::string sender;    // "0192:<orgnr>", the authenticated submitter
  std::string receiver;  // "0192:<orgnr>"
  std::string envelope;
  int64_t expires_ms = 0;
  bool duplicate = false;  // out: already known
  bool conflict = false;   // out: the id is already used by another sender
  std::string refused;     // out: not stored (a queue is full): the reason of a RETRY_LATER
  std::string sender_channel;    // the submitting session's channel ("" = none)
  std::string receiver_channel;  // the receiver's mailbox channel the header names
  // A hint: the receiver's mailbox has a session on this broker, so its delivery follows soon
  // (the SQLite store then keeps the envelope in memory for it; broker/fresh_envelopes.h).
  bool receiver_online = false;
};

// Queued messages one receiver, and one sender, may have at the broker (0: no cap).
struct QueueCaps {
  int64_t per_receiver = 0;
  int64_t per_sender = 0;
};

struct ReportItem {
  std::string reporter;  // the receiving organisation
  std::string reporter_channel;  // and the channel of its session: the message's mailbox
  std::string message_id;
  MsgStatus status = wire::STATUS_UNSPECIFIED;
  std::string reason;
  int64_t at_ms = 0;
  Status result;                  // out
  std::string notify_mailbox;     // out: the sender's mailbox key, when a notice was created
};

// A sender's acknowledgement of a status notice: the notice is deleted if it belongs to the
// mailbox `org` (a mailbox key).
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
  std::string sender_mailbox;  // keys: whose notice it made, whose queue it left
  std::string receiver_mailbox;
};

// A streamed upload in progress (broker/streams.h): its head and how many chunks are durable.
struct UploadRow {
  std::string message_id;
  std::string sender;
  std::string receiver;
  std::string head;
  uint64_t next_chunk = 0;
  int64_t expires_ms = 0;
};

// What is waiting in a broker store, for `bud-broker stats` and the broker's /metrics.
struct ReceiverStats {
  std::string receiver;            // "0192:<orgnr>"
  std::string channel;             // the receiver's message channel ("" = none)
  int64_t queued = 0;              // messages not yet acknowledged by the receiver
  int64_t bytes = 0;               // their envelope bytes
  int64_t oldest_received_ms = 0;  // when the oldest of them was committed
  int64_t retried = 0;             // of them, messages with at least one failed delivery
  int64_t max_attempts = 0;        // the most failed deliveries of any of them
};

struct SenderNoticeStats {
  std::string sender;        // the organisation the notices are for
  std::string channel;       // and its message channel ("" = none)
  int64_t pending = 0;       // status notices not yet acknowledged
  int64_t oldest_at_ms = 0;  // the oldest one's status time
};

// A mailbox's live session as the store knows it (several brokers on PostgreSQL).
struct SessionStats {
  std::string org;     // the mailbox key
  std::string holder;  // the broker's id
  int64_t expires_ms = 0;
};

struct StoreStats {
  int schema_version = 0;
  // Live sessions by organisation, when the store keeps them (PostgreSQL: the lease table);
  // SQLite's live in the broker's memory (sessions_known false: see its /metrics).
  bool sessions_known = false;
  std::vector<SessionStats> sessions;
  std::vector<ReceiverStats> receivers;    // by receiver and channel, those with queued messages
  std::vector<SenderNoticeStats> senders;  // by sender and channel, those with pending notices
  int64_t queued = 0;                      // totals over receivers
  int64_t bytes = 0;
  int64_t notices = 0;
  int64_t seen_ids = -1;  // message ids ever committed (-1: not counted)
  int64_t reports = -1;   // receiver reports applied (-1: not counted)
  int64_t uploads = 0;    // streamed uploads in progress
};

// A broker's lease on a mailbox's session.
struct SessionLease {
  int64_t epoch = 0;            // the fencing epoch: grows with every TakeSession of the org
  std::string previous_holder;  // the broker whose live lease was taken over ("" when none)
};

// A lease as the holder knows it: which broker (a fresh id per process start) and which epoch.
struct LeaseRef {
  std::string org;  // the mailbox key
  std::string holder;
  int64_t epoch = 0;
};

// How a commit ended. `status` is ok exactly when the outcome is kDurable, and otherwise says why.
enum class CommitOutcome {
  kDurable,  // stored, and survives a crash (of the process, the machine, a failover)
  kFailed,   // nothing of it is stored
  kUnknown,  // it may or may not be stored; only a database server's store answers this
};
const char* CommitOutcomeName(CommitOutcome outcome);

struct [[nodiscard]] CommitResult {
  CommitOutcome outcome = CommitOutcome::kDurable;
  Status status;
  bool durable() const { return outcome == CommitOutcome::kDurable; }
  bool ok() const { return durable(); }
  // kDurable for an ok status, kFailed otherwise.
  static CommitResult From(Status s) {
    CommitOutcome o = s.ok() ? CommitOutcome::kDurable : CommitOutcome::kFailed;
    return {o, std::move(s)};
  }
};

// The embedded engine's index of message ids (broker/seen_index.h), as the broker's /metrics shows
// it: ids of recent commits held in memory until a merge writes them to the index file, merges
// done and failed (a failing merge keeps ids in memory until submits are refused), lookups that
// read the file, whether its filter is built, and merges of the file's runs level by level.
struct IdIndexStats {
  int64_t in_memory = 0;
  int64_t merges = 0;
  int64_t merge_failures = 0;
  int64_t file_reads = 0;
  bool filter_ready = false;
  int64_t level_merges = 0;
};

// The read side, all an admin command or the /metrics endpoint needs. Works on a store opened
// read-only beside a running broker as well as on the broker's own.
class QueueStoreReader {
 public:
  virtual ~QueueStoreReader() = default;
  // The statistics in one read transaction (a consistent snapshot). Cost: queued messages and
  // pending notices are grouped through their indexes and are few in a healthy exchange;
  // `count_history` also counts `seen` and `reports`, which grow by a row per message until
  // retention prunes them (a full scan of each: leave it off when scraping often).
  virtual Result<StoreStats> Stats(bool count_history = true) = 0;
  virtual Result<int64_t> QueuedCount() = 0;
  // The bytes the store occupies, as its engine counts them (what store_max_bytes caps).
  virtual Result<int64_t> BytesUsed() = 0;
  // For people: the engine and where the store is ("SQLite file /var/lib/...").
  virtual std::string Describe() const = 0;
  // Ok when the store is reachable and takes writes (for /health); otherwise why not.
  virtual Status CheckWritable() = 0;
};

class QueueStore : public QueueStoreReader {
 public:
  // A new message beyond a cap is not stored: CommitBatch sets its `refused` (a duplicate of a
  // known id is still answered as one).
  virtual void SetQueueCaps(const QueueCaps& caps) = 0;
  // Empty when one more message from `sender` to `receiver` fits the caps, else the reason.
  virtual std::string QueueRoom(const std::string& sender, const std::string& receiver) const = 0;
  // Caps the store at `max_bytes` from now on (writes beyond it fail as on a full disk, kDiskFull).
  // The broker lowers it by the spool files' bytes so that store_max_bytes covers both.
  virtual Status LimitBytes(int64_t max_bytes) = 0;

  // One durable unit for all items: each submit is stored (a new seq), or found a duplicate /
  // a conflict with another sender, or refused by a cap; each report is applied (the message
  // leaves the queue on MOTTATT or a final status, and its sender gets a notice the first time
  // that status is reported) or refused in its `result`; each ack deletes its sender's notice.
  // On kFailed nothing of the batch is stored and the out fields mean nothing.
  virtual CommitResult CommitBatch(std::vector<SubmitItem>& submits,
                                   std::vector<ReportItem>& reports,
                                   const std::vector<NoticeAck>& acks = {}) = 0;
  // Gives `holder` the lease of mailbox `org`'s session (a mailbox key) for lease_ms, with a new
  // epoch, taking it over from any other holder (a new Hello replaces the session wherever it
  // lived).
  virtual Result<SessionLease> TakeSession(const std::string& org, const std::string& holder,
                                           int64_t lease_ms) = 0;
  // Extends every lease `holder` still holds by lease_ms and returns them (mailbox key, epoch); a
  // lease missing from the answer, or with another epoch, was taken over.
  virtual Result<std::vector<std::pair<std::string, int64_t>>> RenewSessions(
      const std::string& holder, int64_t lease_ms) = 0;
  // Gives the lease up (nothing when it is no longer this holder's with this epoch).
  virtual Status ReleaseSession(const LeaseRef& lease) = 0;
  // Up to `limit` queued messages for the mailbox lease.org, oldest first, leaving out the seqs in
  // `handed_out` (those being delivered): only while `lease` is current, checked in the same
  // statement; kConflict when it is not (taken over, released). Unlike a cursor, this finds a
  // message whose seq is below ones already handed out (committed later by another broker).
  virtual Result<std::vector<Queued>> ClaimDeliveries(const LeaseRef& lease,
                                                      const std::vector<int64_t>& handed_out,
                                                      int limit) = 0;
  // A delivery to repeat (its ack timed out): counts one more failed attempt and returns the
  // message, only while `lease` is current (kConflict otherwise), in one statement; nullopt when
  // it is no longer queued.
  virtual Result<std::optional<Queued>> ClaimRedelivery(const LeaseRef& lease, int64_t seq) = 0;

  // Wake-ups: other broker processes writing the same store commit messages and notices for
  // sessions that live here. WakeFd is a descriptor to poll for readability (-1: none now);
  // TakeWakeups returns the mailbox keys named since the last call (receivers with new
  // messages, senders with new notices). An engine used by one process has none (Shared false).
  virtual bool Shared() const { return false; }
  virtual int WakeFd() const { return -1; }
  virtual Result<std::vector<std::string>> TakeWakeups() { return std::vector<std::string>(); }

  // Queued messages for the mailbox `receiver` (a key) with seq > after_seq, oldest first.
  virtual Result<std::vector<Queued>> NextFor(const std::string& receiver, int64_t after_seq,
                                              int limit) = 0;
  virtual Result<std::optional<Queued>> BySeq(int64_t seq) = 0;
  // Notices for the mailbox `org` (a key) with notice_id > after_id, oldest first.
  virtual Result<std::vector<Notice>> NoticesFor(const std::string& org, int64_t after_id,
                                                 int limit) = 0;
  // Counts one more failed delivery attempt (ack timeout, or the session dropped with it in
  // flight) for each queued message.
  virtual Result<int64_t> AddAttempts(const std::vector<std::string>& message_ids) = 0;
  // The failed delivery attempts of a queued message (kNotFound when it is not queued).
  virtual Result<int64_t> Attempts(const std::string& message_id) = 0;
  // Messages with at least max_attempts failed deliveries become FEIL for their sender (a
  // notice) and are deleted, as if the receiver had reported FEIL. Returns them.
  virtual Result<std::vector<Expired>> FailExhausted(int64_t max_attempts, int64_t now_ms) = 0;
  // Deletes up to `limit` messages whose expiry is at or before now_ms, and stores a
  // LEVETID_UTLOPT notice for each sender, in one unit. Returns the expired ones.
  virtual Result<std::vector<Expired>> ExpireDue(int64_t now_ms, int limit) = 0;
  // Forgets up to `limit` message ids first seen before `before_ms` whose message is no longer
  // queued nor being uploaded: their `seen` row and their reports, in one unit. Returns how many
  // ids went. The caller picks before_ms = now - retention, a retention longer than any
  // envelope's life: an id forgotten earlier could be submitted again and be taken as a new
  // message (docs/storage.md).
  virtual Result<int64_t> PruneHistory(int64_t before_ms, int limit) = 0;

  // Whether a message id was ever committed (and not yet pruned).
  virtual Result<bool> IsKnown(const std::string& message_id) = 0;
  // Whether a message with this id is queued now.
  virtual Result<bool> IsQueued(const std::string& message_id) = 0;

  // Streamed uploads in progress (broker/streams.h). The chunks themselves are not here.
  virtual Result<std::vector<UploadRow>> LoadUploads() = 0;
  // The upload row of one message, or nullopt when none is in progress. (The default reads
  // every row; an engine shared by several brokers answers with one query, since each broker
  // asks at every SubmitStream.)
  virtual Result<std::optional<UploadRow>> FindUpload(const std::string& message_id);
  // kAlreadyExists when an upload with this id is in progress.
  virtual Status InsertUpload(const UploadRow& row) = 0;
  // Sets next_chunk of each upload (id, next_chunk), in one unit.
  virtual Status SetUploadPositions(
      const std::vector<std::pair<std::string, uint64_t>>& positions) = 0;
  // Deletes the uploads' rows (ids not in progress are ignored), in one unit.
  virtual Status DeleteUploads(const std::vector<std::string>& message_ids) = 0;

  // The chunks of streamed messages. An engine that keeps them (StoresChunks) stores each
  // chunk's record as a row committed with its upload's position, so an upload or a delivery
  // resumes on any broker process using the same database; otherwise they are spool files
  // beside the broker (broker/streams.h) and the three calls below answer kUnsupported.
  virtual bool StoresChunks() const { return false; }
  struct ChunkRecord {
    uint64_t index = 0;
    std::string record;
  };
  struct UploadProgress {
    std::string message_id;
    uint64_t next_chunk = 0;           // the upload's position once these chunks are stored
    std::vector<ChunkRecord> chunks;   // the records from the old position up to next_chunk
  };
  // One unit: every chunk's row and every upload's next_chunk. An upload's next_chunk never goes
  // back (a broker that was left behind cannot undo another's progress; the chunks below the
  // position are the same bytes whoever stored them). Returns the ids whose upload row is gone
  // (finished or dropped by another broker): nothing is stored for them, so a broker's late
  // turn leaves no chunk that neither an upload nor a queued message owns.
  virtual Result<std::vector<std::string>> CommitUploadChunks(
      const std::vector<UploadProgress>& progress);
  // The record of chunk `index` of an upload or a queued streamed message (kNotFound if absent).
  virtual Result<std::string> ReadChunk(const std::string& message_id, uint64_t index);
  // An upload given up: its row and its chunks go, in one unit. (DeleteUploads removes rows
  // only: a completed upload's chunks belong to the queued message, and go when it leaves the
  // queue.)
  virtual Status DropUploads(const std::vector<std::string>& message_ids);

  // Housekeeping the loop runs every checkpoint_ms (SQLite: checkpoint and truncate the WAL).
  virtual Status Maintain() = 0;
  // The id index's figures, for an engine that keeps one beside its database (SQLite).
  virtual std::optional<IdIndexStats> IdIndex() const { return std::nullopt; }
};

// The quota the broker uses when store_max_bytes is 0 and its store is a local file: `in_use`
// (what the store holds now) plus the space free on the file system holding `path`, less
// `reserve_percent` of that file system, never below `in_use`. So reservations of streamed
// uploads can never promise more disk than exists.
Result<int64_t> AutoQuota(const std::string& path, int64_t in_use, int64_t reserve_percent);

}  // namespace bud::broker
