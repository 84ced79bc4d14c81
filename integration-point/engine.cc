// The integration point engine. See engine.h and docs/protocol.md.
#include "integration-point/engine.h"

#include <fmt/format.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/payload.h"
#include "common/runtime.h"
#include "common/uuid.h"
#include "common/wire/zmq.h"
#include "integration-point/identity.h"
#include "integration-point/inbox.h"
#include "integration-point/outbox.h"
#include "integration-point/receiver.h"
#include "integration-point/stream_state.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }

// Back-off while deliveries cannot be stored: every delivery is deferred for this long, doubling
// for each failed probe.
constexpr int64_t kDeferFirstMs = 500;
constexpr int64_t kDeferMaxMs = 30000;

constexpr std::string_view kEnvelopeRejected =
    "ENVELOPE_REJECTED: the receiver could not verify and decrypt the envelope";

// What the sender is told of a refusal recorded here as `local` ("CODE: message"): one uniform
// reason for every failure of the envelope's cryptography, so no answer tells which check a
// forged byte tripped; other reasons (unknown sender, expired certificate ...) as they are.
std::string OutsideReason(const std::string& local) {
  for (Code c : {Code::kMalformed, Code::kBadSignature, Code::kDigestMismatch,
                 Code::kDecryptFailed, Code::kPayloadMismatch, Code::kUnsupported}) {
    if (local.starts_with(std::string(CodeName(c)) + ":")) return std::string(kEnvelopeRejected);
  }
  return local;
}

// Bounds of the header fields a receiver stores and logs (a signed header can still carry
// megabytes in them: the signature says who wrote it, not that it is sane).
constexpr size_t kMaxPartyBytes = 64;
constexpr size_t kMaxIdBytes = 128;
constexpr size_t kMaxNameBytes = 1024;  // process, document type

wire::ClientMessage NewClientMessage() {
  wire::ClientMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  return m;
}

std::string ToLowerAscii(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Engine::Engine(const Config& config, zmq::context_t& ctx)
    : config_(config),
      ctx_(ctx),
      me_(config.me()),
      inbox_batch_(config.inbox),
      wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

Engine::~Engine() {
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Engine::Wake() {
  uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
}

Status Engine::TakeIn(MessageRow row, int64_t timeout_ms) {
  auto h = std::make_shared<HandOver>();
  h->row = std::move(row);
  std::unique_lock lock(take_mu_);
  if (stopped_) return Status(Code::kUnavailable, "the integration point is stopping");
  take_queue_.push_back(h);
  Wake();
  if (!take_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return h->done; })) {
    return Status(Code::kUnavailable,
                  fmt::format("message {} was not stored within {} ms; it may still be taken in "
                              "(GET /api/messages/out/{} tells)",
                              h->row.message_id, timeout_ms, h->row.message_id));
  }
  return h->result;
}

void Engine::TakeInHandedOver() {
  std::vector<std::shared_ptr<HandOver>> batch;
  {
    std::lock_guard lock(take_mu_);
    batch.swap(take_queue_);
  }
  for (auto& h : batch) {
    h->result = store_->CreateOutgoing(h->row);
    if (h->result.ok()) outgoing_dirty_ = true;
    taken_.push_back(std::move(h));
  }
}

void Engine::AnswerTakeIns(const Status& failure) {
  if (taken_.empty()) return;
  std::lock_guard lock(take_mu_);
  for (auto& h : taken_) {
    if (!failure.ok() && h->result.ok()) h->result = failure;
    h->done = true;
  }
  taken_.clear();
  take_cv_.notify_all();
}

Status Engine::Start() {
  if (started_) return Status::Ok();
  BUD_ASSIGN_OR_RETURN(Identity id, LoadIdentity(config_));
  signing_key_ = std::move(id.signing_key);
  encryption_key_ = std::move(id.encryption_key);
  signing_cert_ = std::move(id.signing_cert);
  encryption_cert_ = std::move(id.encryption_cert);
  next_encryption_key_ = std::move(id.next_encryption_key);
  next_encryption_cert_ = std::move(id.next_encryption_cert);
  trust_ = std::move(id.trust);
  certs_ = std::make_unique<crypto::TrustedCertCache>(*trust_);
  decryption_keys_.push_back({encryption_key_.get(), encryption_cert_.get()});
  if (next_encryption_key_) {
    decryption_keys_.push_back({next_encryption_key_.get(), next_encryption_cert_.get()});
  }
  for (X509* c : {signing_cert_.get(), encryption_cert_.get()}) {
    int days = crypto::DaysToExpiry(c);
    if (days < 30) Log()->warn("certificate '{}' expires in {} day(s)", crypto::SubjectOf(c), days);
  }
  for (const auto& w : id.warnings) Log()->warn("{}", w);
  if (config_.crl_dir.empty()) {
    Log()->warn("no keys.crl_dir: certificate revocation is NOT checked");
  } else {
    Log()->info("revocation checked against {} CRL(s) in '{}'", trust_->CrlCount(),
                config_.crl_dir);
    for (const auto& p : trust_->CrlProblems()) Log()->warn("keys.crl_dir: {}", p);
  }
  if (config_.curve_key_file.empty()) {
    Log()->warn("no keys.curve_key_file: talking to broker and registry WITHOUT CURVE "
                "(development only)");
  } else {
    BUD_ASSIGN_OR_RETURN(curve_, wire::LoadCurveKeyFile(config_.curve_key_file));
  }
  registry_ = std::make_unique<RegistryClient>(ctx_, config_.registry_endpoint,
                                               config_.registry_timeout_ms,
                                               config_.registry_cache_ms, curve_,
                                               config_.registry_server_key);
  BUD_RETURN_IF_ERROR(MakeDirs(config_.outbox));
  if (!config_.inbox.empty()) BUD_RETURN_IF_ERROR(MakeDirs(config_.inbox));
  BUD_ASSIGN_OR_RETURN(store_, Store::Open(config_.store));
  RecoverSpool();
  SweepReceiveLeftovers();

  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0 ||
      ::inotify_add_watch(inotify_fd_, config_.outbox.c_str(),
                          IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
    Log()->warn("inotify unavailable ({}); relying on the rescan every {} ms",
                std::strerror(errno), config_.rescan_ms);
  }
  ConnectBroker();
  started_ = true;
  return Status::Ok();
}

