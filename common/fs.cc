// File system helpers. See fs.h.
#include "common/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace bud {

Status ErrnoStatus(int err, std::string_view what) {
  Code code = Code::kIo;
  if (err == ENOSPC || err == EDQUOT) code = Code::kDiskFull;
  if (err == ENOENT) code = Code::kNotFound;
  if (err == EEXIST) code = Code::kAlreadyExists;
  return Status(code, fmt::format("{}: {}", what, std::strerror(err)));
}

Result<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, fmt::format("cannot open '{}'", path));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return ErrnoStatus(e, fmt::format("cannot read '{}'", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

namespace {

Status WriteFileWith(const std::string& path, std::string_view data, int mode, bool sync) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus(errno, fmt::format("cannot create '{}'", path));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return ErrnoStatus(e, fmt::format("cannot write '{}'", path));
    }
    off += static_cast<size_t>(n);
  }
  if (sync && ::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    return ErrnoStatus(e, fmt::format("cannot fsync '{}'", path));
  }
  if (::close(fd) != 0) return ErrnoStatus(errno, fmt::format("cannot close '{}'", path));
  return Status::Ok();
}

}  // namespace

Status WriteFileSynced(const std::string& path, std::string_view data, int mode) {
  return WriteFileWith(path, data, mode, true);
}

Status WriteFileUnsynced(const std::string& path, std::string_view data, int mode) {
  return WriteFileWith(path, data, mode, false);
}

namespace {

// Opens `path` read-only (a file or a directory), runs `sync` (fsync or syncfs) on it, closes it.
Status SyncThrough(const std::string& path, int (*sync)(int), std::string_view what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, fmt::format("cannot open '{}' for {}", path, what));
  int rc = sync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(e, fmt::format("{} of '{}' failed", what, path));
  return Status::Ok();
}

}  // namespace

Status SyncFileSystem(const std::string& path) { return SyncThrough(path, ::syncfs, "syncfs"); }

Status FsyncPath(const std::string& path) { return SyncThrough(path, ::fsync, "fsync"); }

Status MakeDirs(const std::string& path, int mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return ErrnoStatus(ec.value(), fmt::format("cannot create directory '{}'", path));
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
  return Status::Ok();
}

Status RenameDurable(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoStatus(errno, fmt::format("cannot rename '{}' to '{}'", from, to));
  }
  return FsyncPath(ParentDir(to));
}

Status RemoveAll(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return ErrnoStatus(ec.value(), fmt::format("cannot remove '{}'", path));
  return Status::Ok();
}

bool SpreadSubdirectories(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  int flags = 0;
  bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  if (ok && !(flags & FS_TOPDIR_FL)) {
    flags |= FS_TOPDIR_FL;
    ok = ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  }
  ::close(fd);
  return ok;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

Status CheckPrivateFileMode(const std::string& path, std::string_view what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, fmt::format("{} '{}'", what, path));
  if (st.st_mode & 0077) {
    return Status(Code::kBadKey, fmt::format("{} '{}' is readable by group or others (mode {:o}); "
                                             "chmod 600 it",
                                             what, path, st.st_mode & 0777));
  }
  return Status::Ok();
}

Result<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return ErrnoStatus(errno, fmt::format("cannot list '{}'", path));
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string JoinPath(std::string_view a, std::string_view b) {
  if (a.empty()) return std::string(b);
  std::string out(a);
  if (out.back() != '/') out += '/';
  out += b;
  return out;
}

std::string ParentDir(const std::string& path) {
  auto p = std::filesystem::path(path).parent_path();
  return p.empty() ? "." : p.string();
}

std::string AbsolutePath(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

void UniqueFd::Reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<UniqueFd> OpenDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, fmt::format("cannot open directory '{}'", path));
  return UniqueFd(fd);
}

Result<UniqueFd> OpenDirNoFollow(int dir_fd, const std::string& name, std::string_view what) {
  int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) return UniqueFd(fd);
  const int e = errno;
  if (e == ELOOP) {
    return Status(Code::kInvalidArgument,
                  fmt::format("{} is a symbolic link; links are not followed", what));
  }
  if (e == ENOTDIR) {
    // O_DIRECTORY|O_NOFOLLOW on a link to a directory gives ENOTDIR on some kernels.
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
      return Status(Code::kInvalidArgument,
                    fmt::format("{} is a symbolic link; links are not followed", what));
    }
    return Status(Code::kInvalidArgument, fmt::format("{} is not a directory", what));
  }
  return ErrnoStatus(e, fmt::format("cannot open {}", what));
}

Result<OpenedFile> OpenRegularNoFollow(int dir_fd, const std::string& name, std::string_view what) {
  int fd = ::openat(dir_fd, name.c_str(),
                    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ELOOP) {
      return Status(Code::kInvalidArgument,
                    fmt::format("{} is a symbolic link, not a regular file; links are not "
                                "followed",
                                what));
    }
    if (e == ENXIO || e == EISDIR) {  // a socket; a directory (opened for reading it is EISDIR
                                      // only with write access, but be explicit)
      return Status(Code::kInvalidArgument, fmt::format("{} is not a regular file", what));
    }
    return ErrnoStatus(e, fmt::format("cannot open {}", what));
  }
  OpenedFile f{.name = name, .fd = UniqueFd(fd), .st = {}};
  if (::fstat(fd, &f.st) != 0) return ErrnoStatus(errno, fmt::format("cannot stat {}", what));
  if (!S_ISREG(f.st.st_mode)) {
    return Status(Code::kInvalidArgument,
                  fmt::format("{} is not a regular file (folders, links, FIFOs and devices are "
                              "not sent)",
                              what));
  }
  if (f.st.st_nlink == 0) {
    // Renamed over or deleted between the open and now: what was opened is no longer the file.
    return Status(Code::kInvalidArgument,
                  fmt::format("{} was replaced or removed while it was being taken in (write "
                              "files elsewhere and move the finished folder in whole)",
                              what));
  }
  if (f.st.st_nlink != 1) {
    return Status(Code::kInvalidArgument,
                  fmt::format("{} has {} hard links; only a file with one link is taken (copy it "
                              "in instead of linking it)",
                              what, f.st.st_nlink));
  }
  // Regular files never block; clear O_NONBLOCK all the same so reads behave as usual.
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return f;
}

Result<std::string> ReadAllFd(int fd, size_t max_bytes, std::string_view what) {
  std::string out;
  char buf[65536];
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, fmt::format("cannot read {}", what));
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return Status(Code::kInvalidArgument,
                    fmt::format("{} has more than {} bytes", what, max_bytes));
    }
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return out;
}

Status WriteNewFileAt(int dir_fd, const std::string& name, std::string_view data, int mode) {
  int fd = ::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    mode);
  if (fd < 0) return ErrnoStatus(errno, fmt::format("cannot create '{}'", name));
  UniqueFd owner(fd);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, fmt::format("cannot write '{}'", name));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return ErrnoStatus(errno, fmt::format("cannot fsync '{}'", name));
  return Status::Ok();
}

Status WriteNewFile(const std::string& path, std::string_view data, int mode) {
  BUD_ASSIGN_OR_RETURN(UniqueFd dir, OpenDir(ParentDir(path)));
  const std::string name = std::filesystem::path(path).filename().string();
  Status st = WriteNewFileAt(dir.get(), name, data, mode);
  if (!st.ok()) {
    return Status(st.code(), fmt::format("{} (in '{}')", st.message(), ParentDir(path)));
  }
  return Status::Ok();
}

std::string EscapeControl(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\x{:02x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

}  // namespace bud
