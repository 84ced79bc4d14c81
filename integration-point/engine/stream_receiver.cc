// See stream_receiver.h.
#include "integration-point/engine/stream_receiver.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/log.h"
#include "integration-point/asic.h"
#include "integration-point/data_dirs.h"
#include "integration-point/engine/transfer_progress.h"
#include "integration-point/inbox.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }

Result<std::string> FileSha256Hex(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open " + path);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::string buf(1 << 20, '\0');
  Status st = Status::Ok();
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = ErrnoStatus(errno, "read " + path);
      break;
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  if (!st.ok()) return st;
  return crypto::Hex(std::string_view(reinterpret_cast<char*>(md), len));
}

Status WriteRecord(int fd, const std::string& rec, uint64_t offset) {
  size_t done = 0;
  while (done < rec.size()) {
    ssize_t n =
        ::pwrite(fd, rec.data() + done, rec.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "writing spool");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Checks the opened stream's files into `tmp`/message.json (with each file's SHA-256) and
// renames `tmp` to the inbox folder `final_dir`.
Status WriteInboxFolder(const AdmittedSender& sender, const crypto::OpenedStream& opened,
                        const std::string& tmp, const std::string& final_dir, int64_t now) {
  std::string subject;
  for (X509* c : sender.cert_ptrs) {
    if (crypto::Hex(crypto::CertFingerprint(c)) == opened.signer_fingerprint) {
      subject = crypto::SubjectOf(c);
    }
  }
  nlohmann::json files = nlohmann::json::array();
  for (const auto& a : opened.manifest.attachments()) {
    BUD_ASSIGN_OR_RETURN(std::string sha, FileSha256Hex(JoinPath(tmp, a.name())));
    files.push_back(
        {{"name", a.name()}, {"mediaType", a.media_type()}, {"size", a.size()}, {"sha256", sha}});
  }
  nlohmann::json mj = InboxMessageJson(
      opened.header, opened.manifest.title(), opened.manifest.metadata_json(),
      SignerInfo{subject, sender.org.digits(), opened.signer_fingerprint}, now, std::move(files));
  mj["streamed"] = true;
  BUD_RETURN_IF_ERROR(WriteFileSynced(JoinPath(tmp, "message.json"), InboxJsonText(mj), 0640));
  BUD_RETURN_IF_ERROR(FsyncPath(tmp));
  return RenameDurable(tmp, final_dir);
}

// For the HTTP API: lists the files in `tmp` with their CRC-32 (the pop container needs them
// before its first byte goes out) into `listed` and renames `tmp` to `final_dir`.
Status KeepForApi(const wire::Payload& manifest, const std::string& tmp,
                  const std::string& final_dir, nlohmann::json& listed) {
  for (const auto& a : manifest.attachments()) {
    BUD_ASSIGN_OR_RETURN(uint32_t crc, FileCrc32(JoinPath(tmp, a.name())));
    listed.push_back(
        {{"name", a.name()}, {"mediaType", a.media_type()}, {"size", a.size()}, {"crc32", crc}});
  }
  BUD_RETURN_IF_ERROR(FsyncPath(tmp));
  return RenameDurable(tmp, final_dir);
}
}  // namespace

// A delivery from the broker: records checked by the verifier and appended to the spool.
struct StreamReceiver::Download {
  explicit Download(AdmittedSender s) : sender(std::move(s)) {}
  ~Download() {
    if (fd >= 0) ::close(fd);
  }
  std::string head;
  MessageRow row;
  AdmittedSender sender;
  std::optional<crypto::ChunkVerifier> verifier;
  int fd = -1;
  bool unsynced = false;
  uint64_t failed_index = UINT64_MAX;  // a record that failed once and was asked for again
  uint64_t resume_sent_for = UINT64_MAX;
  int64_t resume_sent_mono = 0;
  ProgressMarks marks;
};

StreamReceiver::StreamReceiver(Receiver& receiver, BrokerLink& link, Orgnr me,
                               const crypto::TrustStore& trust,
                               std::span<const crypto::DecryptionKey> keys)
    : receiver_(receiver), link_(link), me_(std::move(me)), trust_(trust), keys_(keys) {}

StreamReceiver::~StreamReceiver() = default;

crypto::StreamOptions StreamReceiver::Options() const {
  crypto::StreamOptions options;
  options.max_plaintext = static_cast<uint64_t>(receiver_.config().max_message_bytes) + (2u << 20);
  options.max_attachments = static_cast<size_t>(receiver_.config().max_attachments);
  return options;
}

