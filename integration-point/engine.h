// The integration point's engine: outbox -> store -> seal -> broker, and broker -> open -> inbox.
//
// Operation: one thread (Run) owns everything here: the store connection, the broker DEALER,
// the registry client and the inotify descriptor. Each loop turn: take in ready outbox folders,
// seal new messages, submit sealed ones (up to max_in_flight awaiting ACCEPTED), handle what the
// broker sent, and run the timers (heartbeats, submit timeouts, report resends, reconnects).
// Hand-overs: an outbox folder is removed only after the store's commit; a delivery is reported
// (acknowledged) only after the inbox folder and the store's commit are durable (the turn's
// inbox folders are published, with one syncfs, just before its commit); a message's
// envelope is dropped only after the broker's ACCEPTED.
// Batching: each loop turn's store writes are one transaction (Store::BeginTurn/CommitTurn);
// reports, status acks and outbox folder removals made during the turn wait in after_commit_
// and run only once that commit returned (dropped when it failed: reports are resent from
// pending_reports, the broker resends an unacknowledged notice, a folder is taken in again).
// Messages taken in through the HTTP API are handed to this thread (TakeIn) and stored in its
// turn, so the store has one writer for messages and a POST waits for one shared commit.
// Local trouble (Defer): when the inbox or the store cannot be written (disk full, I/O error),
// a delivery is answered Defer, not left unanswered (which the broker would count as a failed
// attempt); for a back-off (doubling, capped) every further delivery is deferred at once, then
// the next one probes again. See docs/protocol.md, "The receiver's state machine".
// Limitations: cryptography runs on this thread; registry lookups block it for at most the
// registry timeout.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/crypto/certs.h"
#include "common/crypto/envelope.h"
#include "common/metrics.h"
#include "integration-point/config.h"
#include "integration-point/inbox.h"
#include "integration-point/outbox.h"
#include "common/registry_client.h"
#include "integration-point/store.h"
#include "proto/broker.pb.h"

namespace bud::crypto {
struct StreamLayout;
}  // namespace bud::crypto

namespace bud::ip {

// What the engine counts, for /metrics (written by the engine thread, read by HTTP threads).
struct EngineMetrics {
  std::atomic<int64_t> broker_connected{0};
  std::atomic<int64_t> submits{0};        // envelopes sent to the broker (resubmits included)
  std::atomic<int64_t> accepted{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<int64_t> retry_later{0};
  std::atomic<int64_t> deliveries{0};     // envelopes the broker delivered to us
  std::atomic<int64_t> redeliveries{0};   // of which already received before
  std::atomic<int64_t> refused{0};        // of which refused (FEIL)
  std::atomic<int64_t> deferred{0};       // answered Defer (inbox or store cannot be written)
  std::atomic<int64_t> reconnects{0};
  metrics::Histogram submit_to_accept{metrics::LatencyBuckets()};
};

class Engine {
 public:
  Engine(const Config& config, zmq::context_t& ctx);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Loads keys, opens the store, connects. Run calls it when it was not called before.
  Status Start();
  // Runs until StopRequested(). Returns an error only for what prevents starting.
  Status Run();
  // Thread-safe: makes the loop look at the store now (new messages, reports to give).
  void Wake();
  // Thread-safe: Store::CreateOutgoing of `row` by the engine thread, in its next turn's
  // transaction together with whatever else that turn writes (other callers' messages
  // included), so the store has one writer. Returns once that commit is durable, or its
  // failure; kUnavailable when the engine has not answered within `timeout_ms` (the message
  // may still be taken in later) or is stopping.
  Status TakeIn(MessageRow row, int64_t timeout_ms);
  const EngineMetrics& metrics() const { return metrics_; }

 private:
  void ScanOutbox();
  void TakeFolder(const std::string& name);
  void CheckInbox();
  void SealNew();
  void SubmitSealed();
  void ConnectBroker();
  bool SendToBroker(const wire::ClientMessage& msg);
  void OnBrokerFrame(const zmq::message_t& frame);
  void OnSubmitReply(const wire::SubmitReply& reply);
  void OnDeliver(const wire::Deliver& deliver);
  // The store row of an incoming message, from its header (small and streamed alike).
  // Fields longer than the receiver stores are cut (CheckHeaderSizes refuses such a header).
  static MessageRow IncomingRow(const wire::Header& h);
  // kInvalidArgument when a header field is longer than a receiver stores and logs.
  static Status CheckHeaderSizes(const wire::Header& h);
  void OnStatusNotice(const wire::StatusNotice& notice);
  void Report(const std::string& message_id, MsgStatus status, const std::string& reason);
  // Local trouble: the inbox or the store cannot be written now (`why`). Answers the delivery of
  // `message_id` with Defer at once and starts (or continues) the back-off during which every
  // delivery is deferred unread.
  void DeferDelivery(const std::string& message_id, const Status& why);
  // True (and the delivery answered Defer) while the back-off runs.
  bool DeferringNow(const std::string& message_id);
  // A delivery was written and committed: the inbox takes messages again.
  void DeliveryStored();
  // A delivery recorded in the turn: its answer waits for the commit, and becomes Defer when
  // the commit fails.
  void AnswerAfterCommit(const std::string& message_id, MsgStatus status, const std::string& reason);
  void SendPendingReports(bool all);
  void Tick();
  // Stores what TakeIn callers handed over (in the turn); FinishTurn answers them.
  void TakeInHandedOver();
  // Answers every handed-over message with its result, or with `failure` when not ok.
  void AnswerTakeIns(const Status& failure);
  // Runs `action` now outside a turn, else after the turn's commit (see above).
  void AfterCommit(std::function<void()> action);
  // Commits the turn's writes, then runs what waited for them.
  void FinishTurn();

