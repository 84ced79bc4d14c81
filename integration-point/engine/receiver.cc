// See receiver.h.
#include "integration-point/engine/receiver.h"

#include <fmt/format.h>

#include "common/fs.h"
#include "common/log.h"
#include "common/message_channel.h"
#include "common/payload.h"
#include "common/uuid.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }

constexpr std::string_view kEnvelopeRejected =
    "ENVELOPE_REJECTED: the receiver could not verify and decrypt the envelope";

// Bounds of the header fields a receiver stores and logs (a signed header can still carry
// megabytes in them: the signature says who wrote it, not that it is sane).
constexpr size_t kMaxPartyBytes = 64;
constexpr size_t kMaxIdBytes = 128;
constexpr size_t kMaxNameBytes = 1024;  // process, document type

// kInvalidArgument when a header field is longer than a receiver stores and logs.
Status CheckHeaderSizes(const wire::Header& h) {
  struct Field {
    const char* name;
    const std::string& value;
    size_t max;
  };
  for (const Field& f : {Field{"sender", h.sender(), kMaxPartyBytes},
                         Field{"receiver", h.receiver(), kMaxPartyBytes},
                         Field{"conversation id", h.conversation_id(), kMaxIdBytes},
                         Field{"process", h.process(), kMaxNameBytes},
                         Field{"document type", h.document_type(), kMaxNameBytes}}) {
    if (f.value.size() > f.max) {
      return Status(Code::kInvalidArgument,
                    fmt::format("the header's {} is {} bytes, more than the {} allowed", f.name,
                                f.value.size(), f.max));
    }
  }
  return Status::Ok();
}

// Message channels (docs/protocol.md): both are names or empty, and the message is for this
// point's channel. The broker delivers no other; this is defence in depth.
Status CheckChannels(const wire::Header& h, const std::string& mine) {
  BUD_RETURN_IF_ERROR(CheckChannel(h.sender_channel(), "the header's sender_channel"));
  BUD_RETURN_IF_ERROR(CheckChannel(h.receiver_channel(), "the header's receiver_channel"));
  if (h.receiver_channel() != mine) {
    auto shown = [](const std::string& c) {
      return c.empty() ? std::string("none") : "'" + c + "'";
    };
    return Status(Code::kInvalidArgument,
                  fmt::format("the message is for message channel {} of {}, but this integration "
                              "point's channel is {}",
                              shown(h.receiver_channel()), h.receiver().substr(0, kMaxPartyBytes),
                              shown(mine)));
  }
  return Status::Ok();
}

bool IsLowerUuid(const std::string& id) {
  return IsUuid(id) && id.find_first_of("ABCDEF") == std::string::npos;
}
}  // namespace

std::string OutsideReason(const std::string& local) {
  for (Code c : {Code::kMalformed, Code::kBadSignature, Code::kDigestMismatch, Code::kDecryptFailed,
                 Code::kPayloadMismatch, Code::kUnsupported}) {
    if (local.starts_with(std::string(CodeName(c)) + ":")) return std::string(kEnvelopeRejected);
  }
  return local;
}

MessageRow Receiver::IncomingRow(const wire::Header& h) {
  MessageRow row;
  row.message_id = h.message_id();
  row.conversation_id = h.conversation_id().substr(0, kMaxIdBytes);
  row.sender = h.sender().substr(0, kMaxPartyBytes);
  row.receiver = h.receiver().substr(0, kMaxPartyBytes);
  row.process = h.process().substr(0, kMaxNameBytes);
  row.document_type = h.document_type().substr(0, kMaxNameBytes);
  row.created_ms = h.created_unix_ms();
  row.expires_ms = h.expires_unix_ms();
  row.sender_channel = h.sender_channel().substr(0, kMaxChannelBytes);  // checked in Admit
  return row;
}

