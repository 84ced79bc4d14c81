// See sender.h.
#include "integration-point/engine/sender.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/fs.h"
#include "common/log.h"
#include "integration-point/data_dirs.h"
#include "integration-point/engine/receipts.h"
#include "integration-point/receiver.h"
#include "integration-point/sbd.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }

bool IsStreamHead(const std::string& envelope) {
  return envelope.size() <= crypto::kMaxStreamHeadBytes &&
         crypto::ParseStreamHead(envelope, UINT64_MAX >> 1).ok();
}

wire::ClientMessage SubmitMessage(std::string envelope) {
  auto msg = NewClientMessage();
  if (IsStreamHead(envelope)) {
    msg.mutable_submit_stream()->set_head(std::move(envelope));
  } else {
    msg.mutable_submit()->set_envelope(std::move(envelope));
  }
  return msg;
}

std::string OutSpool(const Config& config, const std::string& message_id) {
  return JoinPath(SpoolDir(config), "out-" + LowerId(message_id));
}

// The header's message channels (docs/protocol.md, "Message channels"): this point's as
// sender_channel; for a receipt, the channel of the point it answers as receiver_channel, and as
// the MessageChannel scope of its SBD (eFormidling's receipts carry the original's). False when
// the store cannot tell now: sealing waits for the next turn.
bool SetChannels(OutgoingStore& store, const std::string& mine, const MessageRow& m,
                 wire::Header& h, wire::Payload& payload) {
  h.set_sender_channel(mine);
  auto answer = AnswerChannel(store, m, payload);
  if (!answer.ok()) {
    Log()->error("message {}: cannot read the channel of the message it answers: {}", m.message_id,
                 answer.status().ToString());
    return false;
  }
  h.set_receiver_channel(*answer);
  if (!answer->empty()) {
    payload.set_metadata_json(WithMessageChannel(payload.metadata_json(), *answer));
    Log()->info("message {} answers a message from channel '{}' of {}: sent to that channel",
                m.message_id, *answer, m.receiver);
  }
  return true;
}
}  // namespace

// An upload to the broker: the sealed stream in the spool, sent from the broker's next_chunk on.
struct Sender::Upload {
  int fd = -1;
  crypto::StreamLayout layout;
  uint64_t next_send = 0;
  uint64_t acked = 0;
  uint32_t window = 8;
  ProgressMarks marks;
  ~Upload() {
    if (fd >= 0) ::close(fd);
  }
};

Sender::Sender(Deps deps) : d_(deps) {}
Sender::~Sender() = default;

bool Sender::Due() const { return dirty_ || d_.clock.MonoMs() - last_seal_mono_ >= 2000; }

void Sender::Fail(const MessageRow& m, const std::string& why) {
  Log()->warn("message {} to {}: FEIL: {}", m.message_id, m.receiver, why);
  auto r = d_.store.ApplyStatus(m.message_id, wire::FEIL, why, d_.clock.NowMs(), WorkState::kDone);
  if (!r.ok()) Log()->error("message {}: {}", m.message_id, r.status().ToString());
}

void Sender::SealNew() {
  constexpr int kSealPerTurn = 64;
  dirty_ = false;
  last_seal_mono_ = d_.clock.MonoMs();
  auto rows = d_.store.OutgoingInState(WorkState::kNew, kSealPerTurn);
  if (!rows.ok()) {
    Log()->error("reading new messages: {}", rows.status().ToString());
    return;
  }
  // More may wait: the next turn seals them instead of the 2 s retry timer.
  if (rows->size() == kSealPerTurn) dirty_ = true;
  for (auto& m : *rows) {
    if (SealOne(m) == Sealed::kStopTurn) return;
  }
}

