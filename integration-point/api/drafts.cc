// See drafts.h.
#include "integration-point/api/drafts.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/payload.h"
#include "common/uuid.h"
#include "integration-point/arkivmelding.h"
#include "integration-point/data_dirs.h"
#include "integration-point/sbd.h"

namespace bud::ip::api {

namespace {
using nlohmann::json;
std::shared_ptr<spdlog::logger> Log() { return Logger("http"); }

// Writes all of `data` to `fd`.
Status WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus(errno, "writing the upload");
    data += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

// A write error as the client should see it: kDiskFull stays (507), anything else is kIo (500).
Status WriteError(const Status& st, std::string message) {
  return Status(st.code() == Code::kDiskFull ? Code::kDiskFull : Code::kIo, std::move(message));
}

Status TooLarge(const std::string& filename, const std::string& id, uint64_t bytes,
                uint64_t max_total, uint64_t others) {
  const uint64_t budget = others >= max_total ? 0 : max_total - others;
  return Status(Code::kTooLarge,
                fmt::format("'{}' has {}{} bytes; the files of message {} may have {} bytes "
                            "together (outbox.max_message_bytes) and the others have {}: "
                            "nothing of it was kept",
                            filename, bytes > budget ? "more than " : "", std::min(bytes, budget),
                            id, max_total, others));
}

uint64_t OthersBytes(const std::vector<DraftFile>& files, const std::string& filename) {
  uint64_t others = 0;
  for (const auto& f : files) others += f.name == filename ? 0 : f.size;
  return others;
}
}  // namespace

Drafts::Drafts(const Config& config, SharedStore& store, OutgoingMessages& outgoing)
    : config_(config), store_(store), outgoing_(outgoing) {}

// A streamed message's files are capped together by outbox.max_message_bytes, not one by one.
OutboxLimits Drafts::UploadLimits() const {
  OutboxLimits limits = outgoing_.limits();
  limits.max_attachment_bytes = static_cast<size_t>(config_.max_message_bytes);
  return limits;
}

Result<json> Drafts::Create(const std::string& body) {
  // Whatever the Content-Type says, the body is bounded before it is parsed (common/json.h).
  BUD_ASSIGN_OR_RETURN(json parsed, ParseJson(body, "the body"));
  json sbd;
  BUD_ASSIGN_OR_RETURN(OutgoingDraft draft, outgoing_.Parse(parsed, &sbd));
  BUD_RETURN_IF_ERROR(outgoing_.CheckReceiver(draft).status());
  BUD_RETURN_IF_ERROR(store_.Run(
      [&](PointStore& s) { return s.outgoing.CreateDraft(draft.message_id, sbd.dump()); }));
  return sbd;
}

// The draft exists and may take one more file of this name: the bytes of its other files.
Result<uint64_t> Drafts::CheckUpload(const std::string& id, const std::string& filename) {
  return store_.Run([&](PointStore& s) -> Result<uint64_t> {
    BUD_ASSIGN_OR_RETURN(auto sbd, s.outgoing.GetDraft(id));
    if (!sbd) {
      return Status(Code::kNotFound, fmt::format("no created, unsent message {} (POST "
                                                 "/api/messages/out creates one)",
                                                 id));
    }
    BUD_ASSIGN_OR_RETURN(auto files, s.outgoing.DraftFiles(id));
    OutgoingDraft check{.message_id = id,
                        .conversation_id = {},
                        .receiver = outgoing_.me(),
                        .process = {},
                        .document_type = {},
                        .title = {},
                        .message_reference = {},
                        .created_ms = 0,
                        .expires_ms = 0,
                        .payload = {}};
    for (const auto& f : files) {
      if (f.name != filename) check.payload.add_attachments()->set_name(f.name);
    }
    BUD_RETURN_IF_ERROR(CheckAttachmentLimits(check, filename, 0, UploadLimits()));
    return OthersBytes(files, filename);
  });
}

Status Drafts::Upload(const std::string& id, const FileUpload& file, const ByteSource& body) {
  if (file.filename.empty()) {
    return Status(Code::kInvalidArgument,
                  "Content-Disposition needs a filename, e.g. "
                  "'attachment; name=\"Title\"; filename=\"file.pdf\"'");
  }
  BUD_ASSIGN_OR_RETURN(uint64_t others, CheckUpload(id, file.filename));
  const uint64_t max_total = static_cast<uint64_t>(config_.max_message_bytes);
  const uint64_t budget = others >= max_total ? 0 : max_total - others;
  if (file.announced_bytes && *file.announced_bytes > budget) {
    return TooLarge(file.filename, id, *file.announced_bytes, max_total, others);
  }
  const std::string dir = DraftDir(config_, id);
  const std::string stored = "f-" + NewUuid();
  const std::string path = JoinPath(dir, stored);
  auto written = WriteBody(id, file, path, others, body);
  if (!written.ok()) {
    (void)::unlink(path.c_str());
    return written.status();
  }
  Status recorded = Record(id, file, stored, *written);
  if (!recorded.ok()) (void)::unlink(path.c_str());
  return recorded;
}

// The body into a new file at `path`, synced; the bytes written. kTooLarge when it would take
// the draft's files (`others` bytes besides this one) past outbox.max_message_bytes.
Result<uint64_t> Drafts::WriteBody(const std::string& id, const FileUpload& file,
                                   const std::string& path, uint64_t others,
                                   const ByteSource& body) {
  const uint64_t max_total = static_cast<uint64_t>(config_.max_message_bytes);
  const uint64_t budget = others >= max_total ? 0 : max_total - others;
  Status made = MakeDirs(ParentDir(path));
  int fd = made.ok() ? ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640) : -1;
  if (fd < 0) {
    Status st = made.ok() ? ErrnoStatus(errno, "creating " + path) : made;
    Log()->error("message {}: upload of '{}' refused: {}", id, file.filename, st.ToString());
    return WriteError(st, "cannot store the upload: " + st.ToString());
  }
  uint64_t written = 0;
  bool over = false;
  Status wrote = Status::Ok();
  const bool complete = body([&](const char* data, size_t n) {
    if (written + n > budget) {
      over = true;
      return false;
    }
    wrote = WriteAll(fd, data, n);
    written += n;
    return wrote.ok();
  });
  if (complete && ::fdatasync(fd) != 0) wrote = ErrnoStatus(errno, "syncing the upload");
  ::close(fd);
  if (complete && wrote.ok()) wrote = FsyncPath(ParentDir(path));
  if (over) {
    Log()->warn(
        "message {}: upload of '{}' refused after {} bytes: over "
        "outbox.max_message_bytes",
        id, file.filename, written);
    return TooLarge(file.filename, id, written + 1, max_total, others);
  }
  if (!wrote.ok()) {
    Log()->error("message {}: upload of '{}' failed after {} bytes: {}", id, file.filename, written,
                 wrote.ToString());
    return WriteError(wrote, fmt::format("cannot store '{}' ({}); nothing of it was kept, the "
                                         "message is as before",
                                         file.filename, wrote.ToString()));
  }
  if (!complete) {
    Log()->warn("message {}: upload of '{}' cut short after {} bytes", id, file.filename, written);
    return Status(Code::kInvalidArgument,
                  fmt::format("the body of '{}' ended early (after {} bytes); nothing of it was "
                              "kept",
                              file.filename, written));
  }
  return written;
}

