// Sending streamed envelopes (docs/large-messages.md): a large outbox folder moves into the
// spool, is sealed chunk by chunk into a spool file, and goes to the broker chunk by chunk,
// at most `window` unacknowledged, from the broker's next_chunk on after any reconnect.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/wire/zmq.h"
#include "integration-point/data_dirs.h"
#include "integration-point/engine.h"
#include "integration-point/stream_state.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }
constexpr int64_t kProgressEveryMs = 5000;
constexpr int64_t kSaveProgressEveryMs = 1000;

bool IsStreamHead(const std::string& envelope) {
  return envelope.size() <= crypto::kMaxStreamHeadBytes &&
         crypto::ParseStreamHead(envelope, UINT64_MAX >> 1).ok();
}
}  // namespace

std::string Engine::SpoolDir() const { return ip::SpoolDir(config_); }

std::string Engine::SpoolSource(const std::string& message_id) const {
  return ip::SpoolSource(config_, message_id);
}

// A routing choice only: the sizes are from the listing; the files are checked when opened.
bool Engine::IsLargeFolder(const OutboxFolder& folder) const {
  return folder.listed_bytes > static_cast<uint64_t>(config_.stream_threshold_bytes);
}

// The checked files move into spool/src/<id>/, a directory of our own, each verified to be the
// file that was checked (MoveOutboxFiles): the writer of the outbox keeps no handle on what is
// sealed later.
Status Engine::TakeInLargeFolder(OutboxFolder& folder, const std::string& message_id) {
  BUD_RETURN_IF_ERROR(MakeDirs(JoinPath(SpoolDir(), "src")));
  const std::string target = SpoolSource(message_id);
  BUD_RETURN_IF_ERROR(RemoveAll(target));  // a leftover of a refused earlier attempt
  return MoveOutboxFiles(folder, target);
}

// After a crash: a folder moved into the spool whose message the store does not hold goes back
// to the outbox; one whose message is sealed (or failed) is no longer needed. One that an HTTP
// API draft was being sent from goes (the draft keeps its own links to the files), and so do
// the files of drafts that were sent or deleted.
void Engine::RecoverSpool() {
  if (auto drafts = ListDir(DraftsDir(config_)); drafts.ok()) {
    for (const auto& id : *drafts) {
      auto draft = store_->GetDraft(id);
      if (draft.ok() && !*draft) (void)RemoveAll(DraftDir(config_, id));
    }
  }
  // Streamed messages received for the API: kept while their row waits for the API (state
  // api); a half-decrypted one (.tmp) or one deleted before a crash goes.
  if (auto kept = ListDir(ApiInboxDir(config_)); kept.ok()) {
    for (const auto& id : *kept) {
      auto row = store_->Get(id, "IN");
      if (id == ".tmp" || (row.ok() && (!row->has_value() || (*row)->state != "api"))) {
        (void)RemoveAll(JoinPath(ApiInboxDir(config_), id));
      }
    }
  }
  const std::string src = JoinPath(SpoolDir(), "src");
  auto names = ListDir(src);
  if (!names.ok()) return;
  for (const auto& id : *names) {
    auto row = store_->Get(id, "OUT");
    if (!row.ok()) continue;
    auto draft = store_->GetDraft(id);
    if (!row->has_value() && draft.ok() && *draft) {
      Log()->warn("spooled files of API message {} were not taken in before a restart; the "
                  "draft keeps them, send it again", id);
      (void)RemoveAll(JoinPath(src, id));
    } else if (!row->has_value()) {
      std::string back = JoinPath(config_.outbox, id);
      for (int i = 1; Exists(back); ++i) back = JoinPath(config_.outbox, fmt::format("{}-{}", id, i));
      Status st = RenameDurable(JoinPath(src, id), back);
      Log()->warn("spooled folder of message {} was not taken in before a restart; moved back to "
                  "the outbox: {}", id, st.ok() ? back : st.ToString());
    } else if ((*row)->state != "new") {
      (void)RemoveAll(JoinPath(src, id));
    }
  }
}

