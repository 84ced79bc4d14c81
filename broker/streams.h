// Chunked transfer of streamed envelopes on the broker (docs/large-messages.md).
//
// Upload: SubmitStream{head} makes an upload row in the store (head, next_chunk) and a spool file
// <store dir>/spool/<message-id>; each Chunk is written at its fixed offset
// (StreamLayout::RecordOffset) when it is the next expected one (others are dropped: the sender
// resends from the next ChunkAck). Flush() is the group commit: fsync every spool that got
// chunks, then commit next_chunk for all of them in one transaction, then ChunkAck. When the last
// chunk is durable the spool's size and SHA-256 are checked against the head and the head goes
// into the ordinary queue (a SubmitItem whose envelope is the head): from there on the message is
// queued, delivered, counted, expired and deleted like any other, and its spool goes with it.
//
// Delivery: a queued head goes out as DeliverStream; the receiver answers StreamResume{next} and
// gets Chunk records from there on, at most `window` unacknowledged (ChunkAck).
//
// Memory: one record buffer per Pump call; nothing else grows with the payload.
//
// Chunks in the store: when the store keeps chunks (QueueStore::StoresChunks, PostgreSQL), there
// are no spool files: a Chunk's record is held until the group commit, which stores the records
// and next_chunk in one unit (QueueStore::CommitUploadChunks); the digest is checked over the
// stored chunks, deliveries read them back (ReadChunk), and they go with their message. So an
// upload or a delivery resumes on any broker process using the same database. spool_bytes()
// then counts the reservations of the uploads in progress only; what is stored counts in the
// store's own BytesUsed. What one turn holds is bounded by the frames it reads (max_batch_bytes).
//
// Several brokers on one store: the upload row is the truth, and what a broker holds in memory
// may be missing (the upload started on another broker after this one loaded the rows) or stale
// (the sender moved to another broker and back). So every SubmitStream first reads the row
// (SyncWithStore): an upload this broker does not hold is taken over at the row's next_chunk, a
// position another broker moved on is taken from the row, an upload whose row is gone (finished
// or dropped elsewhere) is forgotten here, and a leftover row of a message that is already
// queued goes. The sweep reads the row too before it drops an idle upload: one another broker
// moved on meanwhile is not idle. The session lease keeps one organisation's uploads on one
// broker at a time; the store's next_chunk never goes back, so a broker's last turn after the
// sender left cannot undo another's progress, and a turn whose upload row is gone stores no
// chunk (the upload is forgotten here).
//
// Limits (docs/operating.md, "Limits"): a head is not signature-checked here, so everything it
// makes the broker hold is capped and expires. At most max_uploads uploads are open, at most
// max_uploads_per_org of one sender (beyond: RETRY_LATER with the reason); the whole stream is
// reserved against the quota when the upload starts; an upload holds a spool file descriptor
// only while its chunks arrive (opened at the first chunk, closed after a group commit that
// brought it none), and none at all before its first chunk; an upload whose envelope expired, or
// that got no chunk for upload_idle_ms, is dropped with its row and spool file (SweepUploads).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_set>
#include <vector>

#include "broker/queue_store.h"
#include "common/crypto/stream.h"
#include "common/status.h"
#include "proto/broker.pb.h"

