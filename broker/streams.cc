// Chunked transfer on the broker. See streams.h and docs/large-messages.md.
#include "broker/streams.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/message_channel.h"
#include "common/orgnr.h"
#include "common/uuid.h"
#include "common/wire/zmq.h"

namespace bud::broker {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("broker"); }
constexpr int64_t kProgressEveryMs = 5000;

wire::BrokerMessage NewMessage() {
  wire::BrokerMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  return m;
}

wire::BrokerMessage SubmitReplyMsg(const std::string& id, wire::SubmitCode code,
                                   const std::string& reason) {
  auto m = NewMessage();
  auto* r = m.mutable_submit_reply();
  r->set_message_id(id);
  r->set_code(code);
  r->set_reason(reason);
  return m;
}

std::string Progress(uint64_t done, uint64_t total, int64_t since_mono) {
  const double secs = static_cast<double>(std::max<int64_t>(MonoMs() - since_mono, 1)) / 1000.0;
  return fmt::format("{} of {} bytes ({:.0f} %, {:.1f} MB/s)", done, total,
                     total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0,
                     static_cast<double>(done) / 1e6 / secs);
}
}  // namespace

std::string RetryLaterReason(Code code) {
  return fmt::format("broker could not store the message ({}); retry later", CodeName(code));
}

namespace {
// kInvalidArgument naming `field` when `value` is longer than `max` or holds a control character.
Status CheckText(const char* field, const std::string& value, size_t max) {
  if (value.size() > max) {
    return Status(Code::kInvalidArgument,
                  fmt::format("header field {} has {} bytes, at most {} are accepted", field,
                              value.size(), max));
  }
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) {
      return Status(Code::kInvalidArgument,
                    fmt::format("header field {} holds a control character", field));
    }
  }
  return Status::Ok();
}
}  // namespace

Result<Routing> CheckRouting(const wire::Header& h, const std::string& mailbox, int64_t now_ms,
                             const RoutingLimits& limits) {
  const auto [org, channel] = SplitMailboxKey(mailbox);
  if (!IsUuid(h.message_id())) return Status(Code::kInvalidArgument, "message id is not a UUID");
  if (h.sender() != org) {
    // The claimed sender is only echoed once it is known to be short and printable.
    const bool printable = CheckText("sender", h.sender(), 32).ok();
    return Status(Code::kInvalidArgument,
                  fmt::format("envelope sender {} is not the submitting organisation {}",
                              printable ? h.sender() : std::string("(unprintable)"), org));
  }
  if (h.sender_channel() != channel) {
    const bool printable = CheckChannel(h.sender_channel(), "").ok();
    return Status(Code::kInvalidArgument,
                  fmt::format("envelope sender_channel {} is not the message channel of this "
                              "session ({}): a point sends on its own channel only",
                              !printable                   ? std::string("(invalid)")
                              : h.sender_channel().empty() ? std::string("(none)")
                                                           : "'" + h.sender_channel() + "'",
                              channel.empty() ? std::string("none") : "'" + channel + "'"));
  }
  BUD_RETURN_IF_ERROR(CheckChannel(h.receiver_channel(), "envelope receiver_channel"));
  auto receiver = Orgnr::Parse(h.receiver());
  if (!receiver.ok()) return Status(Code::kInvalidArgument, "envelope receiver is not an organisation number");
  BUD_RETURN_IF_ERROR(CheckText("conversation_id", h.conversation_id(), kMaxConversationIdBytes));
  BUD_RETURN_IF_ERROR(CheckText("process", h.process(), kMaxProcessBytes));
  BUD_RETURN_IF_ERROR(CheckText("document_type", h.document_type(), kMaxProcessBytes));
  const int64_t expires =
      h.expires_unix_ms() > 0 ? h.expires_unix_ms() : now_ms + limits.default_ttl_ms;
  if (expires <= now_ms) {
    return Status(Code::kInvalidArgument, fmt::format("envelope expired at {}", FormatTime(expires)));
  }
  if (expires - now_ms > limits.max_ttl_ms) {
    return Status(Code::kInvalidArgument,
                  fmt::format("envelope expires at {}, more than {} days ahead (the broker keeps "
                              "a message at most that long)",
                              FormatTime(expires), limits.max_ttl_ms / 86400000));
  }
  return Routing{receiver->wire(), expires, h.sender_channel(), h.receiver_channel()};
}

bool IsStreamHead(const std::string& envelope) {
  return envelope.size() <= crypto::kMaxStreamHeadBytes &&
         crypto::ParseStreamHead(envelope, UINT64_MAX >> 1).ok();
}

