// Reading outbox folders. See outbox.h.
#include "integration-point/outbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/oslo_time.h"
#include "common/payload.h"
#include "common/uuid.h"
#include "integration-point/arkivmelding.h"

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

Result<std::string> SenderParty(std::string_view text) {
  std::string_view rest = text;
  if (rest.starts_with("0192:")) rest.remove_prefix(5);
  const auto colon = rest.find(':');
  BUD_ASSIGN_OR_RETURN(Orgnr org, Orgnr::Parse(rest.substr(0, colon)));
  if (colon == std::string_view::npos) return org.wire();
  auto part = Orgnr::Parse(rest.substr(colon + 1));
  if (!part.ok() || rest.substr(colon + 1).starts_with("0192:")) {
    return Status(Code::kBadOrgnr,
                  fmt::format("sub-unit '{}' is not \"0192:<orgnr>:<orgnr of the part>\"",
                              EscapeControl(text.substr(0, 64))));
  }
  return fmt::format("{}:{}", org.wire(), part->digits());
}

Result<std::string> OnBehalfOf(const std::string& claimed, const Orgnr& me,
                               const OutboxLimits& limits, const std::string& what) {
  if (claimed.empty()) return me.wire();
  auto party = SenderParty(claimed);
  if (!party.ok()) return Bad(fmt::format("{}: {}", what, party.status().message()));
  if (*party == me.wire()) return *party;
  for (const auto& allowed : limits.on_behalf_of) {
    if (allowed == *party) return *party;
  }
  return Bad(
      fmt::format("{} is {} but this integration point sends for {}{} (add it to "
                  "[agency] on_behalf_of to send on its behalf)",
                  what, *party, me.wire(),
                  limits.on_behalf_of.empty() ? "" : " and those in [agency] on_behalf_of"));
}

Result<OutboxFolder> OpenOutboxFolder(int outbox_fd, const std::string& outbox,
                                      const std::string& name) {
  OutboxFolder f;
  f.path = JoinPath(outbox, name);
  f.name = name;
  const std::string shown = EscapeControl(name);
  BUD_ASSIGN_OR_RETURN(f.dir,
                       OpenDirNoFollow(outbox_fd, name, fmt::format("outbox folder '{}'", shown)));
  BUD_ASSIGN_OR_RETURN(OpenedFile mj, OpenRegularNoFollow(f.dir.get(), "message.json",
                                                          "message.json"));
  f.message_json_st = mj.st;
  const JsonLimits json_limits;
  BUD_ASSIGN_OR_RETURN(f.message_text, ReadAllFd(mj.fd.get(), json_limits.max_bytes,
                                                 "message.json"));
  // The listing through the open descriptor: the folder we hold, not whatever its name
  // points at by now.
  int dup = ::fcntl(f.dir.get(), F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return ErrnoStatus(errno, fmt::format("outbox folder '{}'", shown));
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    int e = errno;
    ::close(dup);
    return ErrnoStatus(e, fmt::format("cannot list outbox folder '{}'", shown));
  }
  ::rewinddir(d);
  while (struct dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == ".." || n == "message.json") continue;
    f.entries.emplace_back(n);
    struct stat st;
    if (::fstatat(f.dir.get(), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
      f.listed_bytes += static_cast<uint64_t>(st.st_size);
    }
  }
  ::closedir(d);
  std::sort(f.entries.begin(), f.entries.end());
  return f;
}

std::string FolderKey(const OutboxFolder& f) {
  const struct stat& st = f.message_json_st;
  return fmt::format("{}|{}|{}|{}.{}", f.path, st.st_ino, st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec);
}

Result<OutgoingDraft> ParseMessageJson(std::string_view text, const Orgnr& me,
                                       const OutboxLimits& limits) {
  // Bounded before it is parsed: depth and size (common/json.h).
  BUD_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(text, "message.json"));
  if (!j.is_object()) return Bad("message.json must be a JSON object");

  OutgoingDraft d{.message_id = {},
                  .conversation_id = {},
                  .receiver = me,
                  .process = {},
                  .document_type = {},
                  .title = {},
                  .message_reference = {},
                  .created_ms = 0,
                  .expires_ms = 0,
                  .payload = {}};
  if (!j.contains("receiver")) return Bad("message.json: 'receiver' is missing");
  BUD_ASSIGN_OR_RETURN(std::string receiver, OptionalString(j, "receiver"));
  auto org = Orgnr::Parse(receiver);
  if (!org.ok()) return Bad("message.json: 'receiver': " + org.status().message());
  d.receiver = *org;
  BUD_ASSIGN_OR_RETURN(std::string sender, OptionalString(j, "sender"));
  BUD_RETURN_IF_ERROR(OnBehalfOf(sender, me, limits, "message.json: 'sender'").status());
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
  auto t = ParseOsloTime(text);  // without an offset: Oslo local time, as eFormidling
  if (!t) {
    return Bad(fmt::format("{} '{}' is not an ISO 8601 time such as 2026-12-01T12:00:00+01:00",
                           what, text));
  }
  if (*t <= created_ms) return Bad(fmt::format("{} {} is in the past", what, text));
  if (*t - created_ms > kMaxTtlMs) {
    return Bad(fmt::format("{} {} is more than {} days ahead; a message lives at most that long",
                           what, text, kMaxTtlMs / (24 * 3600 * 1000)));
  }
  return *t;
}

