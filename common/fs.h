// File system helpers with explicit durability: a hand-over is only acknowledged after the data
// and the directory entry that names it are fsynced.
#pragma once

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
bool Exists(const std::string& path);
// A secret (private key, CURVE key file) must exist and not be readable by group or others:
// kBadKey with the mode and "chmod 600" otherwise. `what` names it ("private key", ...).
Status CheckPrivateFileMode(const std::string& path, std::string_view what);
// Names in a directory (no "." or ".."), sorted.
Result<std::vector<std::string>> ListDir(const std::string& path);
std::string JoinPath(std::string_view a, std::string_view b);
std::string ParentDir(const std::string& path);
std::string AbsolutePath(const std::string& path);

}  // namespace bud