namespace bud::broker {

// True when `envelope` is a streamed (version 2) head rather than a version 1 envelope.
bool IsStreamHead(const std::string& envelope);

// The reason of a RETRY_LATER when the broker cannot store a message (small or streamed), e.g.
// "broker could not store the message (DISK_FULL); retry later".
std::string RetryLaterReason(Code code);

// Bounds on a submitted header, the same for small and streamed envelopes.
struct RoutingLimits {
  int64_t default_ttl_ms = 24 * 3600 * 1000;  // expires when the header has none
  int64_t max_ttl_ms = 90ll * 86400 * 1000;   // an envelope may expire at most this far ahead
};
// Header fields the broker stores and may log before anything is verified: at most this long.
inline constexpr size_t kMaxConversationIdBytes = 128;
inline constexpr size_t kMaxProcessBytes = 1024;  // process and document type, each

// What the broker routes a submitted envelope by, once its unverified header passed the checks
// every submit meets: message id a UUID, sender the authenticated organisation and
// sender_channel the channel of the submitting session (`mailbox`, a mailbox key,
// broker/queue_store.h), receiver_channel "" or a channel name, receiver an organisation number,
// conversation id, process and document type bounded in length and free of control characters,
// expiry in the future and at most max_ttl_ms ahead. kMalformed / kInvalidArgument with a reason
// for the submitter otherwise.
struct Routing {
  std::string receiver;  // "0192:<orgnr>"
  int64_t expires_ms = 0;
  std::string sender_channel;
  std::string receiver_channel;
};
Result<Routing> CheckRouting(const wire::Header& h, const std::string& mailbox, int64_t now_ms,
                             const RoutingLimits& limits);

// Deliver{envelope} for version 1, DeliverStream{head} for a streamed head.
wire::BrokerMessage DeliveryMessage(const std::string& envelope, uint32_t attempt);

struct StreamLimits {
  uint64_t max_payload = crypto::kDefaultMaxStreamPayload;  // plaintext bytes of one stream
  uint32_t window = 8;                                       // unacknowledged chunks
  // > 0: SQLite and the spool files together stay below it (a stream that does not fit is
  // answered RETRY_LATER before any chunk moves).
  int64_t store_max_bytes = 0;
  int64_t max_uploads = 256;
  int64_t max_uploads_per_org = 16;
  // Bytes the uploads in progress of one organisation may reserve; 0: a quarter of
  // store_max_bytes, at least one stream of max_payload (none when store_max_bytes is 0 too).
  int64_t max_upload_bytes_per_org = 0;
  int64_t upload_idle_ms = 3600 * 1000;
  RoutingLimits routing;
};

class Streams {
 public:
  // `store` holds the upload rows (and the chunks, when it StoresChunks; `spool_dir` may then be
  // "") and outlives this object; otherwise the chunks go to spool files in `spool_dir`.
  Streams(QueueStore& store, std::string spool_dir, const StreamLimits& limits);
  ~Streams();
  Streams(const Streams&) = delete;
  Streams& operator=(const Streams&) = delete;
  // Creates the spool folder; loads the upload rows, dropping those whose head no longer parses
  // (with their spool), and truncates each upload's spool to its committed next_chunk; removes
  // spool files no upload or queued message owns.
  Status Init();

  // What to do with a SubmitStream from the session of `mailbox` (a mailbox key): a reply to send
  // now, or a SubmitItem for the group commit (the upload was already complete, or the message is
  // already known).
  struct Started {
    std::optional<wire::BrokerMessage> reply;
    std::optional<SubmitItem> item;
  };
  // `admit(item)` is asked before a new upload starts: a non-empty answer is the reason of a
  // RETRY_LATER (e.g. the receiver's queue is full), so no chunk moves for a message the queue
  // would not take.
  Started OnSubmitStream(const std::string& mailbox, const std::string& head,
                         const std::function<std::string(const SubmitItem&)>& admit = {});
  // A Chunk of an upload from the session of `mailbox`. A reply (REJECTED) when the chunk is
  // refused for good.
  std::optional<wire::BrokerMessage> OnUploadChunk(const std::string& mailbox, wire::Chunk& chunk);
  // Group commit of the uploads' chunks. `send(mailbox key, message)` sends ChunkAck / SubmitReply
  // REJECTED; complete uploads are appended to `complete` (their rows go in FinishUploads once
  // the queue holds them).
  void Flush(const std::function<void(const std::string&, const wire::BrokerMessage&)>& send,
             std::vector<SubmitItem>* complete);
  // Removes the upload rows of messages the queue now holds. An upload handed over by Flush but
  // not finished (its commit failed or was refused) waits for its sender to submit the head
  // again, or for SweepUploads.
  void FinishUploads(const std::vector<std::string>& ids);
  // Drops every upload whose envelope expired at now_ms, or that got no chunk (nor its head)
  // for upload_idle_ms: its row, spool file and reservation go. Returns how many went.
  size_t SweepUploads(int64_t now_ms);
  // Uploads in progress, and of them those holding an open spool descriptor.
  size_t open_uploads() const { return uploads_.size(); }
  size_t open_upload_fds() const;