bool TakesNoFiles(std::string_view document_type) {
  const auto colon = document_type.rfind(':');
  const std::string type = ToLower(std::string(
      colon == std::string_view::npos ? document_type : document_type.substr(colon + 1)));
  return type == "arkivmelding_kvittering" || type == "status" || type == "avtalt" ||
         type == "einnsyn_kvittering";
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

Status TakeArkivmelding(OutgoingDraft& d, std::string_view xml) {
  BUD_ASSIGN_OR_RETURN(ArkivmeldingInfo info, ParseArkivmelding(xml));
  if (d.title.empty()) {
    d.title = info.public_title;
    d.payload.set_title(d.title);  // the receiver's title too
  }
  d.message_reference = info.reference;
  return Status::Ok();
}

Status AddAttachment(OutgoingDraft& d, const std::string& name, std::string media_type,
                     std::string data, const OutboxLimits& limits) {
  BUD_RETURN_IF_ERROR(CheckAttachmentLimits(d, name, data.size(), limits));
  if (name == kArkivmeldingFile) BUD_RETURN_IF_ERROR(TakeArkivmelding(d, data));
  auto* a = d.payload.add_attachments();
  a->set_name(name);
  a->set_media_type(media_type.empty() ? GuessMediaType(name) : std::move(media_type));
  a->set_data(std::move(data));
  return Status::Ok();
}

Result<OutgoingDraft> ReadOutboxFolder(OutboxFolder& folder, const Orgnr& me,
                                       const OutboxLimits& limits) {
  BUD_ASSIGN_OR_RETURN(OutgoingDraft d, ParseMessageJson(folder.message_text, me, limits));
  folder.taken.clear();
  // Bounds the descriptors and work a folder of many entries can cost before a name is opened.
  if (folder.entries.size() > limits.max_attachments) {
    return Bad(fmt::format("the message has more than {} attachments", limits.max_attachments));
  }
  uint64_t total = 0;
  for (const auto& name : folder.entries) {
    const std::string shown = fmt::format("'{}'", EscapeControl(name));
    Status ok = ValidateAttachmentName(name);
    if (!ok.ok()) return Bad(EscapeControl(ok.message()));
    // Opened once, without following a link; everything below is about this descriptor.
    BUD_ASSIGN_OR_RETURN(OpenedFile file, OpenRegularNoFollow(folder.dir.get(), name, shown));
    const auto size = static_cast<uint64_t>(file.st.st_size);
    // Checked before reading, so an oversized file is never loaded.
    BUD_RETURN_IF_ERROR(CheckAttachmentLimits(d, name, static_cast<size_t>(size), limits));
    if (!limits.read_data) {
      total += size;
      if (total > limits.max_attachment_bytes) {
        return Bad(fmt::format("the attachments have more than {} bytes together",
                               limits.max_attachment_bytes));
      }
      if (name == kArkivmeldingFile) {  // read here too: the same rule as a small message
        BUD_ASSIGN_OR_RETURN(std::string xml,
                             ReadAllFd(file.fd.get(), kMaxArkivmeldingBytes, shown));
        BUD_RETURN_IF_ERROR(TakeArkivmelding(d, xml));
      }
      auto* a = d.payload.add_attachments();
      a->set_name(name);
      a->set_media_type(GuessMediaType(name));
      a->set_size(size);
      folder.taken.push_back({name, file.st.st_dev, file.st.st_ino});
      continue;
    }
    // A file that grows after fstat is still cut at the limit.
    BUD_ASSIGN_OR_RETURN(std::string data,
                         ReadAllFd(file.fd.get(), limits.max_attachment_bytes, shown));
    BUD_RETURN_IF_ERROR(AddAttachment(d, name, GuessMediaType(name), std::move(data), limits));
  }
  if (d.payload.attachments_size() == 0 && !TakesNoFiles(d.document_type)) {
    return Bad(
        "the folder has no attachments besides message.json (only receipts and status "
        "messages, such as arkivmelding_kvittering, go without files)");
  }
  return d;
}

Status MoveOutboxFiles(OutboxFolder& folder, const std::string& target) {
  const std::string parent = ParentDir(target);
  const std::string leaf = std::filesystem::path(target).filename().string();
  BUD_ASSIGN_OR_RETURN(UniqueFd parent_fd, OpenDir(parent));
  if (::mkdirat(parent_fd.get(), leaf.c_str(), 0750) != 0) {
    return ErrnoStatus(errno, fmt::format("cannot create '{}'", target));
  }
  BUD_ASSIGN_OR_RETURN(UniqueFd to, OpenDirNoFollow(parent_fd.get(), leaf, target));
  std::vector<OutboxFolder::Taken> files = folder.taken;
  files.push_back({"message.json", folder.message_json_st.st_dev, folder.message_json_st.st_ino});
  std::vector<std::string> moved;
  auto put_back = [&] {
    for (const auto& n : moved) (void)::renameat(to.get(), n.c_str(), folder.dir.get(), n.c_str());
    (void)::unlinkat(parent_fd.get(), leaf.c_str(), AT_REMOVEDIR);
  };
  for (const auto& f : files) {
    const std::string shown = EscapeControl(f.name);
    if (::renameat(folder.dir.get(), f.name.c_str(), to.get(), f.name.c_str()) != 0) {
      Status st = ErrnoStatus(errno, fmt::format("cannot move '{}' of outbox folder '{}'", shown,
                                                 EscapeControl(folder.name)));
      put_back();
      if (st.code() == Code::kNotFound) {
        return Bad(fmt::format("'{}' went away while the folder was being taken in", shown));
      }
      return st;
    }
    moved.push_back(f.name);
    // What now has the name in our own directory must be what was checked: a swap between the
    // check and the rename moved something else.
    struct stat st;
    if (::fstatat(to.get(), f.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_dev != f.dev || st.st_ino != f.ino) {
      put_back();
      return Bad(fmt::format("'{}' was replaced while the folder was being taken in (it is not "
                             "the file that was checked)",
                             shown));
    }
  }
  if (::fsync(to.get()) != 0) {
    Status st = ErrnoStatus(errno, fmt::format("cannot fsync '{}'", target));
    put_back();
    return st;
  }
  (void)::fsync(folder.dir.get());
  return FsyncPath(parent);
}

Result<std::string> MoveToFailed(const std::string& outbox, const std::string& name,
                                 const std::string& error) {
  BUD_ASSIGN_OR_RETURN(UniqueFd out, OpenDir(outbox));
  if (::mkdirat(out.get(), ".failed", 0750) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, fmt::format("cannot create '{}'", JoinPath(outbox, ".failed")));
  }
  // A .failed that is a link could send refused folders anywhere (even into the inbox).
  BUD_ASSIGN_OR_RETURN(UniqueFd failed,
                       OpenDirNoFollow(out.get(), ".failed", JoinPath(outbox, ".failed")));
  struct stat st;
  if (::fstatat(out.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoStatus(errno, fmt::format("outbox entry '{}'", EscapeControl(name)));
  }
  const bool is_dir = S_ISDIR(st.st_mode);
  std::string chosen;
  for (int i = 0; chosen.empty(); ++i) {
    if (i > 10000) return Status(Code::kIo, "no free name in .failed");
    const std::string candidate = i == 0 ? name : fmt::format("{}-{}", name, i);
    int rc = 0;
    if (is_dir) {
      // RENAME_NOREPLACE: never replaces what is already in .failed.
      rc = ::renameat2(out.get(), name.c_str(), failed.get(), candidate.c_str(), RENAME_NOREPLACE);
    } else {
      rc = ::mkdirat(failed.get(), candidate.c_str(), 0750);
    }
    if (rc == 0) {
      chosen = candidate;
    } else if (errno != EEXIST && errno != ENOTEMPTY) {
      return ErrnoStatus(errno, fmt::format("cannot move outbox entry '{}' to .failed",
                                            EscapeControl(name)));
    }
  }
  BUD_ASSIGN_OR_RETURN(UniqueFd target,
                       OpenDirNoFollow(failed.get(), chosen,
                                       fmt::format(".failed/{}", EscapeControl(chosen))));
  if (!is_dir &&
      ::renameat2(out.get(), name.c_str(), target.get(), name.c_str(), RENAME_NOREPLACE) != 0) {
    return ErrnoStatus(errno, fmt::format("cannot move outbox entry '{}' to .failed",
                                          EscapeControl(name)));
  }
  const std::string text =
      fmt::format("{}\n\nFailed at {}. Fix the folder and move it back into the outbox to send "
                  "it again.\n",
                  EscapeControl(error), FormatTime(NowMs()));
  Status wrote = WriteNewFileAt(target.get(), "error.txt", text, 0640);
  if (wrote.code() == Code::kAlreadyExists) {
    // The folder brought its own error.txt (an earlier one, or a link planted there): that entry
    // goes (unlink does not follow it) and ours is created anew.
    if (::unlinkat(target.get(), "error.txt", 0) == 0) {
      wrote = WriteNewFileAt(target.get(), "error.txt", text, 0640);
    }
  }
  BUD_RETURN_IF_ERROR(wrote);
  if (::fsync(target.get()) != 0) return ErrnoStatus(errno, "cannot fsync the failed folder");
  if (::fsync(failed.get()) != 0) return ErrnoStatus(errno, "cannot fsync .failed");
  return JoinPath(JoinPath(outbox, ".failed"), chosen);
}

}  // namespace bud::ip