std::string StreamReceiver::SpoolPath(const std::string& message_id) const {
  return JoinPath(SpoolDir(receiver_.config()), "in-" + message_id);
}

void StreamReceiver::Refuse(const MessageRow& row, const Status& why) {
  downloads_.erase(row.message_id);
  (void)::unlink(SpoolPath(row.message_id).c_str());
  receiver_.Refuse(row, why);
}

void StreamReceiver::DeferAndDrop(const std::string& message_id, const Status& why) {
  downloads_.erase(message_id);  // rebuilt from the spool at the next DeliverStream
  receiver_.Defer(message_id, why);
}

void StreamReceiver::OnDeliverStream(const wire::DeliverStream& ds) {
  receiver_.metrics().deliveries.fetch_add(1, std::memory_order_relaxed);
  auto head = crypto::ParseStreamHead(ds.head(), Options().max_plaintext);
  if (!head.ok()) {
    Log()->error("broker delivered a streamed head that cannot be parsed: {}",
                 head.status().ToString());
    return;
  }
  const wire::Header& h = head->header;
  const std::string& id = h.message_id();
  if (!receiver_.Screen(h)) {
    downloads_.erase(id);  // resumed from the spool when it comes again
    return;
  }
  auto it = downloads_.find(id);
  if (it == downloads_.end() || it->second->head != ds.head()) {
    auto d = Begin(ds, h, Receiver::IncomingRow(h));
    if (!d) return;
    downloads_[id] = std::move(d);
    it = downloads_.find(id);
  }
  Download& d = *it->second;
  if (d.verifier->next_index() == d.verifier->layout().chunk_count) return Finish(id);
  auto msg = NewClientMessage();
  msg.mutable_stream_resume()->set_message_id(id);
  msg.mutable_stream_resume()->set_next_chunk(d.verifier->next_index());
  d.resume_sent_for = d.verifier->next_index();
  d.resume_sent_mono = receiver_.clock().MonoMs();
  link_.Send(msg);
}

std::unique_ptr<StreamReceiver::Download> StreamReceiver::Begin(const wire::DeliverStream& ds,
                                                                const wire::Header& h,
                                                                const MessageRow& row) {
  const std::string& id = h.message_id();
  auto sender = receiver_.Admit(h, row, [&] {
    downloads_.erase(id);
    (void)::unlink(SpoolPath(id).c_str());
  });
  if (!sender) return nullptr;
  auto d = std::make_unique<Download>(std::move(*sender));
  d->head = ds.head();
  d->row = row;
  crypto::StreamParties parties{me_,   d->sender.org, d->sender.cert_ptrs,
                                keys_, trust_,        std::nullopt};
  crypto::StreamOptions options;
  options.max_plaintext = Options().max_plaintext;
  auto verifier = crypto::ChunkVerifier::Create(ds.head(), parties, options);
  if (!verifier.ok()) return Refuse(row, verifier.status()), nullptr;
  if (Status fresh = receiver_.CheckExpiry(h); !fresh.ok()) return Refuse(row, fresh), nullptr;
  d->verifier.emplace(std::move(*verifier));
  Status dirs = MakeDirs(SpoolDir(receiver_.config()));
  d->fd = dirs.ok() ? ::open(SpoolPath(id).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640) : -1;
  if (d->fd < 0) {
    receiver_.Defer(id, dirs.ok() ? ErrnoStatus(errno, "opening the spool file") : dirs);
    return nullptr;
  }
  if (Status resumed = ResumeFromSpool(*d); !resumed.ok()) {
    receiver_.Defer(id, resumed);
    return nullptr;
  }
  const auto& l = d->verifier->layout();
  const uint64_t keep = l.RecordOffset(d->verifier->next_index());
  d->marks.start_chunk = d->verifier->next_index();
  d->marks.started_mono = d->marks.last_log_mono = receiver_.clock().MonoMs();
  if (d->marks.start_chunk > 0) {
    Log()->info("message {}: resuming at chunk {} (offset {}) from the spool", id,
                d->marks.start_chunk, keep);
  } else {
    Log()->info("message {} from {}: streamed delivery of {} bytes in {} chunks", id, h.sender(),
                l.ciphertext_size, l.chunk_count);
  }
  if (Status t = receiver_.store().StartTransfer(row, static_cast<int64_t>(keep),
                                                 static_cast<int64_t>(l.ciphertext_size));
      !t.ok()) {
    Log()->warn("message {}: progress not stored: {}", id, t.ToString());
  }
  d->marks.saved = d->marks.start_chunk;
  d->marks.saved_mono = receiver_.clock().MonoMs();
  return d;
}