Sender::Sealed Sender::SealOne(MessageRow& m) {
  auto receiver = Orgnr::Parse(m.receiver);
  if (!receiver.ok()) {
    Fail(m, receiver.status().message());
    return Sealed::kNext;
  }
  auto entry = CheckReceiver(d_.registry, *receiver, m.process, m.document_type);
  if (!entry.ok()) {
    if (entry.status().code() == Code::kUnavailable) return Sealed::kStopTurn;  // retried later
    Fail(m, entry.status().ToString());
    return Sealed::kNext;
  }
  // The newest trusted one, so a rotation moves senders to the next certificate.
  auto certs = d_.certs.Get(entry->encryption_cert_pem(), entry->next_encryption_cert_pem(),
                            crypto::KeyPurpose::kEncryption, *receiver, d_.clock.MonoMs());
  if (!certs.ok()) {
    if (certs.status().code() == Code::kCertRevocationUnknown) {
      // Fail closed without failing the message: like an unreachable registry, sealing waits
      // (the retry timer) until keys.crl_dir holds a current CRL.
      if (d_.clock.MonoMs() - last_revocation_warning_mono_ >= 60'000) {
        last_revocation_warning_mono_ = d_.clock.MonoMs();
        Log()->warn("message {} to {}: not sealed until revocation can be checked: {}",
                    m.message_id, m.receiver, certs.status().ToString());
      }
      return Sealed::kStopTurn;
    }
    Fail(m, "receiver's encryption certificate: " + certs.status().ToString());
    return Sealed::kNext;
  }
  X509* receiver_cert = certs->front().get();
  wire::Payload payload;
  if (!payload.ParseFromString(m.payload)) {
    Fail(m, "stored payload cannot be read");
    return Sealed::kNext;
  }
  wire::Header h;
  h.set_message_id(LowerId(m.message_id));  // the store may keep a client's upper-case spelling
  h.set_conversation_id(m.conversation_id);
  h.set_sender(m.sender);
  h.set_receiver(m.receiver);
  h.set_process(m.process);
  h.set_document_type(m.document_type);
  h.set_created_unix_ms(m.created_ms);
  h.set_expires_unix_ms(m.expires_ms);
  if (!SetChannels(d_.store, d_.config.broker.message_channel, m, h, payload)) {
    return Sealed::kStopTurn;
  }
  if (Exists(SpoolSource(d_.config, m.message_id))) {
    return SealLarge(m, std::move(h), std::move(payload), receiver_cert);
  }
  auto env = crypto::Seal(std::move(h), payload, d_.signer, receiver_cert);
  if (!env.ok()) {
    Fail(m, "cannot seal: " + env.status().ToString());
    return Sealed::kNext;
  }
  Status st = d_.store.MarkSealed(m.message_id, *env);
  if (!st.ok()) {
    Log()->error("message {}: cannot store the sealed envelope: {}", m.message_id, st.ToString());
    return Sealed::kStopTurn;
  }
  Log()->debug("message {} sealed for {} ({} bytes)", m.message_id, m.receiver, env->size());
  return Sealed::kNext;
}

Sender::Sealed Sender::SealLarge(const MessageRow& m, wire::Header header, wire::Payload manifest,
                                 X509* receiver_cert) {
  const std::string src = SpoolSource(d_.config, m.message_id);
  std::vector<crypto::StreamSource> sources;
  for (const auto& a : manifest.attachments()) {
    sources.push_back({a.name(), a.media_type(), JoinPath(src, a.name())});
  }
  manifest.clear_attachments();
  crypto::StreamOptions options;
  options.max_plaintext = static_cast<uint64_t>(d_.config.max_message_bytes) + (2u << 20);
  options.max_attachments = static_cast<size_t>(d_.config.max_attachments);
  const std::string spool = OutSpool(d_.config, m.message_id);
  const int64_t t0 = d_.clock.MonoMs();
  auto head = crypto::SealStreamToFile(std::move(header), manifest, sources, d_.signer,
                                       receiver_cert, spool, options);
  if (!head.ok()) {
    if (head.status().code() == Code::kIo) {
      Log()->error("message {}: cannot seal the stream now: {}", m.message_id,
                   head.status().ToString());
      return Sealed::kStopTurn;
    }
    Fail(m, "cannot seal: " + head.status().ToString());
    (void)RemoveAll(src);
    return Sealed::kNext;
  }
  Status st = d_.store.MarkSealed(m.message_id, *head);
  if (st.ok()) {
    auto parsed = crypto::ParseStreamHead(*head, UINT64_MAX >> 1);
    st = parsed.ok()
             ? d_.store.StartTransfer(m, 0, static_cast<int64_t>(parsed->layout.ciphertext_size))
             : parsed.status();
  }
  if (!st.ok()) {
    Log()->error("message {}: cannot store the sealed head: {}", m.message_id, st.ToString());
    return Sealed::kStopTurn;
  }
  Status rm = RemoveAll(src);
  if (!rm.ok())
    Log()->warn("message {}: spooled attachments not removed: {}", m.message_id, rm.ToString());
  struct stat sst;
  Log()->info("message {} sealed as a stream for {} ({} bytes, {} ms)", m.message_id, m.receiver,
              ::stat(spool.c_str(), &sst) == 0 ? sst.st_size : -1, d_.clock.MonoMs() - t0);
  return Sealed::kNext;
}

