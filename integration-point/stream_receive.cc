// Receiving streamed envelopes (docs/large-messages.md): the head is verified before any chunk
// moves, each record is checked (ChunkVerifier) and appended to a spool file that is fsynced
// before it is acknowledged, and only when the whole stream's digest and signature verify
// (OpenStream) is it decrypted into inbox/.tmp/<id>/ and renamed into place (with
// incoming.delivery = "api": api-in/.tmp/<id>/ -> api-in/<id>/, listed in the store for the
// HTTP API's peek/pop/delete).
#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/uuid.h"
#include "common/wire/zmq.h"
#include "integration-point/asic.h"
#include "integration-point/data_dirs.h"
#include "integration-point/engine.h"
#include "integration-point/inbox.h"
#include "integration-point/receiver.h"
#include "integration-point/stream_state.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }

constexpr std::string_view kEnvelopeRejected =
    "ENVELOPE_REJECTED: the receiver could not verify and decrypt the envelope";

std::string OutsideStreamReason(const Status& why) {
  for (Code c : {Code::kMalformed, Code::kBadSignature, Code::kDigestMismatch,
                 Code::kDecryptFailed, Code::kPayloadMismatch, Code::kUnsupported,
                 Code::kInvalidArgument}) {
    if (why.code() == c) return std::string(kEnvelopeRejected);
  }
  return why.ToString();
}

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
    ssize_t n = ::pwrite(fd, rec.data() + done, rec.size() - done,
                         static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, "writing spool");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}
// Checks the opened stream's files into `tmp`/message.json (with each file's SHA-256) and
// renames `tmp` to the inbox folder `final_dir`.
Status WriteInboxFolder(const std::vector<X509*>& sender_certs, const Orgnr& sender,
                        const crypto::OpenedStream& opened, const std::string& tmp,
                        const std::string& final_dir, int64_t now) {
  std::string subject;
  for (X509* c : sender_certs) {
    if (crypto::Hex(crypto::CertFingerprint(c)) == opened.signer_fingerprint) {
      subject = crypto::SubjectOf(c);
    }
  }
  nlohmann::json files = nlohmann::json::array();
  for (const auto& a : opened.manifest.attachments()) {
    BUD_ASSIGN_OR_RETURN(std::string sha, FileSha256Hex(JoinPath(tmp, a.name())));
    files.push_back({{"name", a.name()}, {"mediaType", a.media_type()}, {"size", a.size()},
                     {"sha256", sha}});
  }
  nlohmann::json mj = InboxMessageJson(
      opened.header, opened.manifest.title(), opened.manifest.metadata_json(),
      SignerInfo{subject, sender.digits(), opened.signer_fingerprint}, now, std::move(files));
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
    listed.push_back({{"name", a.name()}, {"mediaType", a.media_type()}, {"size", a.size()},
                      {"crc32", crc}});
  }
  BUD_RETURN_IF_ERROR(FsyncPath(tmp));
  return RenameDurable(tmp, final_dir);
}
}  // namespace

void Engine::SweepReceiveLeftovers() {
  if (!config_.inbox.empty()) {
    const std::string tmp = JoinPath(config_.inbox, ".tmp");
    if (Exists(tmp)) {
      Status rm = RemoveAll(tmp);
      if (rm.ok()) {
        Log()->info("removed {}: folders of deliveries that were never acknowledged (they are "
                    "delivered again)",
                    tmp);
      } else {
        Log()->warn("cannot remove {}: {}", tmp, rm.ToString());
      }
    }
  }
  auto names = ListDir(SpoolDir());
  if (!names.ok()) return;
  for (const auto& name : *names) {
    if (!name.starts_with("in-")) continue;
    const std::string id = name.substr(3);
    // A partial download resumes after a restart, unless the message is settled here already
    // (received or refused), its transfer is not recorded, or its time to live has passed.
    std::string why;
    if (!IsUuid(id)) {
      why = "not a message id";
    } else if (auto row = store_->Get(id, "IN"); !row.ok()) {
      continue;
    } else if (row->has_value()) {
      why = "the message is " + (*row)->status + " already";
    } else if (auto t = store_->Transfer(id, "IN"); !t.ok()) {
      continue;
    } else if (!t->has_value()) {
      why = "no transfer is recorded";
    } else if ((*t)->message.expires_ms > 0 && (*t)->message.expires_ms < NowMs()) {
      why = "the message expired";
    } else {
      continue;
    }
    const std::string path = JoinPath(SpoolDir(), name);
    if (::unlink(path.c_str()) == 0) {
      Log()->info("removed the partial download {} ({})", path, why);
    } else {
      Log()->warn("cannot remove the partial download {}: {}", path, std::strerror(errno));
    }
  }
}