// Points the draft at the stored file; checked again under the lock, since other files of this
// message may have come meanwhile. The file it replaced is removed after the commit.
Status Drafts::Record(const std::string& id, const FileUpload& file, const std::string& stored,
                      uint64_t bytes) {
  const uint64_t max_total = static_cast<uint64_t>(config_.max_message_bytes);
  const std::string media =
      file.media_type.empty() ? GuessMediaType(file.filename) : file.media_type;
  BUD_ASSIGN_OR_RETURN(std::string replaced, store_.Run([&](PointStore& s) -> Result<std::string> {
    auto now_files = s.outgoing.DraftFiles(id);
    const uint64_t others = now_files.ok() ? OthersBytes(*now_files, file.filename) : 0;
    if (others + bytes > max_total) {
      return Status(Code::kTooLarge,
                    fmt::format("'{}' has {} bytes; with the {} bytes of the other files of "
                                "message {} that is more than outbox.max_message_bytes ({}): "
                                "nothing of it was kept",
                                file.filename, bytes, others, id, max_total));
    }
    return s.outgoing.AddDraftFile(id, {file.filename, file.title, media, "", stored, bytes});
  }));
  if (!replaced.empty()) (void)::unlink(JoinPath(DraftDir(config_, id), replaced).c_str());
  Log()->info("message {}: '{}' uploaded ({} bytes)", id, file.filename, bytes);
  return Status::Ok();
}