void Sender::SubmitSealed() {
  const auto max = static_cast<size_t>(d_.config.broker.max_in_flight);
  if (!d_.link.ready() || d_.clock.MonoMs() < pause_until_mono_) return;
  if (in_flight_.size() >= max) return;
  // Most of them are in flight already: only the envelopes to be sent now are read.
  size_t room = max - in_flight_.size();
  auto rows = d_.store.OutgoingInState(WorkState::kSealed,
                                       static_cast<int>(d_.config.broker.max_in_flight * 2),
                                       [&](const std::string& stored_id) {
                                         if (room == 0 || in_flight_.contains(LowerId(stored_id)))
                                           return true;
                                         --room;
                                         return false;
                                       });
  if (!rows.ok()) {
    Log()->error("reading sealed messages: {}", rows.status().ToString());
    return;
  }
  for (auto& m : *rows) {
    if (in_flight_.size() >= max) break;
    // Keyed as the broker answers: by the id in the envelope (lower case).
    const std::string id = LowerId(m.message_id);
    if (in_flight_.contains(id)) continue;
    // In flight from now; a frame that could not be sent leaves it for the next turn.
    in_flight_[id] = d_.clock.MonoMs();
    d_.link.Queue(SubmitMessage(std::move(m.envelope)), [this, id](bool sent) {
      if (sent) {
        d_.metrics.submits.fetch_add(1, std::memory_order_relaxed);
      } else {
        in_flight_.erase(id);
      }
    });
  }
}

void Sender::OnSubmitReply(const wire::SubmitReply& r) {
  if (auto it = in_flight_.find(r.message_id()); it != in_flight_.end()) {
    if (r.code() == wire::ACCEPTED) {
      d_.metrics.submit_to_accept.Observe(static_cast<double>(d_.clock.MonoMs() - it->second) /
                                          1000.0);
    }
    in_flight_.erase(it);
  }
  // The upload ends; its spool goes once the broker has the message or refused it for good.
  uploads_.erase(r.message_id());
  if (r.code() == wire::ACCEPTED || r.code() == wire::REJECTED) {
    (void)::unlink(OutSpool(d_.config, r.message_id()).c_str());
  }
  if (r.code() == wire::ACCEPTED) {
    OnAccepted(r);
  } else if (r.code() == wire::REJECTED) {
    d_.metrics.rejected.fetch_add(1, std::memory_order_relaxed);
    if (r.message_id().empty()) {
      Log()->error("broker rejected an envelope it could not parse: {}", r.reason());
    } else {
      auto st =
          d_.store.ApplyStatus(r.message_id(), wire::FEIL, "rejected by the broker: " + r.reason(),
                               d_.clock.NowMs(), WorkState::kDone);
      Log()->warn("message {} rejected by the broker (FEIL): {}", r.message_id(), r.reason());
      if (!st.ok()) Log()->error("message {}: {}", r.message_id(), st.status().ToString());
    }
  } else {
    OnRetryLater(r);
  }
  dirty_ = true;
}

void Sender::OnAccepted(const wire::SubmitReply& r) {
  d_.metrics.accepted.fetch_add(1, std::memory_order_relaxed);
  backoff_ms_ = 500;
  auto st =
      d_.store.ApplyStatus(r.message_id(), wire::SENDT, "", d_.clock.NowMs(), WorkState::kSent);
  if (st.ok()) {
    // A streamed message: all of it is with the broker (no-op for a small one).
    if (Status t = d_.store.TransferProgress(r.message_id(), -1); !t.ok()) st = t;
  }
  if (!st.ok()) {
    Log()->error("message {}: cannot record SENDT: {}", r.message_id(), st.status().ToString());
  } else {
    Log()->info("message {} accepted by the broker (SENDT)", r.message_id());
  }
}

void Sender::OnRetryLater(const wire::SubmitReply& r) {
  d_.metrics.retry_later.fetch_add(1, std::memory_order_relaxed);
  // One back-off step per round of submits, not per refused reply of the same round.
  if (d_.clock.MonoMs() >= pause_until_mono_) {
    Log()->warn("message {}: broker says retry later: {} (pausing submits {} ms)", r.message_id(),
                r.reason(), backoff_ms_);
    pause_until_mono_ = d_.clock.MonoMs() + backoff_ms_;
    backoff_ms_ = std::min<int64_t>(backoff_ms_ * 2, 30000);
  }
  // A streamed message shows why it waits in `bud-ip status` (no-op for a small one).
  if (Status t = d_.store.TransferProgress(r.message_id(), std::nullopt,
                                           "waiting: broker says retry later: " + r.reason());
      !t.ok()) {
    Log()->warn("message {}: {}", r.message_id(), t.ToString());
  }
}

void Sender::OnStatusNotice(const wire::StatusNotice& n) {
  auto advanced = d_.store.ApplyStatus(n.message_id(), n.status(), n.reason(),
                                       n.at_unix_ms() ? n.at_unix_ms() : d_.clock.NowMs());
  if (!advanced.ok() && advanced.status().code() != Code::kNotFound) {
    Log()->error("message {}: cannot record {}: {}", n.message_id(), StatusName(n.status()),
                 advanced.status().ToString());
    return;  // not acknowledged: the broker sends it again
  }
  if (!advanced.ok()) {
    Log()->warn("status {} for unknown message {} ignored", StatusName(n.status()), n.message_id());
  } else {
    Log()->info("message {}: {}{}{}", n.message_id(), StatusName(n.status()),
                n.reason().empty() ? "" : " (" + n.reason() + ")",
                *advanced ? "" : " (kept in history; does not change the current status)");
  }
  auto ack = NewClientMessage();
  ack.mutable_status_ack()->set_notice_id(n.notice_id());
  d_.turn.AfterCommit([this, ack = std::move(ack)]() mutable { d_.link.Queue(std::move(ack)); });
}