// What is durably in the spool counts: re-read it through the verifier (tags and running
// digest), cut off at the first record that is short or does not verify.
Status StreamReceiver::ResumeFromSpool(Download& d) {
  struct stat st;
  const uint64_t have = ::fstat(d.fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  const auto& l = d.verifier->layout();
  std::string rec;
  while (d.verifier->next_index() < l.chunk_count) {
    const uint64_t i = d.verifier->next_index();
    if (l.RecordOffset(i) + l.RecordSize(i) > have) break;
    rec.resize(l.RecordSize(i));
    if (::pread(d.fd, rec.data(), rec.size(), static_cast<off_t>(l.RecordOffset(i))) !=
        static_cast<ssize_t>(rec.size())) {
      break;
    }
    if (!d.verifier->Append(i, rec).ok()) break;
  }
  const uint64_t keep = l.RecordOffset(d.verifier->next_index());
  if (keep != have && ::ftruncate(d.fd, static_cast<off_t>(keep)) != 0) {
    return ErrnoStatus(errno, "truncating the spool file");
  }
  return Status::Ok();
}

void StreamReceiver::AskFor(const std::string& message_id, Download& d, const std::string& why) {
  const uint64_t next = d.verifier->next_index();
  const int64_t now = receiver_.clock().MonoMs();
  if (d.resume_sent_for == next && now - d.resume_sent_mono < 2000) return;
  Log()->warn("message {}: {}; asking for chunk {} again", message_id, why, next);
  auto msg = NewClientMessage();
  msg.mutable_stream_resume()->set_message_id(message_id);
  msg.mutable_stream_resume()->set_next_chunk(next);
  msg.mutable_stream_resume()->set_reason(why);
  d.resume_sent_for = next;
  d.resume_sent_mono = now;
  link_.Send(msg);
}

void StreamReceiver::OnChunk(const wire::Chunk& chunk) {
  receiver_.metrics().stream_bytes_received.fetch_add(static_cast<int64_t>(chunk.record().size()),
                                                      std::memory_order_relaxed);
  auto it = downloads_.find(chunk.message_id());
  if (it == downloads_.end()) return;
  Download& d = *it->second;
  const uint64_t next = d.verifier->next_index();
  if (chunk.index() < next) return;  // a duplicate (a resend): already have it
  if (chunk.index() > next) {
    return AskFor(chunk.message_id(), d,
                  fmt::format("chunk {} arrived out of order", chunk.index()));
  }
  Status ok = d.verifier->Append(chunk.index(), chunk.record());
  if (!ok.ok()) {
    if (d.failed_index == next) {
      const MessageRow row = d.row;
      return Refuse(row, ok.Context(fmt::format("chunk {} failed twice", next)));
    }
    d.failed_index = next;
    return AskFor(chunk.message_id(), d,
                  fmt::format("chunk {} failed its check ({})", next, ok.ToString()));
  }
  Status written =
      WriteRecord(d.fd, chunk.record(), d.verifier->layout().RecordOffset(chunk.index()));
  if (!written.ok()) return DeferAndDrop(chunk.message_id(), written);
  d.unsynced = true;
  if (d.verifier->next_index() == d.verifier->layout().chunk_count) Finish(chunk.message_id());
}

void StreamReceiver::Finish(const std::string& id) {
  auto it = downloads_.find(id);
  if (it == downloads_.end()) return;
  Download& d = *it->second;
  const MessageRow row = d.row;
  if (::fdatasync(d.fd) != 0)
    return DeferAndDrop(id, ErrnoStatus(errno, "fsync of the spool file"));
  d.unsynced = false;
  Status finished = d.verifier->Finish();
  if (!finished.ok()) return Refuse(row, finished);
  std::string api_files;
  auto opened = OpenIntoPlace(id, d, api_files);
  if (!opened) return;
  const bool api = receiver_.config().delivery_mode() == DeliveryMode::kApi;
  MessageRow rec = row;
  rec.title = opened->manifest.title();
  if (api) {
    // Kept for peek/pop/delete: the manifest (metadata, names, sizes) and where the files are.
    rec.state = WorkState::kApi;
    opened->manifest.SerializeToString(&rec.payload);
    rec.files = api_files;
  }
  IncomingStore& store = receiver_.store();
  Status recorded = store.RecordIncoming(rec, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "",
                                         receiver_.clock().NowMs());
  if (recorded.ok()) recorded = store.TransferProgress(id, -1);
  if (!recorded.ok()) return receiver_.Defer(id, recorded.Context("recording it in the store"));
  downloads_.erase(id);
  (void)::unlink(SpoolPath(id).c_str());
  Log()->info("message {} from {} {} (streamed, {} attachment(s); INNKOMMENDE_MOTTATT)", id,
              row.sender, api ? "kept for the HTTP API" : "written to inbox",
              opened->manifest.attachments_size());
  receiver_.Accepted(id);
}

std::optional<crypto::OpenedStream> StreamReceiver::OpenIntoPlace(const std::string& id,
                                                                  Download& d,
                                                                  std::string& api_files) {
  // For the HTTP API the attachments go to api-in/<id>/ and the store lists them; a directory
  // left there by a crash before the commit is opened again from the spool (its list is lost).
  const bool api = receiver_.config().delivery_mode() == DeliveryMode::kApi;
  const std::string root = api ? ApiInboxDir(receiver_.config()) : receiver_.config().inbox;
  const std::string final_dir = JoinPath(root, id);
  const MessageRow row = d.row;
  crypto::OpenedStream opened;
  nlohmann::json listed = nlohmann::json::array();
  auto defer = [&](const Status& why) {
    receiver_.Defer(id, why);
    return std::nullopt;
  };
  if (api) {
    if (Status rm = RemoveAll(final_dir); !rm.ok()) return defer(rm);
  }
  if (!Exists(final_dir)) {
    const std::string tmp_root = JoinPath(root, ".tmp");
    const std::string tmp = JoinPath(tmp_root, id);
    Status prep = MakeDirs(tmp_root);
    if (prep.ok()) prep = RemoveAll(tmp);
    if (!prep.ok()) return defer(prep);
    crypto::StreamParties parties{me_,   d.sender.org, d.sender.cert_ptrs,
                                  keys_, trust_,       std::nullopt};
    const int64_t t0 = receiver_.clock().MonoMs();
    auto o = crypto::OpenStream(d.head, SpoolPath(id), tmp, parties, Options());
    if (!o.ok()) {
      const Code c = o.status().code();
      if (c == Code::kIo || c == Code::kDiskFull || c == Code::kAlreadyExists) {
        DeferAndDrop(id, o.status().Context("opening the stream"));
        return std::nullopt;
      }
      Refuse(row, o.status());
      return std::nullopt;
    }
    opened = std::move(*o);
    const int64_t now = receiver_.clock().NowMs();
    Status w = api ? KeepForApi(opened.manifest, tmp, final_dir, listed)
                   : WriteInboxFolder(d.sender, opened, tmp, final_dir, now);
    if (!w.ok()) return defer(w.Context("writing " + final_dir));
    Log()->info("message {}: stream opened into {} in {} ms", id, final_dir,
                receiver_.clock().MonoMs() - t0);
  }
  api_files = listed.dump();
  return opened;
}

void StreamReceiver::Pump() {
  for (auto& [id, d] : downloads_) {
    if (!d->verifier) continue;
    if (d->unsynced) {
      if (::fdatasync(d->fd) != 0) {
        Log()->error("message {}: fsync of spool failed: {}", id, std::strerror(errno));
        continue;
      }
      d->unsynced = false;
      auto msg = NewClientMessage();
      msg.mutable_chunk_ack()->set_message_id(id);
      msg.mutable_chunk_ack()->set_next_chunk(d->verifier->next_index());
      link_.Send(msg);
      LogProgress(receiver_.clock(), id, "received", d->verifier->layout(),
                  d->verifier->next_index(), d->marks);
    }
    // What is fsynced is stored as progress (at most once a second, also once the chunks stop
    // coming; the turn's commit carries it).
    SaveProgress(receiver_.store(), receiver_.clock(), id, d->verifier->layout(),
                 d->verifier->next_index(), d->marks, false);
  }
}

void StreamReceiver::Reset() {
  for (auto& [id, d] : downloads_) {
    if (d->unsynced) (void)::fdatasync(d->fd);
  }
  downloads_.clear();
}

}  // namespace bud::ip
