// See outbox_intake.h.
#include "integration-point/engine/outbox_intake.h"

#include <fmt/format.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/fs.h"
#include "common/log.h"
#include "common/runtime.h"
#include "integration-point/data_dirs.h"
#include "integration-point/receiver.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }
}  // namespace

OutboxIntake::OutboxIntake(const Config& config, Orgnr me, OutgoingStore& store,
                           RefusalStore& refusals, Turn& turn, RegistryLookup& registry,
                           const Clock& clock, std::function<void()> taken)
    : config_(config),
      me_(std::move(me)),
      store_(store),
      refusals_(refusals),
      turn_(turn),
      registry_(registry),
      clock_(clock),
      taken_(std::move(taken)) {}

OutboxIntake::~OutboxIntake() {
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

void OutboxIntake::Watch() {
  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0 || ::inotify_add_watch(inotify_fd_, config_.outbox.c_str(),
                                             IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
    Log()->warn("inotify unavailable ({}); relying on the rescan every {} ms", std::strerror(errno),
                config_.rescan_ms);
  }
}

void OutboxIntake::DrainNotify() {
  char buf[8192];
  while (::read(inotify_fd_, buf, sizeof buf) > 0) {
  }
  dirty_ = true;
}

bool OutboxIntake::Due() const {
  return dirty_ || clock_.MonoMs() - last_scan_mono_ >= config_.rescan_ms;
}

void OutboxIntake::Scan() {
  dirty_ = false;
  last_scan_mono_ = clock_.MonoMs();
  auto names = ListDir(config_.outbox);
  if (!names.ok()) {
    Log()->error("cannot scan outbox: {}", names.status().ToString());
    return;
  }
  // A bounded share per turn: the turn also seals and submits, so with a full outbox messages
  // leave while the rest is taken in (a turn that took in every folder first held the sealing
  // back, and the broker and the receiver waited). More waiting: the next turn goes on at once.
  const size_t handled_before = handled_;
  for (const auto& name : *names) {
    if (handled_ - handled_before >= kTakePerScan) {
      dirty_ = true;
      break;
    }
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

void OutboxIntake::Refuse(const std::string& name, const Status& why, RefusalClass klass) {
  ++handled_;
  const std::string shown = EscapeControl(name);  // a name in a log line stays on its line
  auto moved = MoveToFailed(config_.outbox, name, why.ToString());
  if (moved.ok()) {
    Log()->warn("outbox '{}' refused and moved to {}: {}", shown, EscapeControl(*moved),
                why.ToString());
  } else {
    Log()->error("outbox '{}' refused ({}) but could not be moved aside: {}", shown, why.ToString(),
                 moved.status().ToString());
  }
  // Recorded either way: a folder refused but still in the outbox is refused again at the next
  // scan, and its open refusal says why meanwhile.
  RefusalRow row;
  row.source = "outbox";
  row.name = name;
  row.moved_to = moved.ok() ? *moved : "";
  row.reason = why.ToString();
  row.reason_class = klass;
  row.refused_ms = clock_.NowMs();
  auto id = refusals_.Record(row);
  if (!id.ok()) {
    Log()->error("outbox '{}': refusal not recorded in the store: {}", shown,
                 id.status().ToString());
  }
}

void OutboxIntake::RemoveAfterCommit(const std::string& name, const char* what) {
  turn_.AfterCommit([folder = JoinPath(config_.outbox, name), shown = EscapeControl(name), what] {
    Status rm = RemoveAll(folder);
    if (!rm.ok()) Log()->error("outbox '{}': {}{}", shown, what, rm.ToString());
  });
}

void OutboxIntake::TakeFolder(const std::string& name) {
  const std::string shown = EscapeControl(name);
  auto outbox_fd = OpenDir(config_.outbox);
  if (!outbox_fd.ok()) {
    Log()->error("cannot open outbox: {}", outbox_fd.status().ToString());
    return;
  }
  // The folder and its message.json are opened once here; every later check reads them.
  auto opened = OpenOutboxFolder(outbox_fd->get(), config_.outbox, name);
  if (!opened.ok()) {
    if (opened.status().code() == Code::kInvalidArgument) {
      return Refuse(name, opened.status(), RefusalClass::kFolder);
    }
    if (opened.status().code() != Code::kNotFound) {  // not found: vanished or not ready
      Log()->warn("outbox '{}' not taken in yet: {}", shown, opened.status().ToString());
    }
    return;
  }
  const std::string key = FolderKey(*opened);
  auto imported = store_.FolderImported(key);
  if (!imported.ok()) {
    Log()->error("outbox '{}': store: {}", shown, imported.status().ToString());
    return;
  }
  // Taken in before a crash that came before the folder's removal.
  if (*imported) return RemoveAfterCommit(name, "");
  // A routing choice only: the sizes are from the listing; the files are checked when opened.
  const bool large = opened->listed_bytes > static_cast<uint64_t>(config_.stream_threshold_bytes);
  int attachments = 0;
  std::optional<MessageRow> row = ReadFolder(*opened, name, large, attachments);
  if (!row) return;
  if (large) {
    // The attachments stay files: the checked ones move into the spool before the store
    // commits (a swap since the check refuses the folder).
    Status moved = MoveIntoSpool(*opened, row->message_id);
    if (moved.code() == Code::kInvalidArgument)
      return Refuse(name, moved, RefusalClass::kAttachment);
    if (!moved.ok()) {
      Log()->error("outbox '{}': cannot move it into the spool ({}); it stays in the outbox", shown,
                   moved.ToString());
      return;
    }
  }
  Status st = store_.ImportOutgoing(*row, key);
  if (!st.ok()) {
    Log()->error("outbox '{}': cannot store message {} ({}); it stays in the outbox", shown,
                 row->message_id, st.ToString());
    return;
  }
  Log()->info("message {} to {} taken in from outbox '{}' (OPPRETTET, {} attachment(s))",
              row->message_id, row->receiver, shown, attachments);
  // A folder refused before and now fixed: its refusal leaves the open list.
  auto resolved = refusals_.ResolveOutbox(name, row->message_id, clock_.NowMs());
  if (!resolved.ok()) {
    Log()->error("outbox '{}': store: {}", shown, resolved.status().ToString());
  } else if (*resolved > 0) {
    Log()->info(
        "outbox '{}', refused before, is now taken in as message {}: its refusal is "
        "resolved",
        shown, row->message_id);
  }
  RemoveAfterCommit(name, "taken in but not removed: ");
  ++handled_;
  if (taken_) taken_();
}

std::optional<MessageRow> OutboxIntake::ReadFolder(OutboxFolder& folder, const std::string& name,
                                                   bool large, int& attachments) {
  const std::string shown = EscapeControl(name);
  OutboxLimits limits{static_cast<size_t>(config_.max_attachments),
                      static_cast<size_t>(config_.max_attachment_bytes), config_.default_ttl_ms};
  limits.on_behalf_of = config_.on_behalf_of;
  limits.message_channel = config_.broker.message_channel;
  if (large) {
    limits.max_attachment_bytes = static_cast<size_t>(config_.max_message_bytes);
    limits.read_data = false;
  }
  auto draft = ReadOutboxFolder(folder, me_, limits);
  if (!draft.ok()) {
    if (draft.status().code() == Code::kInvalidArgument)
      Refuse(name, draft.status(), RefusalClass::kMetadata);
    else
      Log()->warn("outbox '{}' not taken in yet: {}", shown, draft.status().ToString());
    return std::nullopt;
  }
  auto receiver = CheckReceiver(registry_, draft->receiver, draft->process, draft->document_type);
  if (!receiver.ok()) {
    if (receiver.status().code() == Code::kUnavailable) {
      Log()->warn("outbox '{}' waits: {}", shown, receiver.status().message());
    } else {
      Refuse(name, receiver.status(), RefusalClass::kReceiver);
    }
    return std::nullopt;
  }
  auto exists = store_.Has(draft->message_id);
  if (exists.ok() && *exists) {
    // Kept, never deleted: it may differ from the copy that was sent.
    Refuse(name,
           Status(Code::kAlreadyExists,
                  fmt::format("message id {} was already taken in and is sent only once; "
                              "give a new messageId to send this folder",
                              draft->message_id)),
           RefusalClass::kDuplicate);
    return std::nullopt;
  }
  MessageRow row;
  row.message_id = draft->message_id;
  row.conversation_id = draft->conversation_id;
  row.sender = me_.wire();
  row.receiver = draft->receiver.wire();
  row.process = draft->process;
  row.document_type = draft->document_type;
  row.title = draft->title;
  row.message_reference = draft->message_reference;
  row.created_ms = draft->created_ms;
  row.expires_ms = draft->expires_ms;
  draft->payload.SerializeToString(&row.payload);
  attachments = draft->payload.attachments_size();
  return row;
}

// The checked files move into spool/src/<id>/, a directory of our own, each verified to be the
// file that was checked (MoveOutboxFiles): the writer of the outbox keeps no handle on what is
// sealed later.
Status OutboxIntake::MoveIntoSpool(OutboxFolder& folder, const std::string& message_id) {
  BUD_RETURN_IF_ERROR(MakeDirs(JoinPath(SpoolDir(config_), "src")));
  const std::string target = SpoolSource(config_, message_id);
  BUD_RETURN_IF_ERROR(RemoveAll(target));  // a leftover of a refused earlier attempt
  return MoveOutboxFiles(folder, target);
}

}  // namespace bud::ip