// The draft's SBD, parsed and checked again, and its files.
Result<Drafts::Loaded> Drafts::Load(const std::string& id) {
  std::vector<DraftFile> files;
  BUD_ASSIGN_OR_RETURN(auto sbd_text,
                       store_.Run([&](PointStore& s) -> Result<std::optional<std::string>> {
                         BUD_ASSIGN_OR_RETURN(auto text, s.outgoing.GetDraft(id));
                         if (text) {
                           BUD_ASSIGN_OR_RETURN(files, s.outgoing.DraftFiles(id));
                         }
                         return text;
                       }));
  if (!sbd_text) return Status(Code::kNotFound, fmt::format("no created, unsent message {}", id));
  BUD_ASSIGN_OR_RETURN(json stored, ParseJson(*sbd_text, "the stored SBD"));
  json sbd;
  BUD_ASSIGN_OR_RETURN(OutgoingDraft draft, outgoing_.Parse(stored, &sbd));
  return Loaded{std::move(draft), std::move(sbd), std::move(files)};
}

// Its files go the way a folder's would: together above outbox.stream_threshold_bytes they are
// hard-linked into the spool layout of a large outbox folder (spool/src/<id>/<name>, no copy)
// and the engine seals them as a stream; else they are read into the message.
Result<json> Drafts::Send(const std::string& id) {
  BUD_ASSIGN_OR_RETURN(Loaded loaded, Load(id));
  uint64_t total = 0;
  for (const auto& f : loaded.files) total += f.size;
  const size_t count = loaded.files.size();
  const bool small = total <= static_cast<uint64_t>(config_.stream_threshold_bytes);
  BUD_ASSIGN_OR_RETURN(json sbd,
                       small ? SendSmall(std::move(loaded)) : SendStreamed(std::move(loaded)));
  if (!small) Log()->info("message {}: {} bytes in {} file(s) go streamed", id, total, count);
  (void)RemoveAll(DraftDir(config_, id));
  return sbd;
}

Result<json> Drafts::SendSmall(Loaded loaded) {
  const std::string dir = DraftDir(config_, loaded.draft.message_id);
  for (auto& f : loaded.files) {
    Result<std::string> data = std::move(f.data);
    if (!f.file.empty()) data = ReadFile(JoinPath(dir, f.file));
    if (!data.ok()) return data.status();
    BUD_RETURN_IF_ERROR(
        AddAttachment(loaded.draft, f.name, f.media_type, std::move(*data), outgoing_.limits()));
  }
  return outgoing_.Submit(std::move(loaded.draft), std::move(loaded.sbd));
}

// A streamed message's arkivmelding.xml, read from the draft as AddAttachment reads a small
// one's (arkivmelding.h): bounded before it is read.
Status Drafts::TakeArkivmelding(OutgoingDraft& draft, const DraftFile& f) {
  if (f.size > kMaxArkivmeldingBytes) {
    return Status(Code::kInvalidArgument, fmt::format("{}: larger than {} bytes", kArkivmeldingFile,
                                                      kMaxArkivmeldingBytes));
  }
  Result<std::string> data = f.data;
  if (!f.file.empty()) data = ReadFile(JoinPath(DraftDir(config_, draft.message_id), f.file));
  if (!data.ok()) return data.status();
  return ip::TakeArkivmelding(draft, *data);
}