bool Receiver::Screen(const wire::Header& h) {
  const std::string& id = h.message_id();
  // The id names the inbox folder: nothing but a lower-case UUID may get near a path. Without
  // one nothing is recorded; the broker is told FEIL so that it stops delivering it.
  if (!IsLowerUuid(id)) {
    Log()->error(
        "broker delivered an envelope whose message id is not a lower-case UUID; "
        "refused without writing anything (sender claims {})",
        h.sender().substr(0, 20));
    d_.reports.Report(id, wire::FEIL, std::string(kEnvelopeRejected));  // ids only compared there
    return false;
  }
  auto existing = d_.store.Get(id);
  if (!existing.ok()) {
    Log()->error("message {}: store: {}", id, existing.status().ToString());
    return false;
  }
  if (existing->has_value()) {
    // Delivered before: answer as before, never write it twice.
    const bool failed = (*existing)->status == "FEIL";
    std::string reason;
    if (failed) {
      auto hist = d_.store.History(id);
      if (hist.ok() && !hist->empty()) reason = OutsideReason(hist->back().reason);
    }
    d_.metrics.redeliveries.fetch_add(1, std::memory_order_relaxed);
    Log()->info("message {} from {} delivered again; already {}", id, h.sender(),
                (*existing)->status);
    d_.reports.Report(id, failed ? wire::FEIL : wire::MOTTATT, reason);
    return false;
  }
  return !d_.defer.DeferringNow(id);
}

std::optional<AdmittedSender> Receiver::Admit(const wire::Header& h, const MessageRow& row,
                                              const std::function<void()>& on_refused) {
  const std::string& id = h.message_id();
  auto refuse = [&](const Status& why) {
    if (on_refused) on_refused();
    Refuse(row, why);
  };
  if (Status sizes = CheckHeaderSizes(h); !sizes.ok()) {
    refuse(sizes);
    return std::nullopt;
  }
  if (Status channel = CheckChannels(h, d_.config.broker.message_channel); !channel.ok()) {
    refuse(channel);
    return std::nullopt;
  }
  auto sender = Orgnr::Parse(h.sender());
  if (!sender.ok()) {
    refuse(sender.status());
    return std::nullopt;
  }
  auto entry = d_.registry.Lookup(*sender);
  if (!entry.ok()) {
    if (entry.status().code() == Code::kUnavailable) {
      Log()->warn("message {}: cannot check the sender now ({}); deferred", id,
                  entry.status().message());
      Defer(id, entry.status());
    } else {
      refuse(entry.status());
    }
    return std::nullopt;
  }
  auto certs = d_.certs.Get(entry->signing_cert_pem(), entry->next_signing_cert_pem(),
                            crypto::KeyPurpose::kSigning, *sender, d_.clock.MonoMs());
  if (!certs.ok() && certs.status().code() == Code::kCertRevocationUnknown) {
    // Fail closed without a FEIL: deferred (no attempt counted at the broker), delivered again
    // by when keys.crl_dir may hold a current CRL. A listed certificate (CERT_REVOKED) is refused
    // below.
    Log()->warn("message {} from {}: not accepted until revocation can be checked ({}); deferred",
                id, h.sender(), certs.status().message());
    Defer(id, certs.status());
    return std::nullopt;
  }
  if (!certs.ok()) {
    refuse(certs.status().Context("sender's signing certificate"));
    return std::nullopt;
  }
  AdmittedSender admitted{*sender, std::move(*certs), {}};
  for (const auto& c : admitted.certs) admitted.cert_ptrs.push_back(c.get());
  return admitted;
}

Status Receiver::CheckExpiry(const wire::Header& h) const {
  // Signed, so the expiry is the sender's own: a replay of an old envelope ends here.
  if (h.expires_unix_ms() > 0 && h.expires_unix_ms() < d_.clock.NowMs()) {
    return Status(Code::kInvalidArgument,
                  fmt::format("envelope expired at {}", FormatTime(h.expires_unix_ms())));
  }
  return Status::Ok();
}

void Receiver::Refuse(const MessageRow& row, const Status& why) {
  // The specific code stays in this log and this store; the sender gets OutsideReason().
  const std::string outside = OutsideReason(why.ToString());
  d_.metrics.refused.fetch_add(1, std::memory_order_relaxed);
  Log()->warn("message {} from {} refused (FEIL): {}", row.message_id, row.sender, why.ToString());
  Status st = d_.store.RecordIncoming(row, wire::FEIL, why.ToString(), wire::FEIL, outside,
                                      d_.clock.NowMs());
  if (!st.ok()) return Defer(row.message_id, st.Context("recording FEIL"));
  d_.reports.Report(row.message_id, wire::FEIL, outside);
  d_.turn.OnRollback([this, id = row.message_id](const Status& st) { Defer(id, st); });
}

void Receiver::Accepted(const std::string& message_id) {
  d_.reports.Report(message_id, wire::MOTTATT, "");
  d_.turn.AfterCommit([this] { d_.defer.Stored(); });
  d_.turn.OnRollback([this, message_id](const Status& st) { Defer(message_id, st); });
}

