// Writing inbox folders atomically. See inbox.h.
#include "integration-point/inbox.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "common/clock.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/uuid.h"

namespace bud::ip {

nlohmann::json InboxMessageJson(const wire::Header& h, const std::string& title,
                                const std::string& metadata_json, const SignerInfo& signer,
                                int64_t received_ms, nlohmann::json files) {
  // Bounded (ValidatePayload refused deeper or larger metadata already; this guards any other
  // caller): a deeper value would overflow the stack in the copy and dump() below.
  auto parsed = ParseJson(metadata_json, "the sender's metadata");
  nlohmann::json sender_metadata =
      parsed.ok() ? std::move(parsed).value() : nlohmann::json(metadata_json);
  return {
      {"messageId", h.message_id()},
      {"conversationId", h.conversation_id()},
      {"sender", h.sender()},
      {"receiver", h.receiver()},
      {"process", h.process()},
      {"documentType", h.document_type()},
      {"title", title},
      {"createdAt", FormatTime(h.created_unix_ms())},
      {"expectedResponseDateTime", FormatTime(h.expires_unix_ms())},
      {"receivedAt", FormatTime(received_ms)},
      {"signer", {{"orgnr", signer.orgnr}, {"subject", signer.subject},
                  {"certificateSha256", signer.fingerprint}, {"verified", true}}},
      {"attachments", std::move(files)},
      {"senderMetadata", sender_metadata},
  };
}

std::string InboxJsonText(const nlohmann::json& mj) {
  return mj.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Status InboxBatch::Stage(const crypto::Opened& opened, const SignerInfo& signer,
                         int64_t received_ms) {
  const auto& h = opened.header;
  // Second guard (the engine checks first): the id becomes a folder name.
  if (!IsUuid(h.message_id()) || h.message_id().find('/') != std::string::npos) {
    return Status(Code::kMalformed, "message id is not a UUID; nothing written");
  }
  if (staged_.contains(h.message_id())) return Status::Ok();
  if (Exists(JoinPath(inbox_, h.message_id()))) return Status::Ok();
  if (batch_dir_.empty()) {
    const std::string tmp_root = JoinPath(inbox_, ".tmp");
    BUD_RETURN_IF_ERROR(MakeDirs(tmp_root));
    // The batch's folder is spread over the file system's allocation groups, and each message's
    // folder and files go beside it: away from the inodes just freed in the inbox and the outbox
    // (common/fs.h). A no-op once set, and where the file system has no such flag.
    SpreadSubdirectories(tmp_root);
    const std::string batch = JoinPath(tmp_root, "batch-" + NewUuid());
    BUD_RETURN_IF_ERROR(MakeDirs(batch, 0700));
    batch_dir_ = batch;
  }
  const std::string tmp = JoinPath(batch_dir_, h.message_id());
  BUD_RETURN_IF_ERROR(RemoveAll(tmp));  // a leftover of an earlier attempt in this batch
  BUD_RETURN_IF_ERROR(MakeDirs(tmp, 0750));

  nlohmann::json files = nlohmann::json::array();
  for (const auto& a : opened.payload.attachments()) {
    BUD_RETURN_IF_ERROR(WriteFileUnsynced(JoinPath(tmp, a.name()), a.data(), 0640));
    files.push_back({{"name", a.name()},
                     {"mediaType", a.media_type()},
                     {"size", a.data().size()},
                     {"sha256", crypto::Hex(crypto::Sha256(a.data()))}});
  }
  const nlohmann::json mj = InboxMessageJson(h, opened.payload.title(),
                                             opened.payload.metadata_json(), signer, received_ms,
                                             std::move(files));
  BUD_RETURN_IF_ERROR(WriteFileUnsynced(JoinPath(tmp, "message.json"), InboxJsonText(mj), 0640));
  staged_.insert(h.message_id());
  return Status::Ok();
}

Status InboxBatch::Publish() {
  if (staged_.empty()) return Status::Ok();
  std::set<std::string> staged = std::move(staged_);
  staged_.clear();
  const std::string batch = std::exchange(batch_dir_, std::string());
  Status st = PublishFrom(batch, staged);
  // Empty when published (unless a message's staging failed half way); after a failure what
  // is left was never recorded, and the broker delivers it again. What cannot be removed now is
  // removed when the point starts.
  (void)RemoveAll(batch);
  return st;
}

Status InboxBatch::PublishFrom(const std::string& batch, const std::set<std::string>& staged) {
  // Every staged file and folder durable before any appears in the inbox.
  BUD_RETURN_IF_ERROR(SyncFileSystem(batch));
  for (const auto& id : staged) {
    const std::string final_dir = JoinPath(inbox_, id);
    if (::rename(JoinPath(batch, id).c_str(), final_dir.c_str()) != 0) {
      return ErrnoStatus(errno, fmt::format("cannot move message {} into the inbox", id));
    }
  }
  return FsyncPath(inbox_);
}

}  // namespace bud::ip
