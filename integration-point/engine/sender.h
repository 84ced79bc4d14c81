// The sender: outgoing messages from the store to the broker.
//
// Operation: SealNew looks each new message's receiver up, checks its encryption certificate
// and seals the message (small: one envelope; large: a stream into spool/out-<id>), marking it
// sealed in the turn; the loop commits before SubmitSealed sends, so a sealed envelope is
// durable before it leaves. SubmitSealed keeps at most max_in_flight submits unanswered; the
// broker's answer moves a message to SENDT (ACCEPTED), FEIL (REJECTED), or pauses every submit
// with doubling back-off (RETRY_LATER). A streamed message's chunks go from the broker's
// StreamStart on, at most `window` unacknowledged (Pump). Unanswered submits are resent after
// submit_timeout_ms (ExpireInFlight); a new broker session forgets all (Reset). The broker's
// StatusNotices for sent messages are recorded and acknowledged after the turn's commit.
// Concurrency: the engine thread. Limitations: cryptography and registry lookups block it.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "common/crypto/certs.h"
#include "common/crypto/envelope.h"
#include "common/crypto/stream.h"
#include "integration-point/config.h"
#include "integration-point/engine/broker_link.h"
#include "integration-point/engine/clock.h"
#include "integration-point/engine/metrics.h"
#include "integration-point/engine/registry_lookup.h"
#include "integration-point/engine/transfer_progress.h"
#include "integration-point/engine/turn.h"
#include "integration-point/message_state.h"
#include "integration-point/store/point_store.h"

namespace bud::ip {

class Sender {
 public:
  struct Deps {  // every reference must outlive the sender
    const Config& config;
    OutgoingStore& store;
    BrokerLink& link;
    Turn& turn;
    RegistryLookup& registry;
    crypto::TrustedCertCache& certs;
    crypto::SignerKeys signer;  // borrowed
    const Clock& clock;
    EngineMetrics& metrics;
  };
  explicit Sender(Deps deps);
  ~Sender();
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  void MarkDirty() { dirty_ = true; }
  // New messages to seal (marked dirty, or the 2 s retry timer ran out).
  bool Due() const;
  void SealNew();
  void SubmitSealed();
  void OnSubmitReply(const wire::SubmitReply& reply);
  // A status of a sent message (MOTTATT, LEVERT ...): recorded, acknowledged after the commit.
  void OnStatusNotice(const wire::StatusNotice& notice);
  void OnStreamStart(const wire::StreamStart& start);
  void OnUploadAck(const wire::ChunkAck& ack);
  // Sends the uploads' next chunks and stores their progress.
  void Pump();
  // Submits unanswered for submit_timeout_ms are forgotten (and submitted again).
  void ExpireInFlight();
  // A new broker session: nothing in flight, no upload running.
  void Reset();
  size_t in_flight() const { return in_flight_.size(); }

 private:
  struct Upload;
  enum class Sealed { kNext, kStopTurn };
  Sealed SealOne(MessageRow& m);
  // Seals a message whose attachments wait in spool/src/<id>/ as a stream.
  Sealed SealLarge(const MessageRow& m, wire::Header header, wire::Payload manifest,
                   X509* receiver_cert);
  void Fail(const MessageRow& m, const std::string& why);
  void OnAccepted(const wire::SubmitReply& r);
  void OnRetryLater(const wire::SubmitReply& r);
  // False when the upload must stop (its spool is short).
  bool SendChunks(const std::string& message_id, Upload& up);

  Deps d_;
  std::map<std::string, int64_t> in_flight_;                // message id -> when submitted (mono)
  std::map<std::string, std::unique_ptr<Upload>> uploads_;  // by message id
  int64_t pause_until_mono_ = 0;
  int64_t backoff_ms_ = 500;
  bool dirty_ = true;
  int64_t last_seal_mono_ = 0;
  int64_t last_revocation_warning_mono_ = INT64_MIN / 2;
};

}  // namespace bud::ip
