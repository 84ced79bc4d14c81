// Pre-flight checks of the files a config names. See config_check.h.
#include "common/config_check.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/fs.h"

namespace bud {

namespace {

// Whether `path` is a folder this process can create entries in.
bool WritableDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
         ::access(path.c_str(), W_OK | X_OK) == 0;
}

}  // namespace

Status ConfigCheck::Fail(std::string_view key, std::string_view problem) const {
  return Status(Code::kConfig,
                fmt::format("config '{}': key '{}': {}", config_path_, key, problem));
}

Status ConfigCheck::Fail(std::string_view key, const Status& status) const {
  if (status.ok()) return status;
  return Fail(key, status.message());
}

Status ConfigCheck::ReadableFile(std::string_view key, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Fail(key, fmt::format("'{}': {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) return Fail(key, fmt::format("'{}' is not a regular file", path));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(key, fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
  ::close(fd);
  return Status::Ok();
}

Result<crypto::TrustStore> ConfigCheck::TrustAnchor(std::string_view key, const std::string& path) {
  BUD_RETURN_IF_ERROR(ReadableFile(key, path));
  auto certs = crypto::LoadCertBundle(path);
  if (!certs.ok()) return Fail(key, certs.status());
  for (const auto& c : *certs) {
    if (crypto::DaysToExpiry(c.get()) < 0) {
      return Fail(key, fmt::format("trust anchor certificate '{}' in '{}' has expired",
                                   crypto::SubjectOf(c.get()), path));
    }
  }
  auto trust = crypto::TrustStore::Load(path);
  if (!trust.ok()) return Fail(key, trust.status());
  X509* first = certs->front().get();
  Note(key, fmt::format("{} ({} certificate(s); {} valid {} more day(s))", path, certs->size(),
                        crypto::SubjectOf(first), crypto::DaysToExpiry(first)));
  return trust;
}

Result<wire::CurveKeyPair> ConfigCheck::CurveKey(std::string_view key, const std::string& path) {
  BUD_RETURN_IF_ERROR(ReadableFile(key, path));
  auto kp = wire::LoadCurveKeyFile(path);
  if (!kp.ok()) return Fail(key, kp.status());
  Note(key, fmt::format("{} (public key {})", path, kp->public_key));
  return kp;
}

Status ConfigCheck::Store(std::string_view key, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) return Fail(key, fmt::format("'{}' is not a regular file", path));
    if (::access(path.c_str(), R_OK | W_OK) != 0) {
      return Fail(key, fmt::format("store '{}' is not readable and writable by this user: {}", path,
                                   std::strerror(errno)));
    }
    if (!WritableDir(ParentDir(path))) {
      return Fail(key, fmt::format("the folder of store '{}' is not writable by this user (SQLite "
                                   "keeps its -wal and -shm files beside the store)",
                                   path));
    }
    Note(key, fmt::format("{} (exists, {} bytes)", path, st.st_size));
    return Status::Ok();
  }
  if (errno != ENOENT) return Fail(key, fmt::format("'{}': {}", path, std::strerror(errno)));
  if (!WritableDir(ParentDir(path))) {
    return Fail(key, fmt::format("store '{}' does not exist and its folder '{}' is not a writable "
                                 "folder to create it in",
                                 path, ParentDir(path)));
  }
  Note(key, fmt::format("{} (will be created at start)", path));
  return Status::Ok();
}

Status ConfigCheck::WritableFile(std::string_view key, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) return Fail(key, fmt::format("'{}' is not a regular file", path));
    if (::access(path.c_str(), W_OK) != 0) {
      return Fail(key, fmt::format("'{}' is not writable by this user", path));
    }
  } else if (!WritableDir(ParentDir(path))) {
    return Fail(key, fmt::format("cannot create '{}': '{}' is not a writable folder", path,
                                 ParentDir(path)));
  }
  Note(key, path);
  return Status::Ok();
}

Status ConfigCheck::LogFile(std::string_view key, const std::string& path) {
  if (!path.empty()) return WritableFile(key, path);
  Note(key, "standard error");
  return Status::Ok();
}

Status ConfigCheck::Folder(std::string_view key, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Fail(key, fmt::format("'{}' is not a folder", path));
    if (!WritableDir(path)) return Fail(key, fmt::format("folder '{}' is not writable", path));
    Note(key, path);
    return Status::Ok();
  }
  std::string ancestor = ParentDir(path);
  for (int i = 0; i < 64 && !Exists(ancestor); ++i) ancestor = ParentDir(ancestor);
  if (!WritableDir(ancestor)) {
    return Fail(key, fmt::format("folder '{}' does not exist and cannot be created ('{}' is not a "
                                 "writable folder)",
                                 path, ancestor));
  }
  Note(key, fmt::format("{} (will be created at start)", path));
  return Status::Ok();
}

void ConfigCheck::Note(std::string_view label, std::string value) {
  notes_.emplace_back(std::string(label), std::move(value));
}

std::string ConfigCheck::Report() const {
  size_t width = 0;
  for (const auto& [label, value] : notes_) width = std::max(width, label.size());
  std::string out = fmt::format("config OK: {}\n", config_path_);
  for (const auto& [label, value] : notes_) {
    out += fmt::format("  {:<{}}  {}\n", label, width, value);
  }
  return out;
}

}  // namespace bud
