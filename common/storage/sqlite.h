// SQLite, the way every Budstikke store uses it.
//
// Operation: one Db per owning thread (never shared across threads). Opened in WAL mode with
// synchronous=FULL (a commit is on disk when Commit() returns) and a busy timeout. Statements are
// prepared once and cached by their SQL text. A Transaction rolls back unless Commit() succeeded.
// Schema versions live in PRAGMA user_version; Migrate() runs each missing step once, each in its
// own transaction. A database file that does not exist yet is created mode 0600 (its -wal and
// -shm follow), and every writing connection runs with PRAGMA secure_delete=ON.
//
// Errors map to Status codes: SQLITE_FULL -> kDiskFull, BUSY/LOCKED -> kBusy, CORRUPT/NOTADB ->
// kCorrupt, IOERR -> kIo; everything else kInternal.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bud::storage {

// A prepared statement owned by its Db's cache. Borrowed by callers for one use at a time:
// Db::Prepare resets it and clears its bindings before handing it out.
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* stmt, sqlite3* db) : stmt_(stmt), db_(db) {}
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Parameters are 1-based, as in SQLite.
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, int v) { return Bind(i, static_cast<int64_t>(v)); }
  Stmt& Bind(int i, uint64_t v) { return Bind(i, static_cast<int64_t>(v)); }
  Stmt& Bind(int i, std::string_view text);
  Stmt& Bind(int i, const char* text) { return Bind(i, std::string_view(text)); }
  Stmt& Bind(int i, const std::string& text) { return Bind(i, std::string_view(text)); }
  Stmt& BindBlob(int i, std::string_view bytes);
  // As Bind / BindBlob, without SQLite's copy of the bytes: it reads the caller's when the
  // statement runs. Only for a statement run right away, while the bytes live (a hot insert);
  // Db::Prepare clears the bindings before it hands the statement out again, so a pointer left
  // behind is never read.
  Stmt& BindView(int i, std::string_view text);
  Stmt& BindBlobView(int i, std::string_view bytes);
  Stmt& BindNull(int i);
  template <typename... Args>
  Stmt& BindAll(const Args&... args) {
    int i = 0;
    (Bind(++i, args), ...);
    return *this;
  }

  // One step: true when a row is ready, false when done.
  Result<bool> Step();
  // Step to completion (for INSERT/UPDATE/DELETE).
  Status Run();
  int Changes() const { return sqlite3_changes(db_); }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const;
  // The column's text without a copy: valid until the next Step, Reset or read of the column.
  std::string_view TextView(int col) const;
  std::string Blob(int col) const;
  // The column's bytes without a copy, as TextView.
  std::string_view BlobView(int col) const;
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

  void Reset();

 private:
  sqlite3_stmt* stmt_;
  sqlite3* db_;
};

class Db {
 public:
  struct Options {
    bool wal = true;
    bool synchronous_full = true;
    int busy_timeout_ms = 5000;
    bool read_only = false;
    const char* vfs = nullptr;  // SQLite's default VFS unless named (e.g. PacedWritesVfs())
  };

  static Result<std::unique_ptr<Db>> Open(const std::string& path, const Options& options);
  static Result<std::unique_ptr<Db>> Open(const std::string& path) { return Open(path, Options{}); }
  // How every process opens its store: Open, quick_check (refuses a damaged file), Migrate.
  static Result<std::unique_ptr<Db>> OpenStore(const std::string& path,
                                               const std::vector<std::string>& migrations);
  static Result<std::unique_ptr<Db>> OpenStore(const std::string& path,
                                               const std::vector<std::string>& migrations,
                                               const Options& options);
  // How admin commands open a store beside its running process: read-only, never creating or
  // migrating it; kUnsupported unless its schema is `version` (`program` names the binary whose
  // `run` migrates it, for the message).
  static Result<std::unique_ptr<Db>> OpenStoreReadOnly(const std::string& path, int version,
                                                       std::string_view program);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Status Exec(std::string_view sql);
  // A cached, reset statement. The pointer stays valid as long as this Db.
  Result<Stmt*> Prepare(std::string_view sql);

  // migrations[i] brings the schema from version i to i+1. Runs the missing ones, each in a
  // transaction together with its user_version bump.
  Status Migrate(const std::vector<std::string>& migrations);
  Result<int> UserVersion();
  // PRAGMA quick_check (or integrity_check): kCorrupt with SQLite's findings unless "ok".
  Status Check(bool full = false);
  // Checkpoint the WAL, truncating it.
  Status Checkpoint();

  int64_t LastInsertId() const { return sqlite3_last_insert_rowid(db_); }
  sqlite3* raw() { return db_; }
  const std::string& path() const { return path_; }

  // A Status for the last error on this connection, with context.
  Status Error(int rc, std::string_view what) const;

 private:
  Db(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
  std::map<std::string, std::unique_ptr<Stmt>, std::less<>> cache_;
};

// BEGIN IMMEDIATE on construction (check began()); ROLLBACK on destruction unless committed.
// Constructed while a transaction is already open on `db`, it is a savepoint inside it: Commit
// releases it (durable only when the outer transaction commits), destruction rolls back to it.
class Transaction {
 public:
  explicit Transaction(Db& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  const Status& began() const { return begin_status_; }
  Status Commit();

 private:
  Db& db_;
  Status begin_status_;
  bool open_ = false;
  bool nested_ = false;
};

// What BackupDatabase made.
struct BackupInfo {
  int64_t bytes = 0;       // size of the copy
  int schema_version = 0;  // PRAGMA user_version of the copy
};

// A consistent online copy of the database at `path` while other connections (a running
// process) keep writing: `path` is opened read-only and copied in one step of SQLite's online
// backup API (one read snapshot) into a temporary file beside `out`, which is switched to a
// rollback journal (a single self-contained file), checked with PRAGMA integrity_check, fsynced
// and renamed to `out` without replacing anything (renameat2 RENAME_NOREPLACE), then the folder
// is fsynced. Refuses an existing `out` (kAlreadyExists) and a missing `path` (kNotFound). On
// failure the temporary file is removed and `out` does not exist.
Result<BackupInfo> BackupDatabase(const std::string& path, const std::string& out);

// Maps a SQLite result code to a Status code.
Code CodeFromSqlite(int rc);

}  // namespace bud::storage
