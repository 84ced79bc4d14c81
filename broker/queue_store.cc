// What every broker store shares. See queue_store.h.
#include "broker/queue_store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>

#include "common/fs.h"

namespace bud::broker {

const char* CommitOutcomeName(CommitOutcome outcome) {
  switch (outcome) {
    case CommitOutcome::kDurable: return "durable";
    case CommitOutcome::kFailed: return "failed";
    case CommitOutcome::kUnknown: return "unknown";
  }
  return "?";
}

std::string MailboxKey(const std::string& org, const std::string& channel) {
  return channel.empty() ? org : org + "/" + channel;
}

std::pair<std::string, std::string> SplitMailboxKey(const std::string& key) {
  const size_t slash = key.find('/');
  if (slash == std::string::npos) return {key, std::string()};
  return {key.substr(0, slash), key.substr(slash + 1)};
}

namespace {
Status NoChunks() {
  return Status(Code::kUnsupported, "this store keeps no chunks: they are spool files beside the "
                                    "broker");
}
}  // namespace

Result<std::optional<UploadRow>> QueueStore::FindUpload(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto rows, LoadUploads());
  for (auto& row : rows) {
    if (row.message_id == message_id) return std::optional<UploadRow>(std::move(row));
  }
  return std::optional<UploadRow>();
}

Result<std::vector<std::string>> QueueStore::CommitUploadChunks(
    const std::vector<UploadProgress>&) {
  return NoChunks();
}

Result<std::string> QueueStore::ReadChunk(const std::string&, uint64_t) { return NoChunks(); }

Status QueueStore::DropUploads(const std::vector<std::string>& message_ids) {
  return DeleteUploads(message_ids);  // nothing else to drop when the chunks are spool files
}

Result<int64_t> AutoQuota(const std::string& path, int64_t in_use, int64_t reserve_percent) {
  struct statvfs fs;
  if (::statvfs(path.c_str(), &fs) != 0) return ErrnoStatus(errno, "statvfs " + path);
  const auto unit = static_cast<int64_t>(fs.f_frsize ? fs.f_frsize : fs.f_bsize);
  const int64_t size = static_cast<int64_t>(fs.f_blocks) * unit;
  const int64_t avail = static_cast<int64_t>(fs.f_bavail) * unit;
  return in_use + std::max<int64_t>(avail - size / 100 * reserve_percent, 0);
}

}  // namespace bud::broker