void Receiver::OnDeliver(const wire::Deliver& deliver) {
  d_.metrics.deliveries.fetch_add(1, std::memory_order_relaxed);
  auto env = crypto::ParseEnvelope(deliver.envelope());
  auto header = env.ok() ? crypto::ParseHeaderUnverified(*env) : Result<wire::Header>(env.status());
  if (!header.ok()) {
    Log()->error("broker delivered an envelope that cannot be parsed: {}",
                 header.status().ToString());
    return;
  }
  const wire::Header& h = *header;
  if (!Screen(h)) return;
  MessageRow row = IncomingRow(h);
  auto sender = Admit(h, row);
  if (!sender) return;
  auto opened = crypto::Open(deliver.envelope(), d_.me, sender->org, sender->cert_ptrs, d_.keys);
  if (!opened.ok()) return Refuse(row, opened.status());
  Status valid = ValidatePayload(opened->payload, static_cast<size_t>(d_.config.max_attachments));
  if (!valid.ok()) return Refuse(row, valid);
  if (Status fresh = CheckExpiry(h); !fresh.ok()) return Refuse(row, fresh);
  Keep(*opened, *sender, std::move(row));
}

void Receiver::Keep(const crypto::Opened& opened, const AdmittedSender& sender, MessageRow row) {
  const std::string& id = row.message_id;
  const int64_t now = d_.clock.NowMs();
  row.title = opened.payload.title();
  if (d_.config.delivery_mode() == DeliveryMode::kApi) {
    // Kept in the store (payload included) until the archive system peeks, pops and deletes it.
    row.state = WorkState::kApi;
    opened.payload.SerializeToString(&row.payload);
    Status kept =
        d_.store.RecordIncoming(row, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", now);
    if (!kept.ok()) return Defer(id, kept.Context("storing it for the API"));
    Log()->info(
        "message {} from {} kept for the HTTP API ({} attachment(s); "
        "INNKOMMENDE_MOTTATT)",
        id, row.sender, opened.payload.attachments_size());
    if (d_.on_kept) d_.on_kept(row, opened.payload);
    return Accepted(id);
  }
  std::string subject;
  for (X509* c : sender.cert_ptrs) {
    if (crypto::Hex(crypto::CertFingerprint(c)) == opened.signer_fingerprint) {
      subject = crypto::SubjectOf(c);
    }
  }
  SignerInfo signer{subject, sender.org.digits(), opened.signer_fingerprint};
  Status written = d_.inbox.Stage(opened, signer, now);
  // Published before the turn's commit (Turn::Finish), at once when there is no turn.
  if (written.ok() && !d_.turn.open()) written = d_.inbox.Publish();
  if (!written.ok()) return Defer(id, written.Context("cannot write the inbox"));
  Status recorded =
      d_.store.RecordIncoming(row, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", now);
  if (!recorded.ok()) return Defer(id, recorded.Context("recording it in the store"));
  Log()->info("message {} from {} written to inbox ({} attachment(s); INNKOMMENDE_MOTTATT)", id,
              row.sender, opened.payload.attachments_size());
  if (d_.on_kept) d_.on_kept(row, opened.payload);
  Accepted(id);
}

void Receiver::CheckInbox() {
  // Only messages written to the inbox folder (state done); those kept for the API (state api)
  // end through DELETE /api/messages/in/{id}.
  auto ids = d_.store.IncomingWithStatus(wire::INNKOMMENDE_MOTTATT, WorkState::kDone, 10000);
  if (!ids.ok()) {
    Log()->error("reading received messages: {}", ids.status().ToString());
    return;
  }
  for (const auto& id : *ids) {
    if (d_.inbox.Staged(id) || Exists(JoinPath(d_.config.inbox, id))) continue;
    Status st =
        d_.store.AdvanceIncoming(id, wire::INNKOMMENDE_LEVERT, wire::LEVERT, d_.clock.NowMs());
    if (!st.ok()) {
      Log()->error("message {}: cannot record INNKOMMENDE_LEVERT: {}", id, st.ToString());
      continue;
    }
    Log()->info("message {} taken out of the inbox (INNKOMMENDE_LEVERT); reporting LEVERT", id);
    d_.reports.Report(id, wire::LEVERT, "");
  }
}

}  // namespace bud::ip
