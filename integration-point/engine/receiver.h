// The receiver: envelopes the broker delivers, small (one frame) and streamed, go through ONE
// validation pipeline, so the same bad envelope gets the same answer either way:
//
//   1. Screen: the message id is a lower-case UUID (else FEIL, nothing written); a message
//      recorded before gets its earlier answer again; while the DeferGate pauses, Defer.
//   2. Admit: the header's fields within bounds, the sender an organisation number, found in
//      the registry (unavailable: Defer), its signing certificate trusted (revocation unknown:
//      Defer).
//   3. The envelope's cryptography: crypto::Open for a small one; for a streamed one the head
//      (ChunkVerifier::Create) now and the chunks and the whole stream later (StreamReceiver).
//   4. CheckExpiry: the signed expiry has not passed.
//   Any refusal: Refuse records FEIL with the specific reason here and tells the sender
//   OutsideReason(why) after the turn's commit; every failure of the cryptography is one
//   uniform ENVELOPE_REJECTED (docs/protocol.md).
//
// A small envelope that passes is written to the inbox (InboxBatch, published before the turn's
// commit) or kept in the store for the HTTP API, and answered MOTTATT after the commit; the
// inbox folders the archive system removed become LEVERT (CheckInbox).
// Concurrency: the engine thread. Limitations: cryptography and lookups block it.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/crypto/certs.h"
#include "common/crypto/envelope.h"
#include "integration-point/config.h"
#include "integration-point/engine/clock.h"
#include "integration-point/engine/defer_gate.h"
#include "integration-point/engine/metrics.h"
#include "integration-point/engine/registry_lookup.h"
#include "integration-point/engine/report_queue.h"
#include "integration-point/engine/turn.h"
#include "integration-point/inbox.h"
#include "integration-point/message_state.h"
#include "integration-point/store/point_store.h"

namespace bud::ip {

// What the sender of a refused envelope is told, from the local reason ("CODE: message"): one
// uniform ENVELOPE_REJECTED for every failure of the envelope's cryptography, so no answer
// tells which check a forged byte tripped; other reasons as they are.
std::string OutsideReason(const std::string& local);

// The sender of an admitted envelope, with its trusted signing certificates.
struct AdmittedSender {
  Orgnr org;
  std::vector<crypto::Cert> certs;
  std::vector<X509*> cert_ptrs;  // borrow `certs`
};

class Receiver {
 public:
  struct Deps {  // every reference must outlive the receiver
    const Config& config;
    Orgnr me;
    IncomingStore& store;
    Turn& turn;
    InboxBatch& inbox;
    ReportQueue& reports;
    DeferGate& defer;
    RegistryLookup& registry;
    crypto::TrustedCertCache& certs;
    std::span<const crypto::DecryptionKey> keys;
    const Clock& clock;
    EngineMetrics& metrics;
    // Runs in the turn after a small message was recorded, with its decrypted payload (the
    // engine maps receipts, receipts.h); may be empty.
    std::function<void(const MessageRow&, const wire::Payload&)> on_kept = {};
  };
  explicit Receiver(Deps deps) : d_(std::move(deps)) {}
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  void OnDeliver(const wire::Deliver& deliver);
  // Archive systems took messages out of the inbox: INNKOMMENDE_LEVERT here, LEVERT reported.
  void CheckInbox();

  // The pipeline's steps, for both forms (StreamReceiver uses them too).
  // 1. True when the delivery goes on; false when it was answered here.
  bool Screen(const wire::Header& h);
  // 2. The sender when admitted; empty when refused or deferred (answered). `on_refused` runs
  // before a refusal is recorded (a stream drops its download and spool).
  std::optional<AdmittedSender> Admit(const wire::Header& h, const MessageRow& row,
                                      const std::function<void()>& on_refused = {});
  // 4. kInvalidArgument when the signed expiry has passed.
  Status CheckExpiry(const wire::Header& h) const;
  void Refuse(const MessageRow& row, const Status& why);
  // Recorded received (in the turn): MOTTATT after the commit, Defer when it fails.
  void Accepted(const std::string& message_id);
  void Defer(const std::string& message_id, const Status& why) { d_.defer.Defer(message_id, why); }
  // The store row of an incoming message from its header; fields longer than a receiver
  // stores are cut (Admit refuses such a header).
  static MessageRow IncomingRow(const wire::Header& h);
  const Config& config() const { return d_.config; }
  const Clock& clock() const { return d_.clock; }
  IncomingStore& store() { return d_.store; }
  EngineMetrics& metrics() { return d_.metrics; }

 private:
  // Writes an opened small envelope to the inbox (or keeps it for the API) and records it.
  void Keep(const crypto::Opened& opened, const AdmittedSender& sender, MessageRow row);

  Deps d_;
};

}  // namespace bud::ip