Result<json> Drafts::SendStreamed(Loaded loaded) {
  OutgoingDraft& draft = loaded.draft;
  for (const auto& f : loaded.files) {
    BUD_RETURN_IF_ERROR(
        CheckAttachmentLimits(draft, f.name, static_cast<size_t>(f.size), UploadLimits()));
    if (f.name == kArkivmeldingFile) BUD_RETURN_IF_ERROR(TakeArkivmelding(draft, f));
    auto* a = draft.payload.add_attachments();
    a->set_name(f.name);
    a->set_media_type(f.media_type.empty() ? GuessMediaType(f.name) : f.media_type);
    a->set_size(f.size);
  }
  const std::string id = draft.message_id;
  const std::string target = SpoolSource(config_, id);
  Placement placement{[&] { return PlaceInSpool(loaded.files, id); },
                      [&] { (void)RemoveAll(target); }};
  return outgoing_.Submit(std::move(draft), std::move(loaded.sbd), placement);
}

// Right before the commit: spool/src/<id>/ is put together beside the draft (links, or the bytes
// of a file kept in the store before schema v4) and moved into place in one rename.
Status Drafts::PlaceInSpool(const std::vector<DraftFile>& files, const std::string& id) {
  const std::string dir = DraftDir(config_, id);
  const std::string target = SpoolSource(config_, id);
  const std::string stage = JoinPath(dir, ".send");
  BUD_RETURN_IF_ERROR(RemoveAll(stage));
  BUD_RETURN_IF_ERROR(MakeDirs(stage));
  for (const auto& f : files) {
    const std::string to = JoinPath(stage, f.name);
    if (f.file.empty()) {
      BUD_RETURN_IF_ERROR(WriteFileSynced(to, f.data));
    } else if (::link(JoinPath(dir, f.file).c_str(), to.c_str()) != 0) {
      return ErrnoStatus(errno, "linking " + f.name + " into the spool");
    }
  }
  BUD_RETURN_IF_ERROR(FsyncPath(stage));
  BUD_RETURN_IF_ERROR(MakeDirs(ParentDir(target)));
  BUD_RETURN_IF_ERROR(RemoveAll(target));  // a leftover of an earlier attempt
  return RenameDurable(stage, target);
}

Status Drafts::Delete(const std::string& id) {
  BUD_RETURN_IF_ERROR(store_.Run([&](PointStore& s) -> Status {
    Status st = s.outgoing.DeleteDraft(id);
    if (st.code() != Code::kNotFound) return st;
    // Not a draft: as eFormidling, 200 when there is nothing unsent to remove (unknown, or sent
    // already); a message handed to the engine and not yet accepted by the broker stays.
    BUD_ASSIGN_OR_RETURN(auto row, s.outgoing.Get(id));
    if (!row || row->status != "OPPRETTET") return Status::Ok();
    return Status(Code::kConflict, fmt::format("message {} was already sent and cannot be "
                                               "removed; follow it in /api/statuses/{}",
                                               id, id));
  }));
  (void)RemoveAll(DraftDir(config_, id));  // after the commit: a crash leaves it to RecoverSpool
  return Status::Ok();
}

Result<json> Drafts::Get(const std::string& id) {
  return store_.Run([&](PointStore& s) -> Result<json> {
    auto draft = s.outgoing.GetDraft(id);
    if (draft.ok() && *draft) return json::parse(**draft, nullptr, false);
    BUD_ASSIGN_OR_RETURN(auto row, s.outgoing.Get(id));
    if (!row) return Status(Code::kNotFound, fmt::format("no outgoing message {}", id));
    // As eFormidling's list: a message the broker accepted is gone from here.
    if (row->status != "OPPRETTET") {
      return Status(Code::kNotFound, fmt::format("message {} is sent (status {}); follow it in "
                                                 "/api/statuses/{}",
                                                 id, row->status, id));
    }
    return SbdOf(*row, "");
  });
}

}  // namespace bud::ip::api
