// Paced writes for the checkpointing connections, gathered WAL writes for the broker's store.
// See paced_vfs.h.
#include "common/storage/paced_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>

namespace bud::storage {
namespace {

constexpr sqlite3_int64 kPaceBytes = 256 * 1024;

sqlite3_vfs* g_real = nullptr;
std::atomic<long> g_writebacks{0};
std::atomic<long> g_gathered_writes{0};
sqlite3_vfs g_vfs;
sqlite3_vfs g_gather_vfs;
sqlite3_io_methods g_methods;
constexpr size_t kGatherBytes = 1 << 20;
constexpr size_t kWriteBytes = 64 << 10;

// Ours, followed in the same allocation by the default VFS's file (szOsFile covers both).
struct PacedFile {
  sqlite3_file base;
  sqlite3_file* real;
  int fd;                   // SQLite's descriptor of a main database file, else -1
  sqlite3_int64 unwritten;  // bytes written since the last sync_file_range
  std::string* gathered;    // a WAL file's writes not yet passed on (GatheredWritesVfs), else null
  sqlite3_int64 gathered_at;
};

// Passes a WAL file's gathered writes on, in writes of at most kWriteBytes (the unix VFS writes
// at most 128 KiB - 1 in one call and takes a shorter write for a full disk).
int Flush(sqlite3_file* f) {
  auto* p = reinterpret_cast<PacedFile*>(f);
  if (p->gathered == nullptr || p->gathered->empty()) return SQLITE_OK;
  const std::string& g = *p->gathered;
  int rc = SQLITE_OK;
  for (size_t at = 0; at < g.size() && rc == SQLITE_OK; at += kWriteBytes) {
    const size_t n = std::min(kWriteBytes, g.size() - at);
    rc = p->real->pMethods->xWrite(p->real, g.data() + at, static_cast<int>(n),
                                   p->gathered_at + static_cast<sqlite3_int64>(at));
    g_gathered_writes.fetch_add(1, std::memory_order_relaxed);
  }
  p->gathered->clear();
  return rc;
}

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<PacedFile*>(f)->real; }
const sqlite3_io_methods& M(sqlite3_file* f) { return *Real(f)->pMethods; }

int Close(sqlite3_file* f) {
  auto* p = reinterpret_cast<PacedFile*>(f);
  const int flushed = Flush(f);
  delete p->gathered;
  p->gathered = nullptr;
  p->fd = -1;  // SQLite's own, closed (or kept for its locks) by the default VFS
  const int rc = M(f).xClose(p->real);
  return flushed != SQLITE_OK ? flushed : rc;
}

// The descriptor of the default VFS's open file `real` at `name`, or -1. A descriptor of our own
// is not an option: closing it would drop every POSIX lock the process holds on the file, SQLite's
// included. SQLite has no call that gives its descriptor; its unix VFS keeps it after three
// pointers (unixFile: pMethod, pVfs, pInode, h), and it is taken only when it is the descriptor of
// `name`'s file (same device and inode): another layout means no pacing, never a wrong file.
int SqliteDescriptor(sqlite3_file* real, const char* name) {
  if (std::strcmp(g_real->zName, "unix") != 0) return -1;
  int h = -1;
  std::memcpy(&h, reinterpret_cast<const char*>(real) + 3 * sizeof(void*), sizeof h);
  struct stat of_h, of_name;
  if (h < 0 || ::fstat(h, &of_h) != 0 || ::stat(name, &of_name) != 0) return -1;
  return of_h.st_dev == of_name.st_dev && of_h.st_ino == of_name.st_ino ? h : -1;
}

int Write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 offset) {
  auto* p = reinterpret_cast<PacedFile*>(f);
  if (p->gathered != nullptr) {
    if (!p->gathered->empty() &&
        offset != p->gathered_at + static_cast<sqlite3_int64>(p->gathered->size())) {
      if (const int rc = Flush(f); rc != SQLITE_OK) return rc;
    }
    if (p->gathered->empty()) p->gathered_at = offset;
    p->gathered->append(static_cast<const char*>(buf), static_cast<size_t>(n));
    return p->gathered->size() >= kGatherBytes ? Flush(f) : SQLITE_OK;
  }
  const int rc = M(f).xWrite(p->real, buf, n, offset);
  if (rc == SQLITE_OK && p->fd >= 0 && (p->unwritten += n) >= kPaceBytes) {
    p->unwritten = 0;
    g_writebacks.fetch_add(1, std::memory_order_relaxed);
    // A failure costs only the pacing: the checkpoint's fsync still decides.
    (void)::sync_file_range(
        p->fd, 0, 0,
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  }
  return rc;
}

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* p = reinterpret_cast<PacedFile*>(f);
  p->real = reinterpret_cast<sqlite3_file*>(p + 1);
  p->fd = -1;
  p->unwritten = 0;
  p->gathered = nullptr;
  p->gathered_at = 0;
  p->real->pMethods = nullptr;
  const int rc = g_real->xOpen(g_real, name, p->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    // SQLite closes a file whose open failed only when its pMethods is set: ours stays unset.
    if (p->real->pMethods != nullptr) p->real->pMethods->xClose(p->real);
    f->pMethods = nullptr;
    return rc;
  }
  if ((flags & SQLITE_OPEN_MAIN_DB) != 0 && name != nullptr)
    p->fd = SqliteDescriptor(p->real, name);
  f->pMethods = &g_methods;
  return rc;
}

