// Reading outbox folders. See outbox.h.
#include "integration-point/outbox.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/fs.h"
#include "common/payload.h"
#include "common/uuid.h"

namespace bud::ip {

namespace {
Status Bad(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }

std::string ToLower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Result<std::string> OptionalString(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::string();
  if (!j[key].is_string()) return Bad(fmt::format("message.json: '{}' must be a string", key));
  return j[key].get<std::string>();
}
}  // namespace

Result<std::string> FolderKey(const std::string& folder) {
  struct stat st;
  std::string mj = JoinPath(folder, "message.json");
  if (::stat(mj.c_str(), &st) != 0) return ErrnoStatus(errno, fmt::format("stat '{}'", mj));
  return fmt::format("{}|{}|{}|{}.{}", folder, st.st_ino,
                     st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

Result<OutgoingDraft> ParseMessageJson(std::string_view text, const Orgnr& me,
                                       const OutboxLimits& limits) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for 1e400
    return Bad(fmt::format("message.json is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) return Bad("message.json must be a JSON object");

  OutgoingDraft d{.message_id = {}, .conversation_id = {}, .receiver = me, .process = {},
                  .document_type = {}, .title = {}, .created_ms = 0, .expires_ms = 0,
                  .payload = {}};
  if (!j.contains("receiver")) return Bad("message.json: 'receiver' is missing");
  BUD_ASSIGN_OR_RETURN(std::string receiver, OptionalString(j, "receiver"));
  auto org = Orgnr::Parse(receiver);
  if (!org.ok()) return Bad("message.json: 'receiver': " + org.status().message());
  d.receiver = *org;
  BUD_ASSIGN_OR_RETURN(std::string sender, OptionalString(j, "sender"));
  if (!sender.empty()) {
    auto s = Orgnr::Parse(sender);
    if (!s.ok() || *s != me) {
      return Bad(fmt::format("message.json: 'sender' is '{}' but this integration point is {}",
                             sender, me.wire()));
    }
  }
  BUD_ASSIGN_OR_RETURN(d.process, OptionalString(j, "process"));
  if (d.process.empty()) return Bad("message.json: 'process' is missing or empty");
  BUD_ASSIGN_OR_RETURN(d.document_type, OptionalString(j, "documentType"));
  if (d.document_type.empty()) return Bad("message.json: 'documentType' is missing or empty");
  BUD_ASSIGN_OR_RETURN(d.title, OptionalString(j, "title"));
  BUD_ASSIGN_OR_RETURN(d.message_id, OptionalString(j, "messageId"));
  if (d.message_id.empty()) {
    d.message_id = NewUuid();
  } else if (!IsUuid(d.message_id)) {
    return Bad(fmt::format("message.json: 'messageId' '{}' is not a UUID", d.message_id));
  }
  d.message_id = ToLower(d.message_id);
  BUD_ASSIGN_OR_RETURN(d.conversation_id, OptionalString(j, "conversationId"));
  if (d.conversation_id.empty()) {
    d.conversation_id = NewUuid();
  } else if (!IsUuid(d.conversation_id)) {
    return Bad(fmt::format("message.json: 'conversationId' '{}' is not a UUID", d.conversation_id));
  }
  d.conversation_id = ToLower(d.conversation_id);
  d.created_ms = NowMs();
  BUD_ASSIGN_OR_RETURN(std::string expires, OptionalString(j, "expectedResponseDateTime"));
  BUD_ASSIGN_OR_RETURN(d.expires_ms, ParseExpiry(expires, d.created_ms, limits.default_ttl_ms,
                                                 "message.json: 'expectedResponseDateTime'"));
  d.payload.set_message_id(d.message_id);
  d.payload.set_sender(me.wire());
  d.payload.set_receiver(d.receiver.wire());
  d.payload.set_conversation_id(d.conversation_id);
  d.payload.set_title(d.title);
  d.payload.set_metadata_json(std::string(text));
  return d;
}

Result<int64_t> ParseExpiry(const std::string& text, int64_t created_ms, int64_t default_ttl_ms,
                            const std::string& what) {
  if (text.empty()) return created_ms + default_ttl_ms;
  auto t = ParseTime(text);
  if (!t) {
    return Bad(fmt::format("{} '{}' is not an ISO 8601 time such as 2026-12-01T12:00:00+01:00",
                           what, text));
  }
  if (*t <= created_ms) return Bad(fmt::format("{} {} is in the past", what, text));
  return *t;
}

Status CheckAttachmentLimits(const OutgoingDraft& d, const std::string& name, size_t size,
                             const OutboxLimits& limits) {
  BUD_RETURN_IF_ERROR(ValidateAttachmentName(name));
  if (size > limits.max_attachment_bytes) {
    return Bad(fmt::format("attachment '{}' has {} bytes, more than the limit of {}", name, size,
                           limits.max_attachment_bytes));
  }
  if (static_cast<size_t>(d.payload.attachments_size()) >= limits.max_attachments) {
    return Bad(fmt::format("the message has more than {} attachments", limits.max_attachments));
  }
  for (const auto& a : d.payload.attachments()) {
    if (a.name() == name) return Bad(fmt::format("attachment name '{}' appears twice", name));
  }
  return Status::Ok();
}

Status AddAttachment(OutgoingDraft& d, const std::string& name, std::string media_type,
                     std::string data, const OutboxLimits& limits) {
  BUD_RETURN_IF_ERROR(CheckAttachmentLimits(d, name, data.size(), limits));
  auto* a = d.payload.add_attachments();
  a->set_name(name);
  a->set_media_type(media_type.empty() ? GuessMediaType(name) : std::move(media_type));
  a->set_data(std::move(data));
  return Status::Ok();
}

Result<OutgoingDraft> ReadOutboxFolder(const std::string& folder, const Orgnr& me,
                                       const OutboxLimits& limits) {
  BUD_ASSIGN_OR_RETURN(std::string text, ReadFile(JoinPath(folder, "message.json")));
  BUD_ASSIGN_OR_RETURN(OutgoingDraft d, ParseMessageJson(text, me, limits));
  BUD_ASSIGN_OR_RETURN(auto names, ListDir(folder));
  uint64_t total = 0;
  for (const auto& name : names) {
    if (name == "message.json") continue;
    std::string path = JoinPath(folder, name);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return ErrnoStatus(errno, fmt::format("stat '{}'", path));
    Status ok = ValidateAttachmentName(name);
    if (!ok.ok()) return ok;
    if (!S_ISREG(st.st_mode)) {
      return Bad(fmt::format("'{}' is not a regular file (folders and links are not sent)", name));
    }
    // Checked before reading, so an oversized file is never loaded.
    BUD_RETURN_IF_ERROR(CheckAttachmentLimits(d, name, static_cast<size_t>(st.st_size), limits));
    if (!limits.read_data) {
      total += static_cast<uint64_t>(st.st_size);
      if (total > limits.max_attachment_bytes) {
        return Bad(fmt::format("the attachments have more than {} bytes together",
                               limits.max_attachment_bytes));
      }
      auto* a = d.payload.add_attachments();
      a->set_name(name);
      a->set_media_type(GuessMediaType(name));
      a->set_size(static_cast<uint64_t>(st.st_size));
      continue;
    }
    BUD_ASSIGN_OR_RETURN(std::string data, ReadFile(path));
    BUD_RETURN_IF_ERROR(AddAttachment(d, name, GuessMediaType(name), std::move(data), limits));
  }
  if (d.payload.attachments_size() == 0) {
    return Bad("the folder has no attachments besides message.json");
  }
  return d;
}

Result<std::string> MoveToFailed(const std::string& outbox, const std::string& name,
                                 const std::string& error) {
  std::string failed = JoinPath(outbox, ".failed");
  BUD_RETURN_IF_ERROR(MakeDirs(failed));
  std::string target = JoinPath(failed, name);
  for (int i = 1; Exists(target); ++i) target = JoinPath(failed, fmt::format("{}-{}", name, i));
  BUD_RETURN_IF_ERROR(RenameDurable(JoinPath(outbox, name), target));
  BUD_RETURN_IF_ERROR(WriteFileSynced(
      JoinPath(target, "error.txt"),
      fmt::format("{}\n\nFailed at {}. Fix the folder and move it back into the outbox to send it "
                  "again.\n",
                  error, FormatTime(NowMs())),
      0640));
  BUD_RETURN_IF_ERROR(FsyncPath(target));
  return target;
}

}  // namespace bud::ip