wire::BrokerMessage DeliveryMessage(const std::string& envelope, uint32_t attempt) {
  auto m = NewMessage();
  if (IsStreamHead(envelope)) {
    m.mutable_deliver_stream()->set_head(envelope);
    m.mutable_deliver_stream()->set_attempt(attempt);
  } else {
    m.mutable_deliver()->set_envelope(envelope);
    m.mutable_deliver()->set_attempt(attempt);
  }
  return m;
}

Streams::Streams(QueueStore& store, std::string spool_dir, const StreamLimits& limits)
    : store_(store),
      chunks_in_store_(store.StoresChunks()),
      dir_(std::move(spool_dir)),
      limits_(limits),
      max_payload_(limits.max_payload),
      window_(limits.window),
      store_max_bytes_(limits.store_max_bytes) {}

Streams::~Streams() {
  for (auto& [id, u] : uploads_) {
    if (u.fd >= 0) ::close(u.fd);
  }
  for (auto& [id, o] : outgoing_) {
    if (o.fd >= 0) ::close(o.fd);
  }
}

std::string Streams::SpoolPath(const std::string& message_id) const {
  return JoinPath(dir_, message_id);
}

Status Streams::Init() {
  if (dir_.empty() && !chunks_in_store_) {
    return Status(Code::kInvalidArgument, "no spool folder for the chunks of streamed messages");
  }
  if (!dir_.empty()) BUD_RETURN_IF_ERROR(MakeDirs(dir_));
  std::set<std::string> owned;
  std::vector<std::string> unusable;
  BUD_ASSIGN_OR_RETURN(auto rows, store_.LoadUploads());
  const int64_t now = NowMs();
  for (auto& row : rows) {
    const std::string id = row.message_id;
    Upload u;
    u.org = std::move(row.sender);
    u.receiver = std::move(row.receiver);
    u.head = std::move(row.head);
    u.committed = u.received = row.next_chunk;
    u.expires_ms = row.expires_ms;
    u.touched_ms = now;  // a restart gives every upload a fresh idle period
    u.started_mono = u.last_log_mono = MonoMs();
    auto head = crypto::ParseStreamHead(u.head, max_payload_);
    if (!head.ok() || !IsUuid(id) || u.committed > head->layout.chunk_count) {
      unusable.push_back(id);
      continue;
    }
    u.layout = head->layout;
    u.sender_channel = head->header.sender_channel();
    u.receiver_channel = head->header.receiver_channel();
    owned.insert(id);
    spool_bytes_ += u.layout.ciphertext_size;  // reserved for the whole stream
    // Bytes past the committed chunk may be torn: they go, and are sent again.
    // (The last record is shorter: a complete spool keeps exactly ciphertext_size bytes.)
    const uint64_t keep = std::min(u.layout.RecordOffset(u.committed), u.layout.ciphertext_size);
    if (!chunks_in_store_ && ::truncate(SpoolPath(id).c_str(), static_cast<off_t>(keep)) != 0 &&
        errno != ENOENT) {
      return ErrnoStatus(errno, "truncating spool of " + id);
    }
    uploads_.emplace(id, std::move(u));
  }
  for (const auto& id : unusable) {
    Log()->warn("upload {} dropped: its head does not parse within max_payload_bytes", id);
    // Its spool file, if any, is an orphan now and goes below.
  }
  BUD_RETURN_IF_ERROR(store_.DropUploads(unusable));
  if (dir_.empty()) return Status::Ok();  // no spool files: the store keeps the chunks
  BUD_ASSIGN_OR_RETURN(auto names, ListDir(dir_));
  for (const auto& name : names) {
    if (owned.contains(name)) {
      spooled_.insert(name);
      continue;
    }
    if (!IsQueued(name)) {
      Log()->info("removing spool file {} that no upload or queued message owns", name);
      (void)RemoveAll(SpoolPath(name));
    } else if (struct stat st; ::stat(SpoolPath(name).c_str(), &st) == 0) {
      spool_bytes_ += static_cast<uint64_t>(st.st_size);
      spooled_.insert(name);
    }
  }
  return Status::Ok();
}

void Streams::LogRefusal(const std::string& org, const std::string& line) {
  // One line per organisation and second: a flood of refused heads must not flood the log.
  auto& [last_mono, suppressed] = refusal_log_[org];
  if (MonoMs() - last_mono < 1000) {
    ++suppressed;
    return;
  }
  if (suppressed > 0) {
    Log()->warn("{} (and {} more refused submits from {} in the last second)", line, suppressed, org);
  } else {
    Log()->warn("{}", line);
  }
  last_mono = MonoMs();
  suppressed = 0;
}