bool Engine::SealLarge(const MessageRow& m, wire::Header header, wire::Payload manifest,
                       X509* receiver_cert, const std::function<void(const std::string&)>& fail) {
  const std::string src = SpoolSource(m.message_id);
  std::vector<crypto::StreamSource> sources;
  for (const auto& a : manifest.attachments()) {
    sources.push_back({a.name(), a.media_type(), JoinPath(src, a.name())});
  }
  manifest.clear_attachments();
  crypto::StreamOptions options;
  options.max_plaintext = static_cast<uint64_t>(config_.max_message_bytes) + (2u << 20);
  options.max_attachments = static_cast<size_t>(config_.max_attachments);
  const std::string spool = JoinPath(SpoolDir(), "out-" + m.message_id);
  const int64_t t0 = MonoMs();
  auto head = crypto::SealStreamToFile(std::move(header), manifest, sources,
                                       {signing_key_.get(), signing_cert_.get()}, receiver_cert,
                                       spool, options);
  if (!head.ok()) {
    if (head.status().code() == Code::kIo) {
      Log()->error("message {}: cannot seal the stream now: {}", m.message_id,
                   head.status().ToString());
      return false;
    }
    fail("cannot seal: " + head.status().ToString());
    (void)RemoveAll(src);
    return true;
  }
  Status st = store_->MarkSealed(m.message_id, *head);
  if (st.ok()) {
    auto parsed = crypto::ParseStreamHead(*head, UINT64_MAX >> 1);
    st = parsed.ok() ? store_->StartTransfer(m, "OUT", 0,
                                             static_cast<int64_t>(parsed->layout.ciphertext_size))
                     : parsed.status();
  }
  if (!st.ok()) {
    Log()->error("message {}: cannot store the sealed head: {}", m.message_id, st.ToString());
    return false;
  }
  Status rm = RemoveAll(src);
  if (!rm.ok()) Log()->warn("message {}: spooled attachments not removed: {}", m.message_id, rm.ToString());
  struct stat sst;
  Log()->info("message {} sealed as a stream for {} ({} bytes, {} ms)", m.message_id, m.receiver,
              ::stat(spool.c_str(), &sst) == 0 ? sst.st_size : -1, MonoMs() - t0);
  return true;
}

wire::ClientMessage Engine::SubmitMessage(std::string envelope) {
  wire::ClientMessage msg;
  msg.set_protocol_version(wire::kProtocolVersion);
  if (IsStreamHead(envelope)) {
    msg.mutable_submit_stream()->set_head(std::move(envelope));
  } else {
    msg.mutable_submit()->set_envelope(std::move(envelope));
  }
  return msg;
}

void Engine::OnStreamStart(const wire::StreamStart& start) {
  const std::string& id = start.message_id();
  auto row = store_->Get(id, "OUT");
  if (!row.ok() || !row->has_value() || (*row)->state != "sealed") {
    Log()->warn("broker asked for chunks of message {} that is not being sent", id);
    return;
  }
  auto head = crypto::ParseStreamHead((*row)->envelope, UINT64_MAX >> 1);
  if (!head.ok()) return;
  auto& up = uploads_[id];
  if (!up) {
    up = std::make_unique<StreamUpload>();
    up->fd = ::open(JoinPath(SpoolDir(), "out-" + id).c_str(), O_RDONLY | O_CLOEXEC);
    if (up->fd < 0) {
      Log()->error("message {}: cannot open its spool: {}", id, std::strerror(errno));
      uploads_.erase(id);
      return;
    }
    up->started_mono = up->last_log_mono = MonoMs();
  }
  up->layout = head->layout;
  up->next_send = up->acked = up->start_chunk = std::min(start.next_chunk(), up->layout.chunk_count);
  up->window = std::clamp<uint32_t>(start.window(), 1, 64);
  in_flight_[id] = MonoMs();
  if (Status n = store_->TransferProgress(id, "OUT", std::nullopt, ""); !n.ok()) {
    Log()->warn("message {}: progress not stored: {}", id, n.ToString());
  }
  SaveProgress(id, "OUT", up->layout, up->acked, up->saved, up->saved_mono, true);
  Log()->info("message {}: {} upload at chunk {} of {} (offset {})", id,
              up->acked == 0 ? "starting" : "resuming", up->acked, up->layout.chunk_count,
              up->layout.RecordOffset(up->acked));
}

void Engine::OnUploadAck(const wire::ChunkAck& ack) {
  auto it = uploads_.find(ack.message_id());
  if (it == uploads_.end()) return;
  StreamUpload& up = *it->second;
  if (ack.next_chunk() > up.acked && ack.next_chunk() <= up.next_send) up.acked = ack.next_chunk();
  in_flight_[ack.message_id()] = MonoMs();  // moving: not a submit timeout
}

void Engine::EndUpload(const std::string& message_id, bool delete_spool) {
  uploads_.erase(message_id);
  if (delete_spool) (void)::unlink(JoinPath(SpoolDir(), "out-" + message_id).c_str());
}

void Engine::ResetStreams() {
  uploads_.clear();
  for (auto& [id, d] : downloads_) {
    if (d->unsynced) (void)::fdatasync(d->fd);
  }
  downloads_.clear();
}