void Engine::RefuseStream(const MessageRow& row, const Status& why) {
  const std::string outside = OutsideStreamReason(why);
  metrics_.refused.fetch_add(1, std::memory_order_relaxed);
  Log()->warn("message {} from {} refused (FEIL): {}", row.message_id, row.sender, why.ToString());
  downloads_.erase(row.message_id);
  (void)::unlink(JoinPath(SpoolDir(), "in-" + row.message_id).c_str());
  Status st = store_->RecordIncoming(row, wire::FEIL, why.ToString(), wire::FEIL, outside, NowMs());
  if (!st.ok()) return DeferDelivery(row.message_id, st.Context("recording FEIL"));
  AnswerAfterCommit(row.message_id, wire::FEIL, outside);
}

void Engine::OnDeliverStream(const wire::DeliverStream& ds) {
  metrics_.deliveries.fetch_add(1, std::memory_order_relaxed);
  auto head = crypto::ParseStreamHead(ds.head(), static_cast<uint64_t>(config_.max_message_bytes) +
                                                     (2u << 20));
  if (!head.ok()) {
    Log()->error("broker delivered a streamed head that cannot be parsed: {}",
                 head.status().ToString());
    return;
  }
  const wire::Header& h = head->header;
  const std::string& id = h.message_id();
  if (!IsUuid(id) || id.find_first_of("ABCDEF") != std::string::npos) {
    Log()->error("broker delivered a streamed head whose message id is not a lower-case UUID; "
                 "refused without writing anything");
    Report(id, wire::FEIL, std::string(kEnvelopeRejected));
    return;
  }
  auto existing = store_->Get(id, "IN");
  if (!existing.ok()) {
    Log()->error("message {}: store: {}", id, existing.status().ToString());
    return;
  }
  if (existing->has_value()) {
    const bool failed = (*existing)->status == "FEIL";
    std::string reason;
    if (failed) {
      auto hist = store_->History(id, "IN");
      if (hist.ok() && !hist->empty()) reason = std::string(kEnvelopeRejected);
    }
    metrics_.redeliveries.fetch_add(1, std::memory_order_relaxed);
    Log()->info("message {} from {} delivered again; already {}", id, h.sender(),
                (*existing)->status);
    Report(id, failed ? wire::FEIL : wire::MOTTATT, reason);
    return;
  }
  if (DeferringNow(id)) {
    downloads_.erase(id);  // resumed from the spool after the pause
    return;
  }
  auto sender = Orgnr::Parse(h.sender());
  MessageRow row = IncomingRow(h);
  if (Status sizes = CheckHeaderSizes(h); !sizes.ok()) return RefuseStream(row, sizes);
  if (!sender.ok()) return RefuseStream(row, sender.status());

  auto it = downloads_.find(id);
  if (it == downloads_.end() || it->second->head != ds.head()) {
    auto entry = registry_->Lookup(*sender);
    if (!entry.ok()) {
      if (entry.status().code() == Code::kUnavailable) {
        Log()->warn("message {}: cannot check the sender now ({}); deferred", id,
                    entry.status().message());
        return DeferDelivery(id, entry.status());
      }
      return RefuseStream(row, entry.status());
    }
    auto certs = certs_->Get(entry->signing_cert_pem(), entry->next_signing_cert_pem(),
                             crypto::KeyPurpose::kSigning, *sender, MonoMs());
    if (!certs.ok() && certs.status().code() == Code::kCertRevocationUnknown) {
      // As in the one-frame path: deferred, never FEIL for a stale CRL.
      Log()->warn("message {} from {}: not accepted until revocation can be checked ({}); "
                  "deferred",
                  id, h.sender(), certs.status().message());
      return DeferDelivery(id, certs.status());
    }
    if (!certs.ok()) return RefuseStream(row, certs.status().Context("sender's signing certificate"));
    auto d = std::make_unique<StreamDownload>(*sender);
    d->head = ds.head();
    d->row = row;
    d->sender_certs = std::move(*certs);
    for (const auto& c : d->sender_certs) d->sender_cert_ptrs.push_back(c.get());
    crypto::StreamParties parties{me_, d->sender, d->sender_cert_ptrs, decryption_keys_, *trust_,
                                  std::nullopt};
    crypto::StreamOptions options;
    options.max_plaintext = static_cast<uint64_t>(config_.max_message_bytes) + (2u << 20);
    auto verifier = crypto::ChunkVerifier::Create(ds.head(), parties, options);
    if (!verifier.ok()) return RefuseStream(row, verifier.status());
    if (h.expires_unix_ms() > 0 && h.expires_unix_ms() < NowMs()) {
      return RefuseStream(row, Status(Code::kInvalidArgument,
                                      fmt::format("envelope expired at {}",
                                                  FormatTime(h.expires_unix_ms()))));
    }
    d->verifier.emplace(std::move(*verifier));
    Status dirs = MakeDirs(SpoolDir());
    const std::string spool = JoinPath(SpoolDir(), "in-" + id);
    d->fd = dirs.ok() ? ::open(spool.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640) : -1;
    if (d->fd < 0) {
      return DeferDelivery(id, dirs.ok() ? ErrnoStatus(errno, "opening the spool file") : dirs);
    }
    // What is durably in the spool counts: re-read it through the verifier (tags and running
    // digest), cut off at the first record that is short or does not verify.
    struct stat st;
    const uint64_t have = ::fstat(d->fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    const auto& l = d->verifier->layout();
    std::string rec;
    while (d->verifier->next_index() < l.chunk_count) {
      const uint64_t i = d->verifier->next_index();
      if (l.RecordOffset(i) + l.RecordSize(i) > have) break;
      rec.resize(l.RecordSize(i));
      if (::pread(d->fd, rec.data(), rec.size(), static_cast<off_t>(l.RecordOffset(i))) !=
          static_cast<ssize_t>(rec.size())) {
        break;
      }
      if (!d->verifier->Append(i, rec).ok()) break;
    }
    const uint64_t keep = l.RecordOffset(d->verifier->next_index());
    if (keep != have && ::ftruncate(d->fd, static_cast<off_t>(keep)) != 0) {
      return DeferDelivery(id, ErrnoStatus(errno, "truncating the spool file"));
    }
    d->start_chunk = d->verifier->next_index();
    d->started_mono = d->last_log_mono = MonoMs();
    if (d->start_chunk > 0) {
      Log()->info("message {}: resuming at chunk {} (offset {}) from the spool", id,
                  d->start_chunk, keep);
    } else {
      Log()->info("message {} from {}: streamed delivery of {} bytes in {} chunks", id,
                  h.sender(), l.ciphertext_size, l.chunk_count);
    }
    if (Status t = store_->StartTransfer(row, "IN", static_cast<int64_t>(keep),
                                         static_cast<int64_t>(l.ciphertext_size));
        !t.ok()) {
      Log()->warn("message {}: progress not stored: {}", id, t.ToString());
    }
    d->saved = d->start_chunk;
    d->saved_mono = MonoMs();
    downloads_[id] = std::move(d);
    it = downloads_.find(id);
  }
  StreamDownload& d = *it->second;
  if (d.verifier->next_index() == d.verifier->layout().chunk_count) {
    FinishDownload(id);
    return;
  }
  wire::ClientMessage msg;
  msg.set_protocol_version(wire::kProtocolVersion);
  msg.mutable_stream_resume()->set_message_id(id);
  msg.mutable_stream_resume()->set_next_chunk(d.verifier->next_index());
  d.resume_sent_for = d.verifier->next_index();
  d.resume_sent_mono = MonoMs();
  SendToBroker(msg);
}

void Engine::OnStreamChunk(wire::Chunk& chunk) {
  auto it = downloads_.find(chunk.message_id());
  if (it == downloads_.end()) return;
  StreamDownload& d = *it->second;
  const uint64_t next = d.verifier->next_index();
  auto ask_again = [&](const std::string& why) {
    if (d.resume_sent_for == next && MonoMs() - d.resume_sent_mono < 2000) return;
    Log()->warn("message {}: {}; asking for chunk {} again", chunk.message_id(), why, next);
    wire::ClientMessage msg;
    msg.set_protocol_version(wire::kProtocolVersion);
    msg.mutable_stream_resume()->set_message_id(chunk.message_id());
    msg.mutable_stream_resume()->set_next_chunk(next);
    msg.mutable_stream_resume()->set_reason(why);
    d.resume_sent_for = next;
    d.resume_sent_mono = MonoMs();
    SendToBroker(msg);
  };
  if (chunk.index() < next) return;  // a duplicate (a resend): already have it
  if (chunk.index() > next) return ask_again(fmt::format("chunk {} arrived out of order", chunk.index()));
  Status ok = d.verifier->Append(chunk.index(), chunk.record());
  if (!ok.ok()) {
    if (d.failed_index == next) {
      const MessageRow row = d.row;
      return RefuseStream(row, ok.Context(fmt::format("chunk {} failed twice", next)));
    }
    d.failed_index = next;
    return ask_again(fmt::format("chunk {} failed its check ({})", next, ok.ToString()));
  }
  Status written = WriteRecord(d.fd, chunk.record(), d.verifier->layout().RecordOffset(chunk.index()));
  if (!written.ok()) {
    const std::string id = chunk.message_id();
    downloads_.erase(it);  // rebuilt from the spool at the next DeliverStream
    return DeferDelivery(id, written);
  }
  d.unsynced = true;
  if (d.verifier->next_index() == d.verifier->layout().chunk_count) {
    FinishDownload(chunk.message_id());
  }
}

void Engine::FinishDownload(const std::string& id) {
  auto it = downloads_.find(id);
  if (it == downloads_.end()) return;
  StreamDownload& d = *it->second;
  const MessageRow row = d.row;
  if (::fdatasync(d.fd) != 0) {
    const Status why = ErrnoStatus(errno, "fsync of the spool file");
    downloads_.erase(it);
    return DeferDelivery(id, why);
  }
  d.unsynced = false;
  Status finished = d.verifier->Finish();
  if (!finished.ok()) return RefuseStream(row, finished);
  const std::string spool = JoinPath(SpoolDir(), "in-" + id);
  // For the HTTP API the attachments go to api-in/<id>/ and the store lists them; a directory
  // left there by a crash before the commit is opened again from the spool (its list is lost).
  const bool api = config_.delivery == "api";
  const std::string root = api ? ApiInboxDir(config_) : config_.inbox;
  const std::string final_dir = JoinPath(root, id);
  const int64_t now = NowMs();
  crypto::OpenedStream opened;
  nlohmann::json api_files = nlohmann::json::array();
  if (api) {
    Status rm = RemoveAll(final_dir);
    if (!rm.ok()) return DeferDelivery(id, rm);
  }
  if (!Exists(final_dir)) {
    const std::string tmp_root = JoinPath(root, ".tmp");
    const std::string tmp = JoinPath(tmp_root, id);
    Status prep = MakeDirs(tmp_root);
    if (prep.ok()) prep = RemoveAll(tmp);
    if (!prep.ok()) return DeferDelivery(id, prep);
    crypto::StreamParties parties{me_, d.sender, d.sender_cert_ptrs, decryption_keys_, *trust_,
                                  std::nullopt};
    crypto::StreamOptions options;
    options.max_plaintext = static_cast<uint64_t>(config_.max_message_bytes) + (2u << 20);
    options.max_attachments = static_cast<size_t>(config_.max_attachments);
    const int64_t t0 = MonoMs();
    auto o = crypto::OpenStream(d.head, spool, tmp, parties, options);
    if (!o.ok()) {
      if (o.status().code() == Code::kIo || o.status().code() == Code::kDiskFull ||
          o.status().code() == Code::kAlreadyExists) {
        const Status why = o.status().Context("opening the stream");
        downloads_.erase(it);
        return DeferDelivery(id, why);
      }
      return RefuseStream(row, o.status());
    }
    opened = std::move(*o);
    Status w = api ? KeepForApi(opened.manifest, tmp, final_dir, api_files)
                   : WriteInboxFolder(d.sender_cert_ptrs, d.sender, opened, tmp, final_dir, now);
    if (!w.ok()) return DeferDelivery(id, w.Context("writing " + final_dir));
    Log()->info("message {}: stream opened into {} in {} ms", id, final_dir, MonoMs() - t0);
  }
  MessageRow rec = row;
  rec.title = opened.manifest.title();
  if (api) {
    // Kept for peek/pop/delete: the manifest (metadata, names, sizes) and where the files are.
    rec.state = "api";
    opened.manifest.SerializeToString(&rec.payload);
    rec.files = api_files.dump();
  }
  Status recorded = store_->RecordIncoming(rec, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", now);
  if (recorded.ok()) recorded = store_->TransferProgress(id, "IN", -1);
  if (!recorded.ok()) return DeferDelivery(id, recorded.Context("recording it in the store"));
  downloads_.erase(id);
  (void)::unlink(spool.c_str());
  Log()->info("message {} from {} {} (streamed, {} attachment(s); INNKOMMENDE_MOTTATT)", id,
              row.sender, api ? "kept for the HTTP API" : "written to inbox",
              opened.manifest.attachments_size());
  AnswerAfterCommit(id, wire::MOTTATT, "");
}

}  // namespace bud::ip
