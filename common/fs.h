// File system helpers with explicit durability: a hand-over is only acknowledged after the data
// and the directory entry that names it are fsynced.
#pragma once

#include <sys/stat.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bud {

// Maps an errno to a Status code (ENOSPC/EDQUOT -> kDiskFull, ENOENT -> kNotFound, else kIo).
Status ErrnoStatus(int err, std::string_view what);

Result<std::string> ReadFile(const std::string& path);
// Writes (creating or truncating) with the given mode, then fsyncs the file. Not the directory.
Status WriteFileSynced(const std::string& path, std::string_view data, int mode = 0640);
// The same without the fsync: durable only after a later SyncFileSystem (or fsync).
Status WriteFileUnsynced(const std::string& path, std::string_view data, int mode = 0640);
// syncfs(2) of the file system holding `path`: every file and directory written there so far
// is durable when it returns Ok (one journal commit for many files; reports write-back errors).
Status SyncFileSystem(const std::string& path);
Status FsyncPath(const std::string& path);  // a file or a directory
Status MakeDirs(const std::string& path, int mode = 0750);
// rename(2) then fsync of the target's parent directory.
Status RenameDurable(const std::string& from, const std::string& to);
Status RemoveAll(const std::string& path);
// Asks the file system to spread the subdirectories of the directory `dir` over its allocation
// groups, each with its files (ext4's "top of a directory hierarchy" flag, chattr +T, which its
// Orlov allocator honours). Without it ext4 puts a new folder in its parent's group, where a
// folder of the same kind was just removed; an ext4 without a journal then skips the freed
// inodes one by one, so that creating a file costs more the more files were removed in the
// last seconds. Best effort: false where the file system has no such flag (nothing changes).
bool SpreadSubdirectories(const std::string& dir);
bool Exists(const std::string& path);
// A secret (private key, CURVE key file) must exist and not be readable by group or others:
// kBadKey with the mode and "chmod 600" otherwise. `what` names it ("private key", ...).
Status CheckPrivateFileMode(const std::string& path, std::string_view what);
// Names in a directory (no "." or ".."), sorted.
Result<std::vector<std::string>> ListDir(const std::string& path);
std::string JoinPath(std::string_view a, std::string_view b);

// --- Files from outside (an outbox a local user can write) ------------------------------------
// Each such file is opened once, without following a link, checked on the open descriptor and
// read from that descriptor: a name checked with lstat and opened later can meanwhile be swapped
// for a link to a secret.

// Owns one file descriptor (closed when it goes). -1 = none.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset();

 private:
  int fd_ = -1;
};

// Opens a directory by absolute or relative path (links followed: for paths the operator
// configured).
Result<UniqueFd> OpenDir(const std::string& path);
// Opens the directory `name` in `dir_fd` without following a link: a symbolic link is
// kInvalidArgument ("is a symbolic link"), anything else that is not a directory too.
Result<UniqueFd> OpenDirNoFollow(int dir_fd, const std::string& name, std::string_view what);

// A regular file opened from outside: its descriptor and what fstat said of it.
struct OpenedFile {
  std::string name;
  UniqueFd fd;
  struct stat st {};
};

// Opens `name` in `dir_fd` for reading with O_NOFOLLOW (and O_NONBLOCK, so a FIFO cannot block
// the caller) and checks the descriptor: a regular file with exactly one link (a hard link can
// name a file the caller may read but the writer of the folder may not). Refusals are
// kInvalidArgument naming `what` (symbolic link, not a regular file, more than one link);
// ENOENT is kNotFound, other errors kIo.
Result<OpenedFile> OpenRegularNoFollow(int dir_fd, const std::string& name, std::string_view what);

// Reads `fd` from offset 0 to its end with pread (the descriptor's offset is left alone). More
// than `max_bytes` is kInvalidArgument naming `what`.
Result<std::string> ReadAllFd(int fd, size_t max_bytes, std::string_view what);

// Creates `name` in `dir_fd` with O_CREAT|O_EXCL|O_NOFOLLOW and `mode`, writes `data` and
// fsyncs it. An existing entry (file or link) is kAlreadyExists: nothing is written through it.
Status WriteNewFileAt(int dir_fd, const std::string& name, std::string_view data, int mode);
// The same by path: for private keys and other files that must never overwrite or follow
// anything already there.
Status WriteNewFile(const std::string& path, std::string_view data, int mode);

// `text` with control characters (newline, tab, ESC, DEL, ...) and backslashes escaped as \n,
// \t, \xHH: a file name or reason put into a text file or a log line stays on its one line.
std::string EscapeControl(std::string_view text);
std::string ParentDir(const std::string& path);
std::string AbsolutePath(const std::string& path);

}  // namespace bud