void Engine::SaveProgress(const std::string& message_id, const char* direction,
                          const crypto::StreamLayout& layout, uint64_t chunks, uint64_t& saved,
                          int64_t& saved_mono, bool now) {
  if (chunks == saved || (!now && MonoMs() - saved_mono < kSaveProgressEveryMs)) return;
  const uint64_t bytes = std::min(layout.RecordOffset(chunks), layout.ciphertext_size);
  Status st = store_->TransferProgress(message_id, direction, static_cast<int64_t>(bytes));
  if (!st.ok()) {
    Log()->warn("message {}: progress not stored: {}", message_id, st.ToString());
    return;
  }
  saved = chunks;
  saved_mono = MonoMs();
}

void Engine::PumpStreams() {
  for (auto it = uploads_.begin(); it != uploads_.end();) {
    StreamUpload& up = *it->second;
    // What the broker acknowledged is durable there; the turn's commit carries it here.
    SaveProgress(it->first, "OUT", up.layout, up.acked, up.saved, up.saved_mono, false);
    bool ok = true;
    while (up.next_send < up.layout.chunk_count && up.next_send - up.acked < up.window) {
      wire::ClientMessage msg;
      msg.set_protocol_version(wire::kProtocolVersion);
      auto* c = msg.mutable_chunk();
      c->set_message_id(it->first);
      c->set_index(up.next_send);
      const uint64_t size = up.layout.RecordSize(up.next_send);
      std::string* rec = c->mutable_record();
      rec->resize(size);
      ssize_t n = ::pread(up.fd, rec->data(), size,
                          static_cast<off_t>(up.layout.RecordOffset(up.next_send)));
      if (n != static_cast<ssize_t>(size)) {
        Log()->error("message {}: spool is short at chunk {}; upload stopped", it->first,
                     up.next_send);
        ok = false;
        break;
      }
      if (!SendToBroker(msg)) break;  // retried next turn
      up.next_send++;
    }
    if (MonoMs() - up.last_log_mono >= kProgressEveryMs) {
      const uint64_t bytes = std::min(up.layout.RecordOffset(up.acked), up.layout.ciphertext_size);
      const double secs = static_cast<double>(std::max<int64_t>(MonoMs() - up.started_mono, 1)) / 1000.0;
      Log()->info("message {}: sent {} of {} bytes ({:.0f} %, {:.1f} MB/s)", it->first, bytes,
                  up.layout.ciphertext_size,
                  100.0 * static_cast<double>(bytes) / static_cast<double>(up.layout.ciphertext_size),
                  static_cast<double>(bytes - up.layout.RecordOffset(up.start_chunk)) / 1e6 / secs);
      up.last_log_mono = MonoMs();
    }
    it = ok ? std::next(it) : uploads_.erase(it);
  }
  // Receiving side: one fsync and one ChunkAck per download per loop turn (group commit).
  for (auto& [id, d] : downloads_) {
    if (!d->verifier) continue;
    if (d->unsynced) {
      if (::fdatasync(d->fd) != 0) {
        Log()->error("message {}: fsync of spool failed: {}", id, std::strerror(errno));
        continue;
      }
      d->unsynced = false;
      wire::ClientMessage msg;
      msg.set_protocol_version(wire::kProtocolVersion);
      msg.mutable_chunk_ack()->set_message_id(id);
      msg.mutable_chunk_ack()->set_next_chunk(d->verifier->next_index());
      SendToBroker(msg);
      if (MonoMs() - d->last_log_mono >= kProgressEveryMs) {
        const auto& l = d->verifier->layout();
        const uint64_t bytes = std::min(l.RecordOffset(d->verifier->next_index()), l.ciphertext_size);
        const double secs = static_cast<double>(std::max<int64_t>(MonoMs() - d->started_mono, 1)) / 1000.0;
        Log()->info("message {}: received {} of {} bytes ({:.0f} %, {:.1f} MB/s)", id, bytes,
                    l.ciphertext_size,
                    100.0 * static_cast<double>(bytes) / static_cast<double>(l.ciphertext_size),
                    static_cast<double>(bytes - l.RecordOffset(d->start_chunk)) / 1e6 / secs);
        d->last_log_mono = MonoMs();
      }
    }
    // What is fsynced is stored as progress (at most once a second, also once the chunks stop
    // coming; the turn's commit carries it).
    SaveProgress(id, "IN", d->verifier->layout(), d->verifier->next_index(), d->saved,
                 d->saved_mono, false);
  }
}

}  // namespace bud::ip
