// Chunked transfer of streamed envelopes on the broker (docs/large-messages.md).
//
// Upload: SubmitStream{head} makes an `uploads` row (head, next_chunk) and a spool file
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
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "broker/store.h"
#include "common/crypto/stream.h"
#include "common/status.h"
#include "common/storage/sqlite.h"
#include "proto/broker.pb.h"

namespace bud::broker {

// True when `envelope` is a streamed (version 2) head rather than a version 1 envelope.
bool IsStreamHead(const std::string& envelope);

// The reason of a RETRY_LATER when the broker cannot store a message (small or streamed), e.g.
// "broker could not store the message (DISK_FULL); retry later".
std::string RetryLaterReason(Code code);

// Deliver{envelope} for version 1, DeliverStream{head} for a streamed head.
wire::BrokerMessage DeliveryMessage(const std::string& envelope, uint32_t attempt);

class Streams {
 public:
  // `store_max_bytes` > 0: SQLite and the spool files together stay below it (a stream that
  // does not fit is answered RETRY_LATER before any chunk moves).
  Streams(storage::Db& db, std::string spool_dir, uint64_t max_payload, uint32_t window,
          int64_t store_max_bytes = 0);
  ~Streams();
  // Creates the spool folder, removes spool files no upload or queued message owns, and
  // truncates each upload's spool to its committed next_chunk.
  Status Init();

  // What to do with a SubmitStream from `org`: a reply to send now, or a SubmitItem for the
  // group commit (the upload was already complete, or the message is already known).
  struct Started {
    std::optional<wire::BrokerMessage> reply;
    std::optional<SubmitItem> item;
  };
  Started OnSubmitStream(const std::string& org, const std::string& head, int64_t default_ttl_ms);
  // A Chunk of an upload. A reply (REJECTED) when the chunk is refused for good.
  std::optional<wire::BrokerMessage> OnUploadChunk(const std::string& org, wire::Chunk& chunk);
  // Group commit of the uploads' chunks. `ack(org, message)` sends ChunkAck / SubmitReply
  // REJECTED; complete uploads are appended to `complete` (their rows go in FinishUploads once
  // the queue holds them).
  void Flush(const std::function<void(const std::string&, const wire::BrokerMessage&)>& send,
             std::vector<SubmitItem>* complete);
  // Removes the upload rows of messages the queue now holds.
  void FinishUploads(const std::vector<std::string>& ids);

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

 private:
  struct Upload {
    std::string org;
    std::string receiver;
    std::string head;
    int64_t expires_ms = 0;
    crypto::StreamLayout layout;
    int fd = -1;
    uint64_t committed = 0;  // durable next_chunk
    uint64_t received = 0;   // written, maybe not yet durable
    int64_t last_log_mono = 0;
    int64_t started_mono = 0;
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
  Upload* OpenUpload(const std::string& id);
  void CloseUpload(const std::string& id);
  Status CheckDigest(const std::string& id, const Upload& u);

  storage::Db& db_;
  std::string dir_;
  uint64_t max_payload_;
  uint32_t window_;
  std::map<std::string, Upload> uploads_;      // open uploads by message id
  std::map<std::string, Outgoing> outgoing_;   // deliveries in progress by message id
  std::string buf_;
  int64_t store_max_bytes_;
  uint64_t spool_bytes_ = 0;
};

}  // namespace bud::broker