bool Streams::EnsureFd(const std::string& id, Upload& u) {
  if (u.fd >= 0) return true;
  u.fd = ::open(SpoolPath(id).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (u.fd < 0) {
    Log()->error("message {}: cannot open spool: {}", id, std::strerror(errno));
    return false;
  }
  spooled_.insert(id);
  // Anything past the committed chunk is not trusted (a torn write before a crash); the
  // descriptor is closed only when nothing uncommitted was written.
  u.received = u.committed;
  const uint64_t keep = std::min(u.layout.RecordOffset(u.committed), u.layout.ciphertext_size);
  if (::ftruncate(u.fd, static_cast<off_t>(keep)) != 0) {
    Log()->error("message {}: cannot truncate spool: {}", id, std::strerror(errno));
    ::close(u.fd);
    u.fd = -1;
    return false;
  }
  return true;
}

size_t Streams::open_upload_fds() const {
  size_t n = 0;
  for (const auto& [id, u] : uploads_) n += u.fd >= 0 ? 1 : 0;
  return n;
}

void Streams::DropUpload(const std::string& id, const std::string& why) {
  auto it = uploads_.find(id);
  if (it == uploads_.end()) return;
  Log()->info("message {} from {}: upload dropped ({}), {} of {} chunks had arrived", id,
              it->second.org, why, it->second.committed, it->second.layout.chunk_count);
  spool_bytes_ -= std::min(spool_bytes_, it->second.layout.ciphertext_size);
  CloseUpload(id);
  (void)RemoveAll(SpoolPath(id));
  spooled_.erase(id);
  if (Status st = store_.DropUploads({id}); !st.ok()) {
    Log()->error("message {}: cannot delete its upload row: {}", id, st.ToString());
  }
}

bool Streams::IsQueued(const std::string& id) {
  auto queued = store_.IsQueued(id);
  return !queued.ok() || *queued;  // unknown: keep the spool
}

void Streams::ForgetHere(const std::string& id) {
  auto it = uploads_.find(id);
  if (it == uploads_.end()) return;
  spool_bytes_ -= std::min(spool_bytes_, it->second.layout.ciphertext_size);
  CloseUpload(id);
}

Result<Streams::Upload*> Streams::SyncWithStore(const std::string& id) {
  BUD_ASSIGN_OR_RETURN(std::optional<UploadRow> row, store_.FindUpload(id));
  auto it = uploads_.find(id);
  if (it != uploads_.end() &&
      (!row || row->head != it->second.head || row->sender != it->second.org)) {
    Log()->info("message {}: upload {}; forgotten here", id,
                row ? "replaced in the store by another one"
                    : "no longer in the store (finished or dropped by another broker)");
    ForgetHere(id);
    it = uploads_.end();
  }
  if (!row) return static_cast<Upload*>(nullptr);
  if (it == uploads_.end()) {
    auto head = crypto::ParseStreamHead(row->head, max_payload_);
    if (!head.ok()) return head.status().Context("the stored upload's head");
    if (row->next_chunk > head->layout.chunk_count) {
      return Status(Code::kMalformed, fmt::format("the stored upload is at chunk {} of {}",
                                                  row->next_chunk, head->layout.chunk_count));
    }
    Upload u;
    u.org = std::move(row->sender);
    u.receiver = std::move(row->receiver);
    u.head = std::move(row->head);
    u.committed = u.received = row->next_chunk;
    u.expires_ms = row->expires_ms;
    u.layout = head->layout;
    u.sender_channel = head->header.sender_channel();
    u.receiver_channel = head->header.receiver_channel();
    u.touched_ms = NowMs();
    u.started_mono = u.last_log_mono = MonoMs();
    it = uploads_.emplace(id, std::move(u)).first;
    spool_bytes_ += it->second.layout.ciphertext_size;
    Log()->info(
        "message {} from {}: upload taken over from the store at chunk {} of {} "
        "(offset {}); it was under way on another broker",
        id, it->second.org, it->second.committed, it->second.layout.chunk_count,
        it->second.layout.RecordOffset(it->second.committed));
    return &it->second;
  }
  Upload& u = it->second;
  if (!u.handed && row->next_chunk != u.committed) {
    Log()->info("message {}: upload moved on by another broker from chunk {} to {}", id,
                u.committed, row->next_chunk);
    u.committed = u.received = row->next_chunk;
    u.pending.clear();
    u.touched_ms = NowMs();
  }
  return &u;
}

size_t Streams::SweepUploads(int64_t now_ms) {
  std::vector<std::pair<std::string, std::string>> gone;
  std::vector<std::string> idle;
  for (const auto& [id, u] : uploads_) {
    if (u.expires_ms <= now_ms) {
      gone.emplace_back(id, fmt::format("the envelope expired at {}", FormatTime(u.expires_ms)));
    } else if (now_ms - u.touched_ms >= limits_.upload_idle_ms) {
      idle.push_back(id);
    }
  }
  for (const auto& id : idle) {
    const int64_t idle_ms = now_ms - uploads_.at(id).touched_ms;
    if (chunks_in_store_) {
      // Idle here, maybe not in the store: another broker may have it now.
      const uint64_t before = uploads_.at(id).committed;
      auto synced = SyncWithStore(id);
      if (!synced.ok()) continue;  // the store cannot tell now: the next sweep decides
      if (*synced == nullptr || (*synced)->committed != before) continue;
    }
    gone.emplace_back(id, fmt::format("no chunk for {} ms", idle_ms));
  }
  for (const auto& [id, why] : gone) {
    if (uploads_.at(id).handed && IsQueued(id)) {
      // Complete and queued, only its row was left (FinishUploads failed): the spool is the
      // queued message's now.
      FinishUploads({id});
      continue;
    }
    DropUpload(id, why);
  }
  return gone.size();
}

void Streams::CloseUpload(const std::string& id) {
  auto it = uploads_.find(id);
  if (it == uploads_.end()) return;
  if (it->second.fd >= 0) ::close(it->second.fd);
  uploads_.erase(it);
}

Streams::Started Streams::OnSubmitStream(
    const std::string& mailbox, const std::string& head_bytes,
    const std::function<std::string(const SubmitItem&)>& admit) {
  const std::string org = SplitMailboxKey(mailbox).first;
  Started out;
  auto reject = [&](const std::string& id, const std::string& why) {
    LogRefusal(org, fmt::format("streamed submit of message {} from {} rejected: {}",
                                id.empty() ? "?" : id, org, why));
    out.reply = SubmitReplyMsg(id, wire::REJECTED, why);
    return out;
  };
  auto head = crypto::ParseStreamHead(head_bytes, max_payload_);
  if (!head.ok()) return reject("", head.status().ToString());
  const wire::Header& h = head->header;
  const std::string id = IsUuid(h.message_id()) ? h.message_id() : std::string();
  auto routing = CheckRouting(h, mailbox, NowMs(), limits_.routing);
  if (!routing.ok()) return reject(id, routing.status().message());
  SubmitItem item{id,
                  org,
                  routing->receiver,
                  head_bytes,
                  routing->expires_ms,
                  false,
                  false,
                  {},
                  routing->sender_channel,
                  routing->receiver_channel};
  auto retry_later = [&](const std::string& why) {
    LogRefusal(org, fmt::format("message {} from {}: streamed upload refused for now: {}", id,
                                org, why));
    out.reply = SubmitReplyMsg(id, wire::RETRY_LATER, why);
    return out;
  };

  // Known already (queued, delivered or done): the group commit answers as for any duplicate.
  auto known = store_.IsKnown(id);
  if (chunks_in_store_) {
    if (!known.ok()) {
      // Whether the message is already taken decides between a duplicate and an upload.
      Log()->error("message {}: cannot read the store: {}", id, known.status().ToString());
      out.reply = SubmitReplyMsg(id, wire::RETRY_LATER, "broker could not read the store");
      return out;
    }
    if (*known) {
      // An upload row left behind (its broker stopped between queueing the message and deleting
      // the row) goes; DropUploads keeps the chunks while the message is queued.
      auto row = store_.FindUpload(id);
      if (uploads_.contains(id) || (row.ok() && row->has_value())) {
        ForgetHere(id);
        if (Status st = store_.DropUploads({id}); !st.ok()) {
          Log()->error("message {}: cannot remove its leftover upload row: {}", id, st.ToString());
        } else {
          Log()->info("message {}: leftover upload row removed (the message was already taken)",
                      id);
        }
      }
      out.item = std::move(item);
      return out;
    }
    // The row is the truth: taken over from another broker, or moved on by one.
    if (auto synced = SyncWithStore(id); !synced.ok()) {
      Log()->error("message {}: cannot read its upload from the store: {}", id,
                   synced.status().ToString());
      out.reply = SubmitReplyMsg(id, wire::RETRY_LATER, "broker could not read the upload");
      return out;
    }
  } else if (known.ok() && *known && !uploads_.contains(id)) {
    out.item = std::move(item);
    return out;
  }
  auto found = uploads_.find(id);
  Upload* u = found == uploads_.end() ? nullptr : &found->second;
  if (u == nullptr) {
    // Caps before anything is stored: the head is not verified here.
    int64_t of_org = 0;
    uint64_t reserved_by_org = 0;
    for (const auto& [other, up] : uploads_) {
      if (up.org != org) continue;
      ++of_org;
      reserved_by_org += up.layout.ciphertext_size;
    }
    if (of_org >= limits_.max_uploads_per_org) {
      return retry_later(fmt::format("{} has {} streamed uploads in progress, the most the broker "
                                     "takes from one organisation (max_uploads_per_org); retry "
                                     "later",
                                     org, of_org));
    }
    // By default a quarter of the quota, but always room for one stream of max_payload_bytes
    // (plus its chunk tags, at most 1/256 of it).
    const int64_t one_stream = static_cast<int64_t>(max_payload_ + max_payload_ / 256);
    const int64_t org_bytes = limits_.max_upload_bytes_per_org > 0
                                  ? limits_.max_upload_bytes_per_org
                                  : (store_max_bytes_ > 0 ? std::max(store_max_bytes_ / 4, one_stream)
                                                          : 0);
    if (org_bytes > 0 && reserved_by_org + head->layout.ciphertext_size >
                             static_cast<uint64_t>(org_bytes)) {
      return retry_later(fmt::format("{} has {} bytes of streamed uploads in progress; {} more "
                                     "would pass the {} one organisation may reserve "
                                     "(max_upload_bytes_per_org); retry later",
                                     org, reserved_by_org, head->layout.ciphertext_size,
                                     org_bytes));
    }
    if (static_cast<int64_t>(uploads_.size()) >= limits_.max_uploads) {
      return retry_later(fmt::format("the broker has {} streamed uploads in progress, its limit "
                                     "(max_uploads); retry later",
                                     uploads_.size()));
    }
    if (admit) {
      if (std::string why = admit(item); !why.empty()) return retry_later(why);
    }
  }
  if (u == nullptr && store_max_bytes_ > 0) {
    // store_max_bytes counts the store and the spool files; the whole stream is reserved now.
    auto db_bytes = store_.BytesUsed();
    const uint64_t need = head->layout.ciphertext_size;
    if (db_bytes.ok() && static_cast<uint64_t>(*db_bytes) + spool_bytes_ + need >
                             static_cast<uint64_t>(store_max_bytes_)) {
      LogRefusal(org, fmt::format("message {} from {}: streamed upload of {} bytes refused for "
                                  "now (retry later): the store would exceed its quota of {} "
                                  "bytes ({} bytes in the store, {} in spool files)",
                                  id, org, need, store_max_bytes_, *db_bytes, spool_bytes_));
      out.reply = SubmitReplyMsg(id, wire::RETRY_LATER, RetryLaterReason(Code::kDiskFull));
      return out;
    }
  }
  if (u == nullptr) {
    Status st = store_.InsertUpload({id, org, item.receiver, head_bytes, 0, item.expires_ms});
    if (!st.ok()) {
      Log()->error("message {}: cannot record the upload: {}", id, st.ToString());
      out.reply = SubmitReplyMsg(id, wire::RETRY_LATER, "broker could not store the upload");
      return out;
    }
    Upload nu;
    nu.org = org;
    nu.sender_channel = item.sender_channel;
    nu.receiver_channel = item.receiver_channel;
    nu.receiver = item.receiver;
    nu.head = head_bytes;
    nu.expires_ms = item.expires_ms;
    nu.layout = head->layout;
    nu.started_mono = nu.last_log_mono = MonoMs();
    // No spool file and no descriptor yet: the first chunk opens them.
    u = &uploads_.emplace(id, std::move(nu)).first->second;
    spool_bytes_ += u->layout.ciphertext_size;
    Log()->info("message {} from {} to {}: streamed upload of {} bytes in {} chunks started", id,
                org, item.receiver, u->layout.ciphertext_size, u->layout.chunk_count);
  } else {
    if (u->org != org || u->head != head_bytes) {
      return reject(id, "an upload with this message id and another head is in progress");
    }
    Log()->info("message {}: upload resuming at chunk {} (offset {})", id, u->committed,
                u->layout.RecordOffset(u->committed));
    u->handed = false;  // a hand-over that was not finished: the next Flush hands it again
    // Unacknowledged chunks are sent again; a descriptor is kept only when nothing uncommitted
    // was written through it (EnsureFd cuts the spool back).
    if (u->fd >= 0) {
      ::close(u->fd);
      u->fd = -1;
    }
  }
  u->touched_ms = NowMs();
  u->received = u->committed;  // everything unacknowledged is sent again
  u->pending.clear();
  if (u->committed == u->layout.chunk_count) {
    // Complete before a crash; the next Flush finishes it.
    u->received = u->committed;
  }
  auto m = NewMessage();
  auto* s = m.mutable_stream_start();
  s->set_message_id(id);
  s->set_next_chunk(u->committed);
  s->set_window(window_);
  out.reply = std::move(m);
  return out;
}

std::optional<wire::BrokerMessage> Streams::OnUploadChunk(const std::string& mailbox,
                                                          wire::Chunk& chunk) {
  auto it = uploads_.find(chunk.message_id());
  if (it == uploads_.end() || MailboxKey(it->second.org, it->second.sender_channel) != mailbox) {
    Log()->debug("chunk for unknown upload {} from {} dropped", chunk.message_id(), mailbox);
    return std::nullopt;
  }
  Upload& u = it->second;
  if (u.handed) return std::nullopt;
  if (chunk.index() != u.received) return std::nullopt;  // a resend or a gap: dropped
  if (chunk.index() >= u.layout.chunk_count ||
      chunk.record().size() != u.layout.RecordSize(chunk.index())) {
    const std::string id = chunk.message_id();
    Log()->warn("message {}: chunk {} has {} bytes, not {}; upload refused", id, chunk.index(),
                chunk.record().size(),
                chunk.index() < u.layout.chunk_count ? u.layout.RecordSize(chunk.index()) : 0);
    return SubmitReplyMsg(id, wire::REJECTED,
                          fmt::format("chunk {} does not fit the head's layout", chunk.index()));
  }
  if (chunks_in_store_) {
    u.pending.push_back({chunk.index(), std::move(*chunk.mutable_record())});
    u.received++;
    return std::nullopt;
  }
  if (!EnsureFd(chunk.message_id(), u)) return std::nullopt;  // sent again after StreamStart
  const std::string& rec = chunk.record();
  const off_t off = static_cast<off_t>(u.layout.RecordOffset(chunk.index()));
  size_t done = 0;
  while (done < rec.size()) {
    ssize_t n = ::pwrite(u.fd, rec.data() + done, rec.size() - done, off + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      Log()->error("message {}: writing chunk {}: {}", chunk.message_id(), chunk.index(),
                   std::strerror(errno));
      return std::nullopt;  // not acknowledged; sent again after the next StreamStart
    }
    done += static_cast<size_t>(n);
  }
  u.received++;
  return std::nullopt;
}

Status Streams::CheckStoredDigest(const std::string& id, Upload& u) {
  auto head = crypto::ParseStreamHead(u.head, max_payload_);
  if (!head.ok()) return head.status();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  uint64_t total = 0;
  Status result = Status::Ok();
  for (uint64_t i = 0; i < u.layout.chunk_count; ++i) {
    auto rec = store_.ReadChunk(id, i);
    if (!rec.ok()) {
      result = rec.status();
      break;
    }
    if (rec->size() != u.layout.RecordSize(i)) {
      result = Status(Code::kMalformed, fmt::format("stored chunk {} has {} bytes, the head says {}",
                                                    i, rec->size(), u.layout.RecordSize(i)));
      break;
    }
    total += rec->size();
    EVP_DigestUpdate(ctx, rec->data(), rec->size());
  }
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  if (!result.ok()) return result;
  if (total != u.layout.ciphertext_size) {
    return Status(Code::kMalformed, fmt::format("the stored chunks have {} bytes, the head says {}",
                                                total, u.layout.ciphertext_size));
  }
  if (std::string(reinterpret_cast<char*>(md), len) != head->header.payload_sha256()) {
    return Status(Code::kDigestMismatch, "the stream's SHA-256 is not the one in the head");
  }
  return Status::Ok();
}

Status Streams::CheckDigest(const std::string& id, Upload& u) {
  if (!EnsureFd(id, u)) return Status(Code::kIo, "cannot open the spool of " + id);
  struct stat st;
  if (::fstat(u.fd, &st) != 0) return ErrnoStatus(errno, "stat spool " + id);
  if (static_cast<uint64_t>(st.st_size) != u.layout.ciphertext_size) {
    return Status(Code::kMalformed, fmt::format("spool has {} bytes, the head says {}", st.st_size,
                                                u.layout.ciphertext_size));
  }
  auto head = crypto::ParseStreamHead(u.head, max_payload_);
  if (!head.ok()) return head.status();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  buf_.resize(1 << 20);
  off_t off = 0;
  Status result = Status::Ok();
  while (off < st.st_size) {
    ssize_t n = ::pread(u.fd, buf_.data(), buf_.size(), off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      result = ErrnoStatus(n < 0 ? errno : EIO, "reading spool " + id);
      break;
    }
    EVP_DigestUpdate(ctx, buf_.data(), static_cast<size_t>(n));
    off += n;
  }
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  if (!result.ok()) return result;
  if (std::string(reinterpret_cast<char*>(md), len) != head->header.payload_sha256()) {
    return Status(Code::kDigestMismatch, "the stream's SHA-256 is not the one in the head");
  }
  return Status::Ok();
}

void Streams::Flush(const std::function<void(const std::string&, const wire::BrokerMessage&)>& send,
                    std::vector<SubmitItem>* complete) {
  std::vector<std::string> dirty;
  for (auto& [id, u] : uploads_) {
    if (u.handed) continue;
    if (u.received > u.committed || u.committed == u.layout.chunk_count) {
      dirty.push_back(id);
    } else if (u.fd >= 0) {
      // Nothing arrived since the last commit: an idle upload holds no descriptor.
      ::close(u.fd);
      u.fd = -1;
    }
  }
  if (dirty.empty()) return;
  std::vector<std::string> synced;
  for (const auto& id : dirty) {
    Upload& u = uploads_[id];
    if (!chunks_in_store_ && u.received > u.committed && (u.fd < 0 || ::fdatasync(u.fd) != 0)) {
      Log()->error("message {}: fsync of spool failed: {}", id, std::strerror(errno));
      u.received = u.committed;
      continue;
    }
    synced.push_back(id);
  }
  {
    Status st;
    if (chunks_in_store_) {
      std::vector<QueueStore::UploadProgress> progress;
      for (const auto& id : synced) {
        Upload& u = uploads_[id];
        progress.push_back({id, u.received, std::move(u.pending)});
        u.pending.clear();
      }
      auto stored = store_.CommitUploadChunks(progress);
      st = stored.status();
      if (stored.ok()) {
        const std::set<std::string> gone(stored->begin(), stored->end());
        for (const auto& id : gone) {
          Log()->info(
              "message {}: upload no longer in the store (finished or dropped by another "
              "broker); its chunks not stored, forgotten here",
              id);
          ForgetHere(id);
        }
        std::erase_if(synced, [&](const std::string& id) { return gone.contains(id); });
      }
    } else {
      std::vector<std::pair<std::string, uint64_t>> positions;
      for (const auto& id : synced) positions.emplace_back(id, uploads_[id].received);
      st = store_.SetUploadPositions(positions);
    }
    if (!st.ok()) {
      // Not acknowledged: the sender sends them again after its next StreamStart.
      Log()->error("committing {} upload(s) failed: {}", synced.size(), st.ToString());
      for (const auto& id : synced) uploads_[id].received = uploads_[id].committed;
      return;
    }
  }
  for (const auto& id : synced) {
    Upload& u = uploads_[id];
    u.committed = u.received;
    u.touched_ms = NowMs();
    auto m = NewMessage();
    m.mutable_chunk_ack()->set_message_id(id);
    m.mutable_chunk_ack()->set_next_chunk(u.committed);
    send(MailboxKey(u.org, u.sender_channel), m);
    const uint64_t bytes = u.layout.RecordOffset(u.committed);
    if (MonoMs() - u.last_log_mono >= kProgressEveryMs) {
      Log()->info("message {}: received {}", id,
                  Progress(std::min(bytes, u.layout.ciphertext_size), u.layout.ciphertext_size,
                           u.started_mono));
      u.last_log_mono = MonoMs();
    }
    if (u.committed != u.layout.chunk_count) continue;
    // Checked once: a hand-over refused by a queue cap comes back here with the same spool.
    Status digest = u.digest_checked       ? Status::Ok()
                    : chunks_in_store_ ? CheckStoredDigest(id, u)
                                       : CheckDigest(id, u);
    if (!digest.ok()) {
      Log()->warn("message {} from {}: streamed upload refused: {}", id, u.org, digest.ToString());
      const std::string mailbox = MailboxKey(u.org, u.sender_channel);
      DropUpload(id, "its digest is not the head's");
      send(mailbox, SubmitReplyMsg(id, wire::REJECTED, digest.ToString()));
      continue;
    }
    if (!u.digest_checked) {
      Log()->info("message {}: all {} chunks ({} bytes) durable, digest checked", id,
                  u.layout.chunk_count, u.layout.ciphertext_size);
    }
    u.digest_checked = true;
    complete->push_back(SubmitItem{id,
                                   u.org,
                                   u.receiver,
                                   u.head,
                                   u.expires_ms,
                                   false,
                                   false,
                                   {},
                                   u.sender_channel,
                                   u.receiver_channel});
    if (u.fd >= 0) ::close(u.fd);
    u.fd = -1;
    u.handed = true;
  }
}

void Streams::FinishUploads(const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  if (Status st = store_.DeleteUploads(ids); !st.ok()) {
    Log()->error("removing finished uploads: {}", st.ToString());
    return;  // still handed: a resubmitted head or the sweep settles them
  }
  for (const auto& id : ids) {
    if (auto it = uploads_.find(id); chunks_in_store_ && it != uploads_.end()) {
      // Stored: the chunks count in the store's own size from now on.
      spool_bytes_ -= std::min(spool_bytes_, it->second.layout.ciphertext_size);
    }
    CloseUpload(id);
  }
}

void Streams::OnResume(const std::string& rid, const std::string& org, const wire::StreamResume& r,
                       const std::string& head_bytes) {
  auto head = crypto::ParseStreamHead(head_bytes, UINT64_MAX >> 1);
  if (!head.ok()) return;
  auto it = outgoing_.find(r.message_id());
  if (it == outgoing_.end()) {
    Outgoing o;
    if (!chunks_in_store_) o.fd = ::open(SpoolPath(r.message_id()).c_str(), O_RDONLY | O_CLOEXEC);
    if (!chunks_in_store_ && o.fd < 0) {
      Log()->error("message {}: cannot open spool for delivery: {}", r.message_id(),
                   std::strerror(errno));
      return;
    }
    o.last_log_mono = MonoMs();
    it = outgoing_.emplace(r.message_id(), std::move(o)).first;
  }
  Outgoing& o = it->second;
  o.rid = rid;
  o.org = org;
  o.layout = head->layout;
  o.next_send = o.acked = std::min<uint64_t>(r.next_chunk(), o.layout.chunk_count);
  Log()->info("message {}: delivery to {} {} at chunk {} (offset {}){}", r.message_id(), org,
              o.acked == 0 ? "starting" : "resuming", o.acked, o.layout.RecordOffset(o.acked),
              r.reason().empty() ? "" : " (" + r.reason().substr(0, 200) + ")");
}

void Streams::OnDeliveryAck(const std::string& rid, const wire::ChunkAck& ack) {
  auto it = outgoing_.find(ack.message_id());
  if (it == outgoing_.end() || it->second.rid != rid) return;
  Outgoing& o = it->second;
  if (ack.next_chunk() > o.acked && ack.next_chunk() <= o.next_send) o.acked = ack.next_chunk();
  if (MonoMs() - o.last_log_mono >= kProgressEveryMs) {
    Log()->info("message {}: delivered to {}: {} of {} bytes acknowledged", ack.message_id(),
                o.org, std::min(o.layout.RecordOffset(o.acked), o.layout.ciphertext_size),
                o.layout.ciphertext_size);
    o.last_log_mono = MonoMs();
  }
}

void Streams::Pump(const std::function<bool(const std::string&, const wire::BrokerMessage&)>& send) {
  // `send` may drop the session (a failed send), which drops its transfers (DropRid): look each
  // transfer up again after every send instead of holding an iterator across it.
  std::vector<std::string> ids;
  for (const auto& [id, o] : outgoing_) ids.push_back(id);
  for (const auto& id : ids) {
    for (auto it = outgoing_.find(id); it != outgoing_.end(); it = outgoing_.find(id)) {
      Outgoing& o = it->second;
      if (o.next_send >= o.layout.chunk_count || o.next_send - o.acked >= window_) break;
      const uint64_t size = o.layout.RecordSize(o.next_send);
      auto m = NewMessage();
      auto* c = m.mutable_chunk();
      c->set_message_id(id);
      c->set_index(o.next_send);
      std::string* rec = c->mutable_record();
      bool read = false;
      if (chunks_in_store_) {
        auto stored = store_.ReadChunk(id, o.next_send);
        if (stored.ok() && stored->size() == size) {
          *rec = std::move(*stored);
          read = true;
        } else if (!stored.ok()) {
          Log()->error("message {}: reading chunk {}: {}", id, o.next_send,
                       stored.status().ToString());
        }
      } else {
        rec->resize(size);
        ssize_t n = ::pread(o.fd, rec->data(), size,
                            static_cast<off_t>(o.layout.RecordOffset(o.next_send)));
        read = n == static_cast<ssize_t>(size);
      }
      if (!read) {
        // The receiver asks again (StreamResume) after its next delivery of the head.
        Log()->error("message {}: chunk {} cannot be read; delivery stopped", id, o.next_send);
        if (o.fd >= 0) ::close(o.fd);
        outgoing_.erase(it);
        break;
      }
      o.next_send++;
      const std::string rid = o.rid;
      if (!send(rid, m)) {
        // The session is gone (DropRid has usually ended the transfer already); the spool stays
        // for the redelivery.
        if (auto gone = outgoing_.find(id); gone != outgoing_.end()) {
          if (gone->second.fd >= 0) ::close(gone->second.fd);
          outgoing_.erase(gone);
        }
        break;
      }
    }
  }
}

void Streams::DropRid(const std::string& rid) {
  for (auto it = outgoing_.begin(); it != outgoing_.end();) {
    if (it->second.rid == rid) {
      if (it->second.fd >= 0) ::close(it->second.fd);
      it = outgoing_.erase(it);
    } else {
      ++it;
    }
  }
}

void Streams::Forget(const std::string& message_id) {
  if (auto it = outgoing_.find(message_id); it != outgoing_.end()) {
    if (it->second.fd >= 0) ::close(it->second.fd);
    outgoing_.erase(it);
  }
  // Only a streamed message has a spool file: no file system call for the others (a stat per
  // delivered message was 5 % of the broker's CPU in pass-through).
  if (spooled_.erase(message_id) == 0) return;
  struct stat st;
  const std::string path = SpoolPath(message_id);
  if (::stat(path.c_str(), &st) == 0 && ::unlink(path.c_str()) == 0) {
    spool_bytes_ -= std::min(spool_bytes_, static_cast<uint64_t>(st.st_size));
    Log()->debug("message {}: spool removed", message_id);
  }
}

}  // namespace bud::broker