int OpenGathered(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* f, int flags,
                 int* out_flags) {
  const int rc = Open(vfs, name, f, flags, out_flags);
  if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) != 0) {
    reinterpret_cast<PacedFile*>(f)->gathered = new std::string();
  }
  return rc;
}

void Register() {
  g_real = sqlite3_vfs_find(nullptr);
  if (g_real == nullptr) return;
  g_methods = sqlite3_io_methods{
      3,
      &Close,
      [](sqlite3_file* f, void* b, int n, sqlite3_int64 o) {
        const int rc = Flush(f);
        return rc != SQLITE_OK ? rc : M(f).xRead(Real(f), b, n, o);
      },
      &Write,
      [](sqlite3_file* f, sqlite3_int64 size) {
        const int rc = Flush(f);
        return rc != SQLITE_OK ? rc : M(f).xTruncate(Real(f), size);
      },
      [](sqlite3_file* f, int flags) {
        const int rc = Flush(f);
        return rc != SQLITE_OK ? rc : M(f).xSync(Real(f), flags);
      },
      [](sqlite3_file* f, sqlite3_int64* size) {
        const int rc = Flush(f);
        return rc != SQLITE_OK ? rc : M(f).xFileSize(Real(f), size);
      },
      [](sqlite3_file* f, int lock) { return M(f).xLock(Real(f), lock); },
      [](sqlite3_file* f, int lock) { return M(f).xUnlock(Real(f), lock); },
      [](sqlite3_file* f, int* out) { return M(f).xCheckReservedLock(Real(f), out); },
      [](sqlite3_file* f, int op, void* arg) {
        const int rc = Flush(f);
        return rc != SQLITE_OK ? rc : M(f).xFileControl(Real(f), op, arg);
      },
      [](sqlite3_file* f) { return M(f).xSectorSize(Real(f)); },
      [](sqlite3_file* f) { return M(f).xDeviceCharacteristics(Real(f)); },
      // Versions 2 and 3 of the methods: asked for only when the default VFS's file has them.
      [](sqlite3_file* f, int page, int size, int extend, void volatile** out) {
        return M(f).iVersion >= 2 ? M(f).xShmMap(Real(f), page, size, extend, out)
                                  : SQLITE_IOERR_SHMMAP;
      },
      [](sqlite3_file* f, int offset, int n, int flags) {
        return M(f).iVersion >= 2 ? M(f).xShmLock(Real(f), offset, n, flags) : SQLITE_IOERR_SHMLOCK;
      },
      [](sqlite3_file* f) {
        if (M(f).iVersion >= 2) M(f).xShmBarrier(Real(f));
      },
      [](sqlite3_file* f, int del) {
        return M(f).iVersion >= 2 ? M(f).xShmUnmap(Real(f), del) : SQLITE_OK;
      },
      [](sqlite3_file* f, sqlite3_int64 o, int n, void** out) {
        if (M(f).iVersion >= 3) return M(f).xFetch(Real(f), o, n, out);
        *out = nullptr;
        return SQLITE_OK;
      },
      [](sqlite3_file* f, sqlite3_int64 o, void* p) {
        return M(f).iVersion >= 3 ? M(f).xUnfetch(Real(f), o, p) : SQLITE_OK;
      },
  };
  g_vfs = *g_real;
  g_vfs.szOsFile = static_cast<int>(sizeof(PacedFile)) + g_real->szOsFile;
  g_vfs.zName = "bud-paced";
  g_vfs.pNext = nullptr;
  g_vfs.xOpen = &Open;
  // The other VFS methods are the default VFS's, called with it.
  g_vfs.xDelete = [](sqlite3_vfs*, const char* n, int s) { return g_real->xDelete(g_real, n, s); };
  g_vfs.xAccess = [](sqlite3_vfs*, const char* n, int fl, int* out) {
    return g_real->xAccess(g_real, n, fl, out);
  };
  g_vfs.xFullPathname = [](sqlite3_vfs*, const char* n, int size, char* out) {
    return g_real->xFullPathname(g_real, n, size, out);
  };
  g_vfs.xDlOpen = [](sqlite3_vfs*, const char* n) { return g_real->xDlOpen(g_real, n); };
  g_vfs.xDlError = [](sqlite3_vfs*, int n, char* out) { g_real->xDlError(g_real, n, out); };
  g_vfs.xDlSym = [](sqlite3_vfs*, void* h, const char* s) { return g_real->xDlSym(g_real, h, s); };
  g_vfs.xDlClose = [](sqlite3_vfs*, void* h) { g_real->xDlClose(g_real, h); };
  g_vfs.xRandomness = [](sqlite3_vfs*, int n, char* out) {
    return g_real->xRandomness(g_real, n, out);
  };
  g_vfs.xSleep = [](sqlite3_vfs*, int us) { return g_real->xSleep(g_real, us); };
  g_vfs.xCurrentTime = [](sqlite3_vfs*, double* t) { return g_real->xCurrentTime(g_real, t); };
  g_vfs.xGetLastError = [](sqlite3_vfs*, int n, char* out) {
    return g_real->xGetLastError(g_real, n, out);
  };
  g_vfs.xCurrentTimeInt64 = [](sqlite3_vfs*, sqlite3_int64* t) {
    return g_real->xCurrentTimeInt64(g_real, t);
  };
  g_vfs.xSetSystemCall = nullptr;
  g_vfs.xGetSystemCall = nullptr;
  g_vfs.xNextSystemCall = nullptr;
  if (g_vfs.iVersion > 2) g_vfs.iVersion = 2;
  g_gather_vfs = g_vfs;
  g_gather_vfs.zName = "bud-gathered";
  g_gather_vfs.xOpen = &OpenGathered;
  if (sqlite3_vfs_register(&g_vfs, /*makeDflt=*/0) != SQLITE_OK ||
      sqlite3_vfs_register(&g_gather_vfs, /*makeDflt=*/0) != SQLITE_OK) {
    g_real = nullptr;
  }
}

bool Registered() {
  static std::once_flag once;
  std::call_once(once, Register);
  return g_real != nullptr;
}

}  // namespace

const char* PacedWritesVfs() { return Registered() ? g_vfs.zName : nullptr; }

const char* GatheredWritesVfs() { return Registered() ? g_gather_vfs.zName : nullptr; }

long PacedWritebacks() { return g_writebacks.load(std::memory_order_relaxed); }

long GatheredWrites() { return g_gathered_writes.load(std::memory_order_relaxed); }

}  // namespace bud::storage