  // Delivery side.
  void OnResume(const std::string& rid, const std::string& org, const wire::StreamResume& r,
                const std::string& head);
  void OnDeliveryAck(const std::string& rid, const wire::ChunkAck& ack);
  // Sends what the windows allow; `send(rid, msg)` returns false when the session is gone.
  void Pump(const std::function<bool(const std::string&, const wire::BrokerMessage&)>& send);
  void DropRid(const std::string& rid);
  // The message left the queue (MOTTATT, FEIL, expiry): its spool goes.
  void Forget(const std::string& message_id);

  std::string SpoolPath(const std::string& message_id) const;
  // What the spool files hold or will hold: the whole stream of every upload in progress
  // (reserved when it starts, so no chunk runs over the quota) and of every queued streamed
  // message. A running total: counted once at Init (one stat per spool file), then kept.
  uint64_t spool_bytes() const { return spool_bytes_; }
  // The quota (store_max_bytes) once it is known; the broker computes the automatic one after
  // Init has counted the spool files.
  void set_store_max_bytes(int64_t bytes) { store_max_bytes_ = limits_.store_max_bytes = bytes; }

 private:
  struct Upload {
    std::string org;
    std::string sender_channel;  // from the head's header
    std::string receiver_channel;
    std::string receiver;
    std::string head;
    int64_t expires_ms = 0;
    crypto::StreamLayout layout;
    int fd = -1;             // open while chunks arrive (EnsureFd), else -1
    uint64_t committed = 0;  // durable next_chunk
    uint64_t received = 0;   // written, maybe not yet durable
    int64_t touched_ms = 0;  // wall time of its last head or chunk commit (idle expiry)
    bool handed = false;     // complete and handed to the queue; row goes in FinishUploads
    bool digest_checked = false;  // the complete spool matched the head's SHA-256
    int64_t last_log_mono = 0;
    int64_t started_mono = 0;
    // Chunks in the store (QueueStore::StoresChunks): records received since the last commit.
    std::vector<QueueStore::ChunkRecord> pending;
  };
  struct Outgoing {
    std::string rid;
    std::string org;
    crypto::StreamLayout layout;
    int fd = -1;
    uint64_t next_send = 0;
    uint64_t acked = 0;
    int64_t last_log_mono = 0;
  };
  // Opens the upload's spool (created if missing) and cuts it to the committed chunks.
  bool EnsureFd(const std::string& id, Upload& u);
  // Forgets an upload: closes its descriptor, deletes its row and its spool file, and gives its
  // reservation back.
  void DropUpload(const std::string& id, const std::string& why);
  void CloseUpload(const std::string& id);
  void LogRefusal(const std::string& org, const std::string& line);
  // Whether a queued message owns this id (true when the store cannot tell: keep its spool).
  bool IsQueued(const std::string& id);
  // Chunks in the store: brings this broker's entry for `id` in line with the store's upload
  // row (taken over, moved on, or forgotten; see the top of this file). The entry afterwards,
  // nullptr when there is no row, or the store's error (nothing changed then).
  Result<Upload*> SyncWithStore(const std::string& id);
  // Forgets an upload here without touching the store (its row belongs to another broker now,
  // or is gone), and gives its reservation back.
  void ForgetHere(const std::string& id);
  Status CheckDigest(const std::string& id, Upload& u);
  // The same over the chunks the store holds.
  Status CheckStoredDigest(const std::string& id, Upload& u);

  QueueStore& store_;
  // The store keeps the chunks (rows committed with the upload's position): no spool files.
  const bool chunks_in_store_;
  std::string dir_;
  StreamLimits limits_;
  uint64_t max_payload_;
  uint32_t window_;
  std::map<std::string, Upload> uploads_;      // every upload row, by message id
  std::map<std::string, Outgoing> outgoing_;   // deliveries in progress by message id
  std::string buf_;
  int64_t store_max_bytes_;
  uint64_t spool_bytes_ = 0;
  std::unordered_set<std::string> spooled_;  // ids with a spool file (created or found here)
  std::map<std::string, std::pair<int64_t, int64_t>> refusal_log_;  // org -> last line, suppressed
};

}  // namespace bud::broker