  // Streamed envelopes (stream_send.cc, stream_receive.cc; docs/large-messages.md).
  struct StreamUpload;
  struct StreamDownload;
  std::string SpoolDir() const;
  std::string SpoolSource(const std::string& message_id) const;  // taken-in attachments
  bool IsLargeFolder(const OutboxFolder& folder) const;
  Status TakeInLargeFolder(OutboxFolder& folder, const std::string& message_id);
  void RecoverSpool();
  // At start: removes inbox/.tmp (decrypted files of deliveries never committed; the broker
  // delivers them again) and spool/in-<id> files no download will resume (stream_receive.cc).
  void SweepReceiveLeftovers();
  // Seals a message taken in as a large folder; false when `m` is not one.
  bool SealLarge(const MessageRow& m, wire::Header header, wire::Payload manifest,
                 X509* receiver_cert, const std::function<void(const std::string&)>& fail);
  wire::ClientMessage SubmitMessage(std::string envelope);
  void OnStreamStart(const wire::StreamStart& start);
  void OnUploadAck(const wire::ChunkAck& ack);
  void EndUpload(const std::string& message_id, bool delete_spool);
  void OnDeliverStream(const wire::DeliverStream& ds);
  void OnStreamChunk(wire::Chunk& chunk);
  void RefuseStream(const MessageRow& row, const Status& why);
  void FinishDownload(const std::string& message_id);
  void PumpStreams();
  void ResetStreams();
  // Writes a transfer's progress (chunks done) to the store, in the turn's transaction, at
  // most once per kSaveProgressEveryMs unless `now`; `saved`/`saved_mono` track the last write.
  void SaveProgress(const std::string& message_id, const char* direction,
                    const crypto::StreamLayout& layout, uint64_t chunks, uint64_t& saved,
                    int64_t& saved_mono, bool now);

  const Config& config_;
  zmq::context_t& ctx_;
  Orgnr me_;
  crypto::PKey signing_key_, encryption_key_;
  crypto::Cert signing_cert_, encryption_cert_;
  crypto::PKey next_encryption_key_;    // rotation: empty when none
  crypto::Cert next_encryption_cert_;
  std::vector<crypto::DecryptionKey> decryption_keys_;  // borrow the keys above
  std::unique_ptr<crypto::TrustStore> trust_;
  std::unique_ptr<crypto::TrustedCertCache> certs_;  // registry certificates, verified
  std::unique_ptr<Store> store_;
  InboxBatch inbox_batch_;  // this turn's inbox folders, published before its commit
  std::optional<wire::CurveKeyPair> curve_;
  std::unique_ptr<RegistryClient> registry_;

  std::unique_ptr<zmq::socket_t> broker_;
  bool welcomed_ = false;
  int64_t last_heard_mono_ = 0;
  int64_t last_heartbeat_mono_ = 0;
  int64_t last_hello_mono_ = 0;
  int64_t hello_backoff_ms_ = 200;
  int64_t submit_pause_until_mono_ = 0;
  int64_t submit_backoff_ms_ = 500;
  std::map<std::string, int64_t> in_flight_;       // message id -> when submitted (mono)
  std::map<std::string, int64_t> report_sent_;     // "id/status" -> when sent (mono)
  int64_t defer_until_mono_ = 0;   // deliveries are deferred unread until then
  int64_t defer_backoff_ms_ = 0;   // the next pause; 0 when the last delivery was stored
  std::string defer_reason_;       // why, for the Defers sent during the pause
  // Deliveries answered after this turn's commit: id, and whether it was stored (MOTTATT).
  std::vector<std::pair<std::string, bool>> turn_deliveries_;
  std::vector<std::function<void()>> after_commit_;  // waits for the turn's commit
  struct HandOver {
    MessageRow row;
    Status result;
    bool done = false;
  };
  std::mutex take_mu_;  // guards the three below
  std::condition_variable take_cv_;
  std::vector<std::shared_ptr<HandOver>> take_queue_;  // waiting for the engine thread
  bool stopped_ = false;                               // Run has returned: answer at once
  std::vector<std::shared_ptr<HandOver>> taken_;  // engine thread: stored in this turn

  EngineMetrics metrics_;
  bool started_ = false;
  int wake_fd_ = -1;  // eventfd
  int inotify_fd_ = -1;
  bool outbox_dirty_ = true;
  bool outgoing_dirty_ = true;
  int64_t last_scan_mono_ = 0;
  int64_t last_seal_retry_mono_ = 0;
  int64_t last_reports_mono_ = 0;
  int64_t last_checkpoint_mono_ = 0;
  std::map<std::string, std::unique_ptr<StreamUpload>> uploads_;      // by message id
  std::map<std::string, std::unique_ptr<StreamDownload>> downloads_;  // by message id
};

}  // namespace bud::ip
