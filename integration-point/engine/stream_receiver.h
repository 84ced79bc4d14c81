// Streamed deliveries (docs/large-messages.md): the head goes through the Receiver's pipeline
// (Screen, Admit, the head's cryptography, CheckExpiry) before any chunk moves; each record is
// checked (ChunkVerifier) and appended to spool/in-<id>, which is fsynced before it is
// acknowledged (one fsync and one ChunkAck per download per loop turn: Pump); only when the
// whole stream's digest and signature verify (OpenStream) is it decrypted into inbox/.tmp/<id>/
// and renamed into place (with incoming.delivery = "api": api-in/.tmp/<id>/ -> api-in/<id>/,
// listed in the store for the HTTP API). A download resumes from what its spool holds, after
// a reconnect or a restart.
// Concurrency: the engine thread.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>

#include "common/crypto/stream.h"
#include "integration-point/engine/broker_link.h"
#include "integration-point/engine/receiver.h"

namespace bud::ip {

class StreamReceiver {
 public:
  // Every reference must outlive the stream receiver.
  StreamReceiver(Receiver& receiver, BrokerLink& link, Orgnr me, const crypto::TrustStore& trust,
                 std::span<const crypto::DecryptionKey> keys);
  ~StreamReceiver();
  StreamReceiver(const StreamReceiver&) = delete;
  StreamReceiver& operator=(const StreamReceiver&) = delete;

  void OnDeliverStream(const wire::DeliverStream& ds);
  void OnChunk(const wire::Chunk& chunk);
  // fsync and ChunkAck of what arrived this turn; progress to the store.
  void Pump();
  // A new broker session: downloads are rebuilt from their spools when delivered again.
  void Reset();
  size_t downloads() const { return downloads_.size(); }

 private:
  struct Download;
  // A new download of `ds` (admitted, its head verified, resumed from the spool); empty when
  // refused or deferred (answered).
  std::unique_ptr<Download> Begin(const wire::DeliverStream& ds, const wire::Header& h,
                                  const MessageRow& row);
  // Feeds what the spool already holds through the verifier; cuts off the rest.
  Status ResumeFromSpool(Download& d);
  void AskFor(const std::string& message_id, Download& d, const std::string& why);
  void Finish(const std::string& message_id);
  // Opens the verified stream into its final folder; empty with the refusal or Defer answered.
  std::optional<crypto::OpenedStream> OpenIntoPlace(const std::string& message_id, Download& d,
                                                    std::string& api_files);
  void Refuse(const MessageRow& row, const Status& why);
  void DeferAndDrop(const std::string& message_id, const Status& why);
  crypto::StreamOptions Options() const;
  std::string SpoolPath(const std::string& message_id) const;

  Receiver& receiver_;
  BrokerLink& link_;
  const Orgnr me_;
  const crypto::TrustStore& trust_;
  std::span<const crypto::DecryptionKey> keys_;
  std::map<std::string, std::unique_ptr<Download>> downloads_;  // by message id
};

}  // namespace bud::ip