Status Engine::Run() {
  BUD_RETURN_IF_ERROR(Start());
  Log()->info("integration point {} running: outbox {}, {}, broker {}, registry {}",
              me_.wire(), config_.outbox,
              config_.delivery == "api" ? std::string("incoming kept for the HTTP API")
                                        : "inbox " + config_.inbox,
              config_.broker_endpoint, config_.registry_endpoint);
  while (!StopRequested()) {
    zmq::pollitem_t items[] = {{broker_->handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, wake_fd_, ZMQ_POLLIN, 0},
                               {nullptr, inotify_fd_, ZMQ_POLLIN, 0}};
    const int n = inotify_fd_ >= 0 ? 3 : 2;
    try {
      zmq::poll(items, n, std::chrono::milliseconds(outbox_dirty_ || outgoing_dirty_ ? 0 : 100));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) Log()->error("poll: {}", e.what());
      continue;
    }
    if (Status b = store_->BeginTurn(); !b.ok()) {
      Log()->warn("store: cannot open the turn's transaction ({}); writing unbatched", b.ToString());
    }
    if (items[1].revents & ZMQ_POLLIN) {
      uint64_t count;
      (void)!::read(wake_fd_, &count, sizeof count);
      outgoing_dirty_ = true;
      SendPendingReports(false);
    }
    TakeInHandedOver();
    if (n == 3 && (items[2].revents & ZMQ_POLLIN)) {
      char buf[8192];
      while (::read(inotify_fd_, buf, sizeof buf) > 0) {
      }
      outbox_dirty_ = true;
    }
    for (int i = 0; i < 1000; ++i) {
      zmq::message_t frame;
      try {
        if (!broker_->recv(frame, zmq::recv_flags::dontwait)) break;
      } catch (const zmq::error_t& e) {
        Log()->warn("receive from broker failed: {}", e.what());
        break;
      }
      OnBrokerFrame(frame);
    }
    PumpStreams();
    if (outbox_dirty_ || MonoMs() - last_scan_mono_ >= config_.rescan_ms) {
      ScanOutbox();
      CheckInbox();
    }
    if (outgoing_dirty_ || MonoMs() - last_seal_retry_mono_ >= 2000) {
      outgoing_dirty_ = false;
      last_seal_retry_mono_ = MonoMs();
      SealNew();
      FinishTurn();  // sealed envelopes durable before they are submitted
      SubmitSealed();
    }
    FinishTurn();
    Tick();
  }
  Log()->info("integration point {} stopping", me_.wire());
  {
    std::lock_guard lock(take_mu_);
    stopped_ = true;
    for (auto& h : take_queue_) {
      h->result = Status(Code::kUnavailable, "the integration point is stopping");
      h->done = true;
    }
    take_queue_.clear();
    take_cv_.notify_all();
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Outbox

void Engine::ScanOutbox() {
  outbox_dirty_ = false;
  last_scan_mono_ = MonoMs();
  auto names = ListDir(config_.outbox);
  if (!names.ok()) {
    Log()->error("cannot scan outbox: {}", names.status().ToString());
    return;
  }
  for (const auto& name : *names) {
    if (name.empty() || name.front() == '.' || StopRequested()) continue;
    std::string folder = JoinPath(config_.outbox, name);
    struct stat st;
    if (::lstat(folder.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      TakeFolder(name);  // refused: a link is not a folder (outbox.h)
      continue;
    }
    if (!S_ISDIR(st.st_mode)) continue;
    if (!Exists(JoinPath(folder, "message.json"))) {
      if (inotify_fd_ >= 0) {
        ::inotify_add_watch(inotify_fd_, folder.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
      }
      continue;
    }
    TakeFolder(name);
  }
}

void Engine::TakeFolder(const std::string& name) {
  const std::string folder = JoinPath(config_.outbox, name);
  const std::string shown = EscapeControl(name);  // a name in a log line stays on its line
  auto fail = [&](const Status& why) {
    auto moved = MoveToFailed(config_.outbox, name, why.ToString());
    if (moved.ok()) {
      Log()->warn("outbox '{}' refused and moved to {}: {}", shown,
                  EscapeControl(*moved), why.ToString());
    } else {
      Log()->error("outbox '{}' refused ({}) but could not be moved aside: {}",
                   shown, why.ToString(), moved.status().ToString());
    }
  };
  auto outbox_fd = OpenDir(config_.outbox);
  if (!outbox_fd.ok()) {
    Log()->error("cannot open outbox: {}", outbox_fd.status().ToString());
    return;
  }
  // The folder and its message.json are opened once here; every later check reads them.
  auto opened = OpenOutboxFolder(outbox_fd->get(), config_.outbox, name);
  if (!opened.ok()) {
    if (opened.status().code() == Code::kInvalidArgument) return fail(opened.status());
    if (opened.status().code() != Code::kNotFound) {  // not found: vanished or not ready
      Log()->warn("outbox '{}' not taken in yet: {}", shown,
                  opened.status().ToString());
    }
    return;
  }
  const std::string key = FolderKey(*opened);
  auto imported = store_->FolderImported(key);
  if (!imported.ok()) {
    Log()->error("outbox '{}': store: {}", shown, imported.status().ToString());
    return;
  }
  if (*imported) {
    // Taken in before a crash that came before the folder's removal.
    AfterCommit([folder, shown] {
      Status rm = RemoveAll(folder);
      if (!rm.ok()) Log()->error("outbox '{}': {}", shown, rm.ToString());
    });
    return;
  }
  OutboxLimits limits{static_cast<size_t>(config_.max_attachments),
                      static_cast<size_t>(config_.max_attachment_bytes), config_.default_ttl_ms};
  const bool large = IsLargeFolder(*opened);
  if (large) {
    limits.max_attachment_bytes = static_cast<size_t>(config_.max_message_bytes);
    limits.read_data = false;
  }
  auto draft = ReadOutboxFolder(*opened, me_, limits);
  if (!draft.ok()) {
    if (draft.status().code() == Code::kInvalidArgument) return fail(draft.status());
    Log()->warn("outbox '{}' not taken in yet: {}", shown, draft.status().ToString());
    return;
  }
  auto receiver = CheckReceiver(*registry_, draft->receiver, draft->process, draft->document_type);
  if (!receiver.ok()) {
    if (receiver.status().code() == Code::kUnavailable) {
      Log()->warn("outbox '{}' waits: {}", shown, receiver.status().message());
      return;
    }
    return fail(receiver.status());
  }
  auto exists = store_->HasMessage(draft->message_id, "OUT");
  if (exists.ok() && *exists) {
    // Kept, never deleted: it may differ from the copy that was sent.
    return fail(Status(Code::kAlreadyExists,
                       fmt::format("message id {} was already taken in and is sent only once; "
                                   "give a new messageId to send this folder",
                                   draft->message_id)));
  }
  MessageRow row;
  row.message_id = draft->message_id;
  row.conversation_id = draft->conversation_id;
  row.sender = me_.wire();
  row.receiver = draft->receiver.wire();
  row.process = draft->process;
  row.document_type = draft->document_type;
  row.title = draft->title;
  row.created_ms = draft->created_ms;
  row.expires_ms = draft->expires_ms;
  draft->payload.SerializeToString(&row.payload);
  if (large) {
    // The attachments stay files: the checked ones move into the spool before the store
    // commits (a swap since the check refuses the folder).
    Status moved = TakeInLargeFolder(*opened, row.message_id);
    if (moved.code() == Code::kInvalidArgument) return fail(moved);
    if (!moved.ok()) {
      Log()->error("outbox '{}': cannot move it into the spool ({}); it stays in the outbox", shown,
                   moved.ToString());
      return;
    }
  }
  Status st = store_->ImportOutgoing(row, key);
  if (!st.ok()) {
    Log()->error("outbox '{}': cannot store message {} ({}); it stays in the outbox", shown,
                 row.message_id, st.ToString());
    return;
  }
  Log()->info("message {} to {} taken in from outbox '{}' (OPPRETTET, {} attachment(s))",
              row.message_id, row.receiver, shown, draft->payload.attachments_size());
  AfterCommit([folder, shown] {
    Status rm = RemoveAll(folder);
    if (!rm.ok()) Log()->error("outbox '{}': taken in but not removed: {}", shown, rm.ToString());
  });
  outgoing_dirty_ = true;
}

// The archive system took a message out of the inbox: INNKOMMENDE_LEVERT here, LEVERT to the
// sender.
void Engine::CheckInbox() {
  // Only messages written to the inbox folder (state done); those kept for the API (state api)
  // end through DELETE /api/messages/in/{id}.
  auto ids = store_->IncomingWithStatus(wire::INNKOMMENDE_MOTTATT, "done", 10000);
  if (!ids.ok()) {
    Log()->error("reading received messages: {}", ids.status().ToString());
    return;
  }
  for (const auto& id : *ids) {
    if (inbox_batch_.Staged(id) || Exists(JoinPath(config_.inbox, id))) continue;
    Status st = store_->AdvanceIncoming(id, wire::INNKOMMENDE_LEVERT, wire::LEVERT, NowMs());
    if (!st.ok()) {
      Log()->error("message {}: cannot record INNKOMMENDE_LEVERT: {}", id, st.ToString());
      continue;
    }
    Log()->info("message {} taken out of the inbox (INNKOMMENDE_LEVERT); reporting LEVERT", id);
    Report(id, wire::LEVERT, "");
  }
}

// ---------------------------------------------------------------------------------------------
// Outgoing

void Engine::SealNew() {
  constexpr int kSealPerTurn = 64;
  auto rows = store_->OutgoingInState("new", kSealPerTurn);
  if (!rows.ok()) {
    Log()->error("reading new messages: {}", rows.status().ToString());
    return;
  }
  // More may wait: the next turn seals them instead of the 2 s retry timer.
  if (rows->size() == kSealPerTurn) outgoing_dirty_ = true;
  for (auto& m : *rows) {
    auto fail = [&](const std::string& why) {
      Log()->warn("message {} to {}: FEIL: {}", m.message_id, m.receiver, why);
      auto r = store_->ApplyStatus(m.message_id, "OUT", wire::FEIL, why, NowMs(), "done");
      if (!r.ok()) Log()->error("message {}: {}", m.message_id, r.status().ToString());
    };
    auto receiver = Orgnr::Parse(m.receiver);
    if (!receiver.ok()) {
      fail(receiver.status().message());
      continue;
    }
    auto entry = CheckReceiver(*registry_, *receiver, m.process, m.document_type);
    if (!entry.ok()) {
      if (entry.status().code() == Code::kUnavailable) return;  // retried later
      fail(entry.status().ToString());
      continue;
    }
    // The newest trusted one, so a rotation moves senders to the next certificate.
    auto certs = certs_->Get(entry->encryption_cert_pem(), entry->next_encryption_cert_pem(),
                             crypto::KeyPurpose::kEncryption, *receiver, MonoMs());
    if (!certs.ok()) {
      if (certs.status().code() == Code::kCertRevocationUnknown) {
        // Fail closed without failing the message: like an unreachable registry, sealing waits
        // (the retry timer) until keys.crl_dir holds a current CRL.
        static int64_t last_warned_ms = INT64_MIN / 2;
        if (MonoMs() - last_warned_ms >= 60'000) {
          last_warned_ms = MonoMs();
          Log()->warn("message {} to {}: not sealed until revocation can be checked: {}",
                      m.message_id, m.receiver, certs.status().ToString());
        }
        return;
      }
      fail("receiver's encryption certificate: " + certs.status().ToString());
      continue;
    }
    X509* receiver_cert = certs->front().get();
    wire::Payload payload;
    if (!payload.ParseFromString(m.payload)) {
      fail("stored payload cannot be read");
      continue;
    }
    wire::Header h;
    h.set_message_id(m.message_id);
    const bool large = Exists(SpoolSource(m.message_id));
    h.set_conversation_id(m.conversation_id);
    h.set_sender(m.sender);
    h.set_receiver(m.receiver);
    h.set_process(m.process);
    h.set_document_type(m.document_type);
    h.set_created_unix_ms(m.created_ms);
    h.set_expires_unix_ms(m.expires_ms);
    if (large) {
      if (!SealLarge(m, std::move(h), std::move(payload), receiver_cert, fail)) return;
      continue;
    }
    auto env = crypto::Seal(std::move(h), payload, {signing_key_.get(), signing_cert_.get()},
                            receiver_cert);
    if (!env.ok()) {
      fail("cannot seal: " + env.status().ToString());
      continue;
    }
    Status st = store_->MarkSealed(m.message_id, *env);
    if (!st.ok()) {
      Log()->error("message {}: cannot store the sealed envelope: {}", m.message_id, st.ToString());
      return;
    }
    Log()->debug("message {} sealed for {} ({} bytes)", m.message_id, m.receiver, env->size());
  }
}

void Engine::SubmitSealed() {
  if (!welcomed_ || MonoMs() < submit_pause_until_mono_) return;
  if (in_flight_.size() >= static_cast<size_t>(config_.max_in_flight)) return;
  auto rows = store_->OutgoingInState("sealed", static_cast<int>(config_.max_in_flight * 2));
  if (!rows.ok()) {
    Log()->error("reading sealed messages: {}", rows.status().ToString());
    return;
  }
  for (auto& m : *rows) {
    if (in_flight_.size() >= static_cast<size_t>(config_.max_in_flight)) break;
    if (in_flight_.contains(m.message_id)) continue;
    auto msg = SubmitMessage(std::move(m.envelope));
    if (!SendToBroker(msg)) return;
    in_flight_[m.message_id] = MonoMs();
    metrics_.submits.fetch_add(1, std::memory_order_relaxed);
  }
}

// ---------------------------------------------------------------------------------------------
// Broker link

void Engine::ConnectBroker() {
  broker_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
  wire::ConfigureSocket(*broker_, /*router=*/false, /*linger_ms=*/0);
  broker_->set(zmq::sockopt::immediate, 1);
  if (curve_) wire::MakeCurveClient(*broker_, *curve_, config_.broker_server_key);
  broker_->set(zmq::sockopt::reconnect_ivl, 100);
  broker_->set(zmq::sockopt::reconnect_ivl_max, 5000);
  broker_->connect(config_.broker_endpoint);
  welcomed_ = false;
  metrics_.broker_connected.store(0);
  in_flight_.clear();
  ResetStreams();
  last_hello_mono_ = 0;
  last_heard_mono_ = MonoMs();
}

bool Engine::SendToBroker(const wire::ClientMessage& msg) {
  Status s = wire::SendProto(*broker_, msg);
  if (!s.ok()) {
    Log()->debug("send to broker failed: {}", s.message());
    return false;
  }
  return true;
}

void Engine::OnBrokerFrame(const zmq::message_t& frame) {
  wire::BrokerMessage msg;
  Status parsed = wire::ParseProto(frame, msg, "BrokerMessage");
  if (!parsed.ok()) {
    Log()->warn("from broker: {}", parsed.message());
    return;
  }
  last_heard_mono_ = MonoMs();
  switch (msg.body_case()) {
    case wire::BrokerMessage::kWelcome:
      if (msg.welcome().orgnr() != me_.wire()) {
        Log()->error("broker bound this connection to {}, not {}", msg.welcome().orgnr(),
                     me_.wire());
        return;
      }
      welcomed_ = true;
      metrics_.broker_connected.store(1);
      hello_backoff_ms_ = 200;
      in_flight_.clear();
      report_sent_.clear();
      ResetStreams();
      outgoing_dirty_ = true;
      Log()->info("connected to broker {} as {}", config_.broker_endpoint, me_.wire());
      SendPendingReports(true);
      break;
    case wire::BrokerMessage::kSubmitReply: OnSubmitReply(msg.submit_reply()); break;
    case wire::BrokerMessage::kDeliver: OnDeliver(msg.deliver()); break;
    case wire::BrokerMessage::kStatusNotice: OnStatusNotice(msg.status_notice()); break;
    case wire::BrokerMessage::kReportReply: {
      const auto& r = msg.report_reply();
      report_sent_.erase(fmt::format("{}/{}", r.message_id(), static_cast<int>(r.status())));
      if (!r.ok()) {
        Log()->warn("broker could not take report {} for {}: {}", StatusName(r.status()),
                    r.message_id(), r.reason());
        break;
      }
      if (!r.reason().empty()) {
        Log()->warn("broker ignored report {} for {}: {}", StatusName(r.status()), r.message_id(),
                    r.reason());
      }
      Status st = store_->ReportDone(r.message_id(), r.status());
      if (!st.ok()) Log()->error("report {}: {}", r.message_id(), st.ToString());
      break;
    }
    case wire::BrokerMessage::kStreamStart: OnStreamStart(msg.stream_start()); break;
    case wire::BrokerMessage::kChunkAck: OnUploadAck(msg.chunk_ack()); break;
    case wire::BrokerMessage::kDeliverStream: OnDeliverStream(msg.deliver_stream()); break;
    case wire::BrokerMessage::kChunk: OnStreamChunk(*msg.mutable_chunk()); break;
    case wire::BrokerMessage::kHeartbeat: break;
    case wire::BrokerMessage::kRefused:
      Log()->warn("broker refused: {}", msg.refused().reason());
      if (msg.refused().reason().starts_with("no session")) welcomed_ = false;
      break;
    default: Log()->warn("broker sent a message with no known body"); break;
  }
}

void Engine::OnSubmitReply(const wire::SubmitReply& r) {
  if (auto it = in_flight_.find(r.message_id()); it != in_flight_.end()) {
    if (r.code() == wire::ACCEPTED) {
      metrics_.submit_to_accept.Observe(static_cast<double>(MonoMs() - it->second) / 1000.0);
    }
    in_flight_.erase(it);
  }
  EndUpload(r.message_id(), r.code() == wire::ACCEPTED || r.code() == wire::REJECTED);
  switch (r.code()) {
    case wire::ACCEPTED: {
      metrics_.accepted.fetch_add(1, std::memory_order_relaxed);
      submit_backoff_ms_ = 500;
      auto st = store_->ApplyStatus(r.message_id(), "OUT", wire::SENDT, "", NowMs(), "sent");
      if (st.ok()) {
        // A streamed message: all of it is with the broker (no-op for a small one).
        if (Status t = store_->TransferProgress(r.message_id(), "OUT", -1); !t.ok()) {
          st = t;
        }
      }
      if (!st.ok()) {
        Log()->error("message {}: cannot record SENDT: {}", r.message_id(), st.status().ToString());
      } else {
        Log()->info("message {} accepted by the broker (SENDT)", r.message_id());
      }
      break;
    }
    case wire::REJECTED: {
      metrics_.rejected.fetch_add(1, std::memory_order_relaxed);
      if (r.message_id().empty()) {
        Log()->error("broker rejected an envelope it could not parse: {}", r.reason());
        break;
      }
      auto st = store_->ApplyStatus(r.message_id(), "OUT", wire::FEIL,
                                    "rejected by the broker: " + r.reason(), NowMs(), "done");
      Log()->warn("message {} rejected by the broker (FEIL): {}", r.message_id(), r.reason());
      if (!st.ok()) Log()->error("message {}: {}", r.message_id(), st.status().ToString());
      break;
    }
    default:
      metrics_.retry_later.fetch_add(1, std::memory_order_relaxed);
      // One back-off step per round of submits, not per refused reply of the same round.
      if (MonoMs() >= submit_pause_until_mono_) {
        Log()->warn("message {}: broker says retry later: {} (pausing submits {} ms)",
                    r.message_id(), r.reason(), submit_backoff_ms_);
        submit_pause_until_mono_ = MonoMs() + submit_backoff_ms_;
        submit_backoff_ms_ = std::min<int64_t>(submit_backoff_ms_ * 2, 30000);
      }
      // A streamed message shows why it waits in `bud-ip status` (no-op for a small one).
      if (Status t = store_->TransferProgress(r.message_id(), "OUT", std::nullopt,
                                              "waiting: broker says retry later: " + r.reason());
          !t.ok()) {
        Log()->warn("message {}: {}", r.message_id(), t.ToString());
      }
      break;
  }
  outgoing_dirty_ = true;
}

void Engine::Report(const std::string& message_id, MsgStatus status, const std::string& reason) {
  auto msg = NewClientMessage();
  auto* r = msg.mutable_report();
  r->set_message_id(message_id);
  r->set_status(status);
  r->set_reason(reason);
  r->set_at_unix_ms(NowMs());
  AfterCommit([this, msg = std::move(msg), key = fmt::format("{}/{}", message_id,
                                                             static_cast<int>(status))] {
    if (SendToBroker(msg)) report_sent_[key] = MonoMs();
  });
}

void Engine::AfterCommit(std::function<void()> action) {
  if (store_->InTurn()) {
    after_commit_.push_back(std::move(action));
  } else {
    action();
  }
}

void Engine::FinishTurn() {
  // The turn records its deliveries as received: their inbox folders first.
  Status st = inbox_batch_.Publish();
  if (st.ok()) {
    st = store_->CommitTurn();
  } else {
    st = st.Context("the turn's inbox folders");
    store_->RollbackTurn();
  }
  std::vector<std::function<void()>> actions = std::move(after_commit_);
  after_commit_.clear();
  std::vector<std::pair<std::string, bool>> deliveries = std::move(turn_deliveries_);
  turn_deliveries_.clear();
  AnswerTakeIns(st.ok() ? st : st.Context("the store's commit failed"));
  if (!st.ok()) {
    Log()->error("store: the turn's commit failed ({}); {} report(s), ack(s) and outbox "
                 "removal(s) held back, the work is redone",
                 st.ToString(), actions.size());
    outbox_dirty_ = true;
    outgoing_dirty_ = true;
    // The turn's deliveries are not stored: deferred, so that the broker counts no attempt.
    for (const auto& [id, stored] : deliveries) DeferDelivery(id, st);
    return;
  }
  for (auto& a : actions) a();
  for (const auto& [id, stored] : deliveries) {
    if (stored) DeliveryStored();
  }
}

void Engine::AnswerAfterCommit(const std::string& message_id, MsgStatus status,
                               const std::string& reason) {
  Report(message_id, status, reason);
  if (store_->InTurn()) {
    turn_deliveries_.emplace_back(message_id, status == wire::MOTTATT);
  } else if (status == wire::MOTTATT) {
    DeliveryStored();
  }
}

void Engine::DeferDelivery(const std::string& message_id, const Status& why) {
  const int64_t now = MonoMs();
  if (now >= defer_until_mono_) {  // a probe failed, or the first failure
    defer_backoff_ms_ =
        defer_backoff_ms_ == 0 ? kDeferFirstMs : std::min(defer_backoff_ms_ * 2, kDeferMaxMs);
    defer_until_mono_ = now + defer_backoff_ms_;
    // What the broker (and its log) sees: the kind of trouble, not this machine's paths.
    defer_reason_ = fmt::format("the receiving integration point cannot store deliveries now ({})",
                                CodeName(why.code()));
    Log()->warn("message {}: cannot store it now ({}); deferring every delivery for {} ms",
                message_id, why.ToString(), defer_backoff_ms_);
  }
  auto msg = NewClientMessage();
  auto* d = msg.mutable_defer();
  d->set_message_id(message_id);
  d->set_reason(defer_reason_);
  d->set_retry_after_ms(static_cast<uint32_t>(std::max<int64_t>(defer_until_mono_ - now, 1)));
  metrics_.deferred.fetch_add(1, std::memory_order_relaxed);
  SendToBroker(msg);  // not after the commit: a Defer promises nothing durable
}

bool Engine::DeferringNow(const std::string& message_id) {
  if (MonoMs() >= defer_until_mono_) return false;
  Log()->debug("message {}: deferred unread (storage trouble: {})", message_id, defer_reason_);
  DeferDelivery(message_id, Status(Code::kUnavailable, defer_reason_));
  return true;
}

void Engine::DeliveryStored() {
  if (defer_backoff_ms_ == 0) return;
  Log()->info("deliveries are stored again; no longer deferring");
  defer_backoff_ms_ = 0;
  defer_until_mono_ = 0;
}

void Engine::SendPendingReports(bool all) {
  if (!welcomed_) return;
  auto pending = store_->PendingReports();
  if (!pending.ok()) {
    Log()->error("reading pending reports: {}", pending.status().ToString());
    return;
  }
  for (const auto& p : *pending) {
    auto it = report_sent_.find(fmt::format("{}/{}", p.message_id, static_cast<int>(p.status)));
    if (!all && it != report_sent_.end() &&
        MonoMs() - it->second < config_.submit_timeout_ms) {
      continue;
    }
    Report(p.message_id, p.status, p.reason);
  }
}

Status Engine::CheckHeaderSizes(const wire::Header& h) {
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

MessageRow Engine::IncomingRow(const wire::Header& h) {
  // Cut to the bounds CheckHeaderSizes enforces: a refusal of an oversized header is recorded
  // with what fits.
  MessageRow row;
  row.message_id = h.message_id();
  row.conversation_id = h.conversation_id().substr(0, kMaxIdBytes);
  row.sender = h.sender().substr(0, kMaxPartyBytes);
  row.receiver = h.receiver().substr(0, kMaxPartyBytes);
  row.process = h.process().substr(0, kMaxNameBytes);
  row.document_type = h.document_type().substr(0, kMaxNameBytes);
  row.created_ms = h.created_unix_ms();
  row.expires_ms = h.expires_unix_ms();
  return row;
}

void Engine::OnDeliver(const wire::Deliver& deliver) {
  const int64_t now = NowMs();
  metrics_.deliveries.fetch_add(1, std::memory_order_relaxed);
  auto env = crypto::ParseEnvelope(deliver.envelope());
  auto header = env.ok() ? crypto::ParseHeaderUnverified(*env) : Result<wire::Header>(env.status());
  if (!header.ok()) {
    Log()->error("broker delivered an envelope that cannot be parsed: {}",
                 header.status().ToString());
    return;
  }
  const wire::Header& h = *header;
  const std::string& id = h.message_id();
  // The id names the inbox folder: nothing but a lower-case UUID may get near a path. Without
  // one nothing is recorded; the broker is told FEIL so that it stops delivering it.
  if (!IsUuid(id) || id != ToLowerAscii(id)) {
    Log()->error("broker delivered an envelope whose message id is not a lower-case UUID; "
                 "refused without writing anything (sender claims {})",
                 h.sender().substr(0, 20));
    Report(id, wire::FEIL, std::string(kEnvelopeRejected));  // ids are only compared there
    return;
  }

  auto existing = store_->Get(id, "IN");
  if (!existing.ok()) {
    Log()->error("message {}: store: {}", id, existing.status().ToString());
    return;
  }
  if (existing->has_value()) {
    // Delivered before: answer as before, never write it twice.
    const auto& row = **existing;
    bool failed = row.status == "FEIL";
    std::string reason;
    if (failed) {
      auto hist = store_->History(id, "IN");
      if (hist.ok() && !hist->empty()) reason = OutsideReason(hist->back().reason);
    }
    metrics_.redeliveries.fetch_add(1, std::memory_order_relaxed);
    Log()->info("message {} from {} delivered again; already {}", id, h.sender(), row.status);
    Report(id, failed ? wire::FEIL : wire::MOTTATT, reason);
    return;
  }
  if (DeferringNow(id)) return;

  MessageRow row = IncomingRow(h);

  auto refuse = [&](const Status& why) {
    // The specific code stays in this log and this store; the sender gets OutsideReason().
    const std::string outside = OutsideReason(why.ToString());
    metrics_.refused.fetch_add(1, std::memory_order_relaxed);
    Log()->warn("message {} from {} refused (FEIL): {}", id, h.sender(), why.ToString());
    Status st = store_->RecordIncoming(row, wire::FEIL, why.ToString(), wire::FEIL, outside, now);
    if (!st.ok()) return DeferDelivery(id, st.Context("recording FEIL"));
    AnswerAfterCommit(id, wire::FEIL, outside);
  };

  if (Status sizes = CheckHeaderSizes(h); !sizes.ok()) return refuse(sizes);
  auto sender = Orgnr::Parse(h.sender());
  if (!sender.ok()) return refuse(sender.status());
  auto entry = registry_->Lookup(*sender);
  if (!entry.ok()) {
    if (entry.status().code() == Code::kUnavailable) {
      Log()->warn("message {}: cannot check the sender now ({}); deferred", id,
                  entry.status().message());
      return DeferDelivery(id, entry.status());
    }
    return refuse(entry.status());
  }
  auto certs = certs_->Get(entry->signing_cert_pem(), entry->next_signing_cert_pem(),
                           crypto::KeyPurpose::kSigning, *sender, MonoMs());
  if (!certs.ok() && certs.status().code() == Code::kCertRevocationUnknown) {
    // Fail closed without a FEIL: deferred (no attempt counted at the broker), delivered again
    // by when keys.crl_dir may hold a current CRL. A listed certificate (CERT_REVOKED) is refused
    // below.
    Log()->warn("message {} from {}: not accepted until revocation can be checked ({}); deferred",
                id, h.sender(), certs.status().message());
    return DeferDelivery(id, certs.status());
  }
  if (!certs.ok()) return refuse(certs.status().Context("sender's signing certificate"));
  std::vector<X509*> sender_certs;
  for (const auto& c : *certs) sender_certs.push_back(c.get());
  auto opened = crypto::Open(deliver.envelope(), me_, *sender, sender_certs, decryption_keys_);
  if (!opened.ok()) return refuse(opened.status());
  Status valid = ValidatePayload(opened->payload, static_cast<size_t>(config_.max_attachments));
  if (!valid.ok()) return refuse(valid);
  if (h.expires_unix_ms() > 0 && h.expires_unix_ms() < now) {
    // Signed, so the expiry is the sender's own: a replay of an old envelope ends here.
    return refuse(Status(Code::kInvalidArgument,
                         fmt::format("envelope expired at {}", FormatTime(h.expires_unix_ms()))));
  }
  row.title = opened->payload.title();

  std::string subject;
  for (X509* c : sender_certs) {
    if (crypto::Hex(crypto::CertFingerprint(c)) == opened->signer_fingerprint) {
      subject = crypto::SubjectOf(c);
    }
  }
  if (config_.delivery == "api") {
    // Kept in the store (payload included) until the archive system peeks, pops and deletes it.
    row.state = "api";
    opened->payload.SerializeToString(&row.payload);
    Status kept = store_->RecordIncoming(row, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", now);
    if (!kept.ok()) return DeferDelivery(id, kept.Context("storing it for the API"));
    Log()->info("message {} from {} kept for the HTTP API ({} attachment(s); "
                "INNKOMMENDE_MOTTATT)",
                id, h.sender(), opened->payload.attachments_size());
    AnswerAfterCommit(id, wire::MOTTATT, "");
    return;
  }
  SignerInfo signer{subject, sender->digits(), opened->signer_fingerprint};
  Status written = inbox_batch_.Stage(*opened, signer, now);
  // Published before the turn's commit (FinishTurn), at once when there is no turn.
  if (written.ok() && !store_->InTurn()) written = inbox_batch_.Publish();
  if (!written.ok()) return DeferDelivery(id, written.Context("cannot write the inbox"));
  Status recorded =
      store_->RecordIncoming(row, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", now);
  if (!recorded.ok()) return DeferDelivery(id, recorded.Context("recording it in the store"));
  Log()->info("message {} from {} written to inbox ({} attachment(s); INNKOMMENDE_MOTTATT)", id,
              h.sender(), opened->payload.attachments_size());
  AnswerAfterCommit(id, wire::MOTTATT, "");
}

void Engine::OnStatusNotice(const wire::StatusNotice& n) {
  auto advanced = store_->ApplyStatus(n.message_id(), "OUT", n.status(), n.reason(),
                                      n.at_unix_ms() ? n.at_unix_ms() : NowMs());
  if (!advanced.ok() && advanced.status().code() != Code::kNotFound) {
    Log()->error("message {}: cannot record {}: {}", n.message_id(), StatusName(n.status()),
                 advanced.status().ToString());
    return;  // not acknowledged: the broker sends it again
  }
  if (!advanced.ok()) {
    Log()->warn("status {} for unknown message {} ignored", StatusName(n.status()),
                n.message_id());
  } else {
    Log()->info("message {}: {}{}{}", n.message_id(), StatusName(n.status()),
                n.reason().empty() ? "" : " (" + n.reason() + ")",
                *advanced ? "" : " (kept in history; does not change the current status)");
  }
  auto ack = NewClientMessage();
  ack.mutable_status_ack()->set_notice_id(n.notice_id());
  AfterCommit([this, ack = std::move(ack)] { SendToBroker(ack); });
}

void Engine::Tick() {
  const int64_t now = MonoMs();
  if (now - last_heard_mono_ > 3 * config_.heartbeat_ms) {
    // Silent (or, before a Welcome, unanswered) that long: start over with a new socket.
    Log()->warn("{} broker {} for {} ms; reconnecting", welcomed_ ? "nothing from" : "no Welcome from",
                config_.broker_endpoint, now - last_heard_mono_);
    metrics_.reconnects.fetch_add(1, std::memory_order_relaxed);
    ConnectBroker();
    return;
  }
  if (!welcomed_) {
    if (now - last_hello_mono_ >= hello_backoff_ms_) {
      auto hello = NewClientMessage();
      hello.mutable_hello()->set_orgnr(me_.wire());
      hello.mutable_hello()->set_credit(static_cast<uint32_t>(config_.credit));
      if (last_hello_mono_ != 0 && hello_backoff_ms_ >= 1600) {
        // The first few go unremarked (a broker starting); after that an operator should see it.
        Log()->warn("no Welcome from broker {} yet; sending Hello again", config_.broker_endpoint);
      }
      SendToBroker(hello);
      last_hello_mono_ = now;
      hello_backoff_ms_ = std::min<int64_t>(hello_backoff_ms_ * 2, 5000);
    }
    return;
  }
  if (now - last_heartbeat_mono_ >= config_.heartbeat_ms) {
    auto hb = NewClientMessage();
    hb.mutable_heartbeat()->set_at_unix_ms(NowMs());
    SendToBroker(hb);
    last_heartbeat_mono_ = now;
  }
  bool expired = false;
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (now - it->second >= config_.submit_timeout_ms) {
      Log()->warn("message {}: no answer to submit within {} ms; submitting again", it->first,
                  config_.submit_timeout_ms);
      it = in_flight_.erase(it);
      expired = true;
    } else {
      ++it;
    }
  }
  if (expired) outgoing_dirty_ = true;
  if (now - last_checkpoint_mono_ >= 60000) {
    Status c = store_->db().Checkpoint();
    if (!c.ok()) Log()->warn("WAL checkpoint: {}", c.ToString());
    last_checkpoint_mono_ = now;
  }
  if (now - last_reports_mono_ >= 1000) {
    SendPendingReports(false);
    last_reports_mono_ = now;
  }
}

}  // namespace bud::ip