void Sender::OnStreamStart(const wire::StreamStart& start) {
  const std::string& id = start.message_id();
  auto row = d_.store.Get(id);
  if (!row.ok() || !row->has_value() || (*row)->state != WorkState::kSealed) {
    Log()->warn("broker asked for chunks of message {} that is not being sent", id);
    return;
  }
  auto head = crypto::ParseStreamHead((*row)->envelope, UINT64_MAX >> 1);
  if (!head.ok()) return;
  auto& up = uploads_[id];
  if (!up) {
    up = std::make_unique<Upload>();
    up->fd = ::open(OutSpool(d_.config, id).c_str(), O_RDONLY | O_CLOEXEC);
    if (up->fd < 0) {
      Log()->error("message {}: cannot open its spool: {}", id, std::strerror(errno));
      uploads_.erase(id);
      return;
    }
    up->marks.started_mono = up->marks.last_log_mono = d_.clock.MonoMs();
  }
  up->layout = head->layout;
  up->next_send = up->acked = up->marks.start_chunk =
      std::min(start.next_chunk(), up->layout.chunk_count);
  up->window = std::clamp<uint32_t>(start.window(), 1, 64);
  in_flight_[id] = d_.clock.MonoMs();
  if (Status n = d_.store.TransferProgress(id, std::nullopt, ""); !n.ok()) {
    Log()->warn("message {}: progress not stored: {}", id, n.ToString());
  }
  SaveProgress(d_.store, d_.clock, id, up->layout, up->acked, up->marks, true);
  Log()->info("message {}: {} upload at chunk {} of {} (offset {})", id,
              up->acked == 0 ? "starting" : "resuming", up->acked, up->layout.chunk_count,
              up->layout.RecordOffset(up->acked));
}

void Sender::OnUploadAck(const wire::ChunkAck& ack) {
  auto it = uploads_.find(ack.message_id());
  if (it == uploads_.end()) return;
  Upload& up = *it->second;
  if (ack.next_chunk() > up.acked && ack.next_chunk() <= up.next_send) up.acked = ack.next_chunk();
  in_flight_[ack.message_id()] = d_.clock.MonoMs();  // moving: not a submit timeout
}

bool Sender::SendChunks(const std::string& message_id, Upload& up) {
  while (up.next_send < up.layout.chunk_count && up.next_send - up.acked < up.window) {
    auto msg = NewClientMessage();
    auto* c = msg.mutable_chunk();
    c->set_message_id(message_id);
    c->set_index(up.next_send);
    const uint64_t size = up.layout.RecordSize(up.next_send);
    std::string* rec = c->mutable_record();
    rec->resize(size);
    ssize_t n =
        ::pread(up.fd, rec->data(), size, static_cast<off_t>(up.layout.RecordOffset(up.next_send)));
    if (n != static_cast<ssize_t>(size)) {
      Log()->error("message {}: spool is short at chunk {}; upload stopped", message_id,
                   up.next_send);
      return false;
    }
    if (!d_.link.Send(msg)) break;  // retried next turn
    d_.metrics.stream_bytes_sent.fetch_add(static_cast<int64_t>(size), std::memory_order_relaxed);
    up.next_send++;
  }
  return true;
}

void Sender::Pump() {
  for (auto it = uploads_.begin(); it != uploads_.end();) {
    Upload& up = *it->second;
    // What the broker acknowledged is durable there; the turn's commit carries it here.
    SaveProgress(d_.store, d_.clock, it->first, up.layout, up.acked, up.marks, false);
    const bool ok = SendChunks(it->first, up);
    LogProgress(d_.clock, it->first, "sent", up.layout, up.acked, up.marks);
    it = ok ? std::next(it) : uploads_.erase(it);
  }
}

void Sender::ExpireInFlight() {
  const int64_t now = d_.clock.MonoMs();
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (now - it->second >= d_.config.broker.submit_timeout_ms) {
      Log()->warn("message {}: no answer to submit within {} ms; submitting again", it->first,
                  d_.config.broker.submit_timeout_ms);
      it = in_flight_.erase(it);
      dirty_ = true;
    } else {
      ++it;
    }
  }
}

void Sender::Reset() {
  in_flight_.clear();
  uploads_.clear();
}

}  // namespace bud::ip
