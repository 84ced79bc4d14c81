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

Streams::Streams(storage::Db& db, std::string spool_dir, uint64_t max_payload, uint32_t window,
                 int64_t store_max_bytes)
    : db_(db),
      dir_(std::move(spool_dir)),
      max_payload_(max_payload),
      window_(window),
      store_max_bytes_(store_max_bytes) {}

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
  BUD_RETURN_IF_ERROR(MakeDirs(dir_));
  std::set<std::string> owned;
  BUD_ASSIGN_OR_RETURN(auto* q, db_.Prepare("SELECT message_id, head, next_chunk FROM uploads"));
  while (true) {
    BUD_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    owned.insert(q->Text(0));
    auto head = crypto::ParseStreamHead(q->Blob(1), max_payload_);
    if (!head.ok()) continue;
    spool_bytes_ += head->layout.ciphertext_size;  // reserved for the whole stream
    // Bytes past the committed chunk may be torn: they go, and are sent again.
    const uint64_t keep = head->layout.RecordOffset(static_cast<uint64_t>(q->Int(2)));
    if (::truncate(SpoolPath(q->Text(0)).c_str(), static_cast<off_t>(keep)) != 0 &&
        errno != ENOENT) {
      return ErrnoStatus(errno, "truncating spool of " + q->Text(0));
    }
  }
  BUD_ASSIGN_OR_RETURN(auto names, ListDir(dir_));
  for (const auto& name : names) {
    if (owned.contains(name)) continue;
    BUD_ASSIGN_OR_RETURN(auto* m, db_.Prepare(
        "SELECT 1 FROM messages WHERE seq=(SELECT seq FROM seen WHERE message_id=?)"));
    BUD_ASSIGN_OR_RETURN(bool queued, m->Bind(1, name).Step());
    m->Reset();
    if (!queued) {
      Log()->info("removing spool file {} that no upload or queued message owns", name);
      (void)RemoveAll(SpoolPath(name));
    } else if (struct stat st; ::stat(SpoolPath(name).c_str(), &st) == 0) {
      spool_bytes_ += static_cast<uint64_t>(st.st_size);
    }
  }
  return Status::Ok();
}

Streams::Upload* Streams::OpenUpload(const std::string& id) {
  if (auto it = uploads_.find(id); it != uploads_.end()) return &it->second;
  auto q = db_.Prepare("SELECT sender, receiver, head, next_chunk, expires_ms FROM uploads "
                       "WHERE message_id=?");
  if (!q.ok()) return nullptr;
  auto row = (*q)->Bind(1, id).Step();
  if (!row.ok() || !*row) {
    (*q)->Reset();
    return nullptr;
  }
  Upload u;
  u.org = (*q)->Text(0);
  u.receiver = (*q)->Text(1);
  u.head = (*q)->Blob(2);
  u.committed = u.received = static_cast<uint64_t>((*q)->Int(3));
  u.expires_ms = (*q)->Int(4);
  (*q)->Reset();
  auto head = crypto::ParseStreamHead(u.head, max_payload_);
  if (!head.ok()) return nullptr;
  u.layout = head->layout;
  u.fd = ::open(SpoolPath(id).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (u.fd < 0) {
    Log()->error("message {}: cannot open spool: {}", id, std::strerror(errno));
    return nullptr;
  }
  // Anything past the committed chunk is not trusted (a torn write before a crash).
  if (::ftruncate(u.fd, static_cast<off_t>(u.layout.RecordOffset(u.committed))) != 0) {
    Log()->error("message {}: cannot truncate spool: {}", id, std::strerror(errno));
    ::close(u.fd);
    return nullptr;
  }
  u.started_mono = u.last_log_mono = MonoMs();
  return &uploads_.emplace(id, std::move(u)).first->second;
}

void Streams::CloseUpload(const std::string& id) {
  auto it = uploads_.find(id);
  if (it == uploads_.end()) return;
  if (it->second.fd >= 0) ::close(it->second.fd);
  uploads_.erase(it);
}

Streams::Started Streams::OnSubmitStream(const std::string& org, const std::string& head_bytes,
                                         int64_t default_ttl_ms) {
  Started out;
  auto reject = [&](const std::string& id, const std::string& why) {
    Log()->warn("streamed submit of message {} from {} rejected: {}", id.empty() ? "?" : id, org,
                why);
    out.reply = SubmitReplyMsg(id, wire::REJECTED, why);
    return out;
  };
  auto head = crypto::ParseStreamHead(head_bytes, max_payload_);
  if (!head.ok()) return reject("", head.status().ToString());
  const wire::Header& h = head->header;
  const std::string& id = h.message_id();
  if (!IsUuid(id)) return reject(id, "message id is not a UUID");
  if (h.sender() != org) {
    return reject(id, fmt::format("envelope sender {} is not the submitting organisation {}",
                                  h.sender(), org));
  }
  auto receiver = Orgnr::Parse(h.receiver());
  if (!receiver.ok()) return reject(id, receiver.status().message());
  const int64_t expires = h.expires_unix_ms() > 0 ? h.expires_unix_ms() : NowMs() + default_ttl_ms;
  if (expires <= NowMs()) return reject(id, fmt::format("envelope expired at {}", FormatTime(expires)));
  SubmitItem item{id, org, receiver->wire(), head_bytes, expires};

  // Known already (queued, delivered or done): the group commit answers as for any duplicate.
  auto seen = db_.Prepare("SELECT 1 FROM seen WHERE message_id=?");
  if (seen.ok()) {
    auto known = (*seen)->Bind(1, id).Step();
    (*seen)->Reset();
    if (known.ok() && *known && !uploads_.contains(id)) {
      auto up = db_.Prepare("SELECT 1 FROM uploads WHERE message_id=?");
      bool uploading = false;
      if (up.ok()) {
        auto r = (*up)->Bind(1, id).Step();
        uploading = r.ok() && *r;
        (*up)->Reset();
      }
      if (!uploading) {
        out.item = std::move(item);
        return out;
      }
    }
  }
  Upload* u = OpenUpload(id);
  if (u == nullptr && store_max_bytes_ > 0) {
    // store_max_bytes counts SQLite and the spool files; the whole stream is reserved now.
    auto db_bytes = DbBytes(db_);
    const uint64_t need = head->layout.ciphertext_size;
    if (db_bytes.ok() && static_cast<uint64_t>(*db_bytes) + spool_bytes_ + need >
                             static_cast<uint64_t>(store_max_bytes_)) {
      Log()->warn("message {} from {}: streamed upload of {} bytes refused for now (retry later): "
                  "the store would exceed store_max_bytes = {} ({} bytes in SQLite, {} in spool "
                  "files)",
                  id, org, need, store_max_bytes_, *db_bytes, spool_bytes_);
      out.reply = SubmitReplyMsg(id, wire::RETRY_LATER, RetryLaterReason(Code::kDiskFull));
      return out;
    }
  }
  if (u == nullptr) {
    auto ins = db_.Prepare("INSERT INTO uploads (message_id, sender, receiver, head, next_chunk, "
                           "expires_ms) VALUES (?, ?, ?, ?, 0, ?)");
    Status st = ins.ok() ? (*ins)->Bind(1, id).Bind(2, org).Bind(3, item.receiver)
                               .BindBlob(4, head_bytes).Bind(5, expires).Run()
                         : ins.status();
    if (!st.ok()) {
      Log()->error("message {}: cannot record the upload: {}", id, st.ToString());
      out.reply = SubmitReplyMsg(id, wire::RETRY_LATER, "broker could not store the upload");
      return out;
    }
    u = OpenUpload(id);
    if (u == nullptr) {
      out.reply = SubmitReplyMsg(id, wire::RETRY_LATER, "broker could not open the spool");
      return out;
    }
    spool_bytes_ += u->layout.ciphertext_size;
    Log()->info("message {} from {} to {}: streamed upload of {} bytes in {} chunks started", id,
                org, item.receiver, u->layout.ciphertext_size, u->layout.chunk_count);
  } else {
    if (u->org != org || u->head != head_bytes) {
      return reject(id, "an upload with this message id and another head is in progress");
    }
    Log()->info("message {}: upload resuming at chunk {} (offset {})", id, u->committed,
                u->layout.RecordOffset(u->committed));
  }
  u->received = u->committed;  // everything unacknowledged is sent again
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

std::optional<wire::BrokerMessage> Streams::OnUploadChunk(const std::string& org,
                                                          wire::Chunk& chunk) {
  auto it = uploads_.find(chunk.message_id());
  if (it == uploads_.end() || it->second.org != org) {
    Log()->debug("chunk for unknown upload {} from {} dropped", chunk.message_id(), org);
    return std::nullopt;
  }
  Upload& u = it->second;
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

Status Streams::CheckDigest(const std::string& id, const Upload& u) {
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
    if (u.received > u.committed || u.committed == u.layout.chunk_count) dirty.push_back(id);
  }
  if (dirty.empty()) return;
  std::vector<std::string> synced;
  for (const auto& id : dirty) {
    Upload& u = uploads_[id];
    if (u.received > u.committed && ::fdatasync(u.fd) != 0) {
      Log()->error("message {}: fsync of spool failed: {}", id, std::strerror(errno));
      u.received = u.committed;
      continue;
    }
    synced.push_back(id);
  }
  {
    storage::Transaction tx(db_);
    Status st = tx.began();
    for (const auto& id : synced) {
      if (!st.ok()) break;
      auto up = db_.Prepare("UPDATE uploads SET next_chunk=? WHERE message_id=?");
      st = up.ok() ? (*up)->Bind(1, uploads_[id].received).Bind(2, id).Run() : up.status();
    }
    if (st.ok()) st = tx.Commit();
    if (!st.ok()) {
      Log()->error("committing {} upload(s) failed: {}", synced.size(), st.ToString());
      for (const auto& id : synced) uploads_[id].received = uploads_[id].committed;
      return;
    }
  }
  for (const auto& id : synced) {
    Upload& u = uploads_[id];
    u.committed = u.received;
    auto m = NewMessage();
    m.mutable_chunk_ack()->set_message_id(id);
    m.mutable_chunk_ack()->set_next_chunk(u.committed);
    send(u.org, m);
    const uint64_t bytes = u.layout.RecordOffset(u.committed);
    if (MonoMs() - u.last_log_mono >= kProgressEveryMs) {
      Log()->info("message {}: received {}", id,
                  Progress(std::min(bytes, u.layout.ciphertext_size), u.layout.ciphertext_size,
                           u.started_mono));
      u.last_log_mono = MonoMs();
    }
    if (u.committed != u.layout.chunk_count) continue;
    Status digest = CheckDigest(id, u);
    if (!digest.ok()) {
      Log()->warn("message {} from {}: streamed upload refused: {}", id, u.org, digest.ToString());
      const std::string org = u.org;
      spool_bytes_ -= std::min(spool_bytes_, u.layout.ciphertext_size);
      CloseUpload(id);
      (void)RemoveAll(SpoolPath(id));
      if (auto del = db_.Prepare("DELETE FROM uploads WHERE message_id=?"); del.ok()) {
        (void)(*del)->Bind(1, id).Run();
      }
      send(org, SubmitReplyMsg(id, wire::REJECTED, digest.ToString()));
      continue;
    }
    Log()->info("message {}: all {} chunks ({} bytes) durable, digest checked", id,
                u.layout.chunk_count, u.layout.ciphertext_size);
    complete->push_back(SubmitItem{id, u.org, u.receiver, u.head, u.expires_ms});
    CloseUpload(id);
  }
}

void Streams::FinishUploads(const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  storage::Transaction tx(db_);
  Status st = tx.began();
  for (const auto& id : ids) {
    if (!st.ok()) break;
    auto del = db_.Prepare("DELETE FROM uploads WHERE message_id=?");
    st = del.ok() ? (*del)->Bind(1, id).Run() : del.status();
  }
  if (st.ok()) st = tx.Commit();
  if (!st.ok()) Log()->error("removing finished uploads: {}", st.ToString());
}

void Streams::OnResume(const std::string& rid, const std::string& org, const wire::StreamResume& r,
                       const std::string& head_bytes) {
  auto head = crypto::ParseStreamHead(head_bytes, UINT64_MAX >> 1);
  if (!head.ok()) return;
  auto it = outgoing_.find(r.message_id());
  if (it == outgoing_.end()) {
    Outgoing o;
    o.fd = ::open(SpoolPath(r.message_id()).c_str(), O_RDONLY | O_CLOEXEC);
    if (o.fd < 0) {
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
      rec->resize(size);
      ssize_t n = ::pread(o.fd, rec->data(), size, static_cast<off_t>(o.layout.RecordOffset(o.next_send)));
      if (n != static_cast<ssize_t>(size)) {
        Log()->error("message {}: spool is short at chunk {}; delivery stopped", id, o.next_send);
        ::close(o.fd);
        outgoing_.erase(it);
        break;
      }
      o.next_send++;
      const std::string rid = o.rid;
      if (!send(rid, m)) {
        // The session is gone (DropRid has usually ended the transfer already); the spool stays
        // for the redelivery.
        if (auto gone = outgoing_.find(id); gone != outgoing_.end()) {
          ::close(gone->second.fd);
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
      ::close(it->second.fd);
      it = outgoing_.erase(it);
    } else {
      ++it;
    }
  }
}

void Streams::Forget(const std::string& message_id) {
  if (auto it = outgoing_.find(message_id); it != outgoing_.end()) {
    ::close(it->second.fd);
    outgoing_.erase(it);
  }
  struct stat st;
  const std::string path = SpoolPath(message_id);
  if (::stat(path.c_str(), &st) == 0 && ::unlink(path.c_str()) == 0) {
    spool_bytes_ -= std::min(spool_bytes_, static_cast<uint64_t>(st.st_size));
    Log()->debug("message {}: spool removed", message_id);
  }
}

}  // namespace bud::broker
