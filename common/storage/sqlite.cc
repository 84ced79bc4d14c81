// SQLite RAII wrappers, statement cache, transactions and migrations. See sqlite.h.
#include "common/storage/sqlite.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/fs.h"

namespace bud::storage {

Code CodeFromSqlite(int rc) {
  switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
      return Code::kOk;
    case SQLITE_FULL:
      return Code::kDiskFull;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Code::kBusy;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Code::kCorrupt;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
      return Code::kIo;
    case SQLITE_CONSTRAINT:
      return Code::kAlreadyExists;
    default:
      return Code::kInternal;
  }
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, std::string_view text) {
  sqlite3_bind_text64(stmt_, i, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  return *this;
}
Stmt& Stmt::BindBlob(int i, std::string_view bytes) {
  sqlite3_bind_blob64(stmt_, i, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::BindView(int i, std::string_view text) {
  sqlite3_bind_text64(stmt_, i, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
  return *this;
}
Stmt& Stmt::BindBlobView(int i, std::string_view bytes) {
  sqlite3_bind_blob64(stmt_, i, bytes.data(), bytes.size(), SQLITE_STATIC);
  return *this;
}
Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(stmt_, i);
  return *this;
}

Result<bool> Stmt::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Status s(CodeFromSqlite(sqlite3_extended_errcode(db_)),
           fmt::format("sqlite: {} (in: {})", sqlite3_errmsg(db_), sqlite3_sql(stmt_)));
  sqlite3_reset(stmt_);
  return s;
}

Status Stmt::Run() {
  for (;;) {
    auto r = Step();
    if (!r.ok()) return r.status();
    if (!*r) return Status::Ok();
  }
}

std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
}

std::string_view Stmt::TextView(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (p == nullptr) return {};
  return {reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, col))};
}

std::string Stmt::Blob(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  if (p == nullptr) return {};
  return std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
}

std::string_view Stmt::BlobView(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  if (p == nullptr) return {};
  return {static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, col))};
}

void Stmt::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Result<std::unique_ptr<Db>> Db::Open(const std::string& path, const Options& options) {
  sqlite3* raw = nullptr;
  int flags = options.read_only ? SQLITE_OPEN_READONLY
                                : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;
  if (!options.read_only && !path.empty() && path != ":memory:" && !path.starts_with("file:")) {
    // Created 0600 by us rather than by SQLite (0644 less the umask): the store holds message
    // metadata, and in API delivery mode decrypted payloads. SQLite gives its -wal and -shm
    // files the main file's mode. An existing file keeps the mode its operator chose.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
      ::close(fd);
    } else if (errno != EEXIST) {
      return ErrnoStatus(errno, fmt::format("cannot create database '{}'", path));
    }
  }
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, options.vfs);
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close(raw);
    return Status(CodeFromSqlite(rc), fmt::format("cannot open database '{}': {}", path, msg));
  }
  sqlite3_extended_result_codes(raw, 1);
  std::unique_ptr<Db> db(new Db(raw, path));
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  if (!options.read_only) {
    if (options.wal) BUD_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL"));
    BUD_RETURN_IF_ERROR(
        db->Exec(options.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  }
  BUD_RETURN_IF_ERROR(db->Exec("PRAGMA foreign_keys=ON"));
  // Deleted rows (envelopes, payloads kept for the API) are overwritten, not left in free pages.
  if (!options.read_only) BUD_RETURN_IF_ERROR(db->Exec("PRAGMA secure_delete=ON"));
  return db;
}

Result<std::unique_ptr<Db>> Db::OpenStore(const std::string& path,
                                          const std::vector<std::string>& migrations) {
  return OpenStore(path, migrations, Options{});
}

Result<std::unique_ptr<Db>> Db::OpenStore(const std::string& path,
                                          const std::vector<std::string>& migrations,
                                          const Options& options) {
  BUD_ASSIGN_OR_RETURN(auto db, Open(path, options));
  BUD_RETURN_IF_ERROR(db->Check());
  BUD_RETURN_IF_ERROR(db->Migrate(migrations));
  return db;
}

Result<std::unique_ptr<Db>> Db::OpenStoreReadOnly(const std::string& path, int version,
                                                  std::string_view program) {
  Options options;
  options.read_only = true;
  BUD_ASSIGN_OR_RETURN(auto db, Open(path, options));
  BUD_ASSIGN_OR_RETURN(int found, db->UserVersion());
  if (found != version) {
    return Status(Code::kUnsupported,
                  fmt::format("store '{}' has schema version {}; this {} reads version {} (start "
                              "`{} run` of this release once to migrate an older store)",
                              path, found, program, version, program));
  }
  return db;
}

Db::~Db() {
  cache_.clear();  // finalize statements before closing
  sqlite3_close(db_);
}

Status Db::Error(int rc, std::string_view what) const {
  return Status(CodeFromSqlite(rc), fmt::format("sqlite '{}': {}: {}", path_, what,
                                                sqlite3_errmsg(db_)));
}

Status Db::Exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    Status st(CodeFromSqlite(sqlite3_extended_errcode(db_)),
              fmt::format("sqlite '{}': {} (in: {})", path_, err ? err : sqlite3_errstr(rc),
                          s.substr(0, 120)));
    sqlite3_free(err);
    return st;
  }
  return Status::Ok();
}

Result<Stmt*> Db::Prepare(std::string_view sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) {
    it->second->Reset();
    return it->second.get();
  }
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  if (rc != SQLITE_OK) return Error(rc, fmt::format("prepare '{}'", sql));
  auto stmt = std::make_unique<Stmt>(raw, db_);
  Stmt* p = stmt.get();
  cache_.emplace(std::string(sql), std::move(stmt));
  return p;
}

Result<int> Db::UserVersion() {
  BUD_ASSIGN_OR_RETURN(Stmt * st, Prepare("PRAGMA user_version"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  int v = row ? static_cast<int>(st->Int(0)) : 0;
  st->Reset();
  return v;
}

Status Db::Migrate(const std::vector<std::string>& migrations) {
  BUD_ASSIGN_OR_RETURN(int version, UserVersion());
  if (version > static_cast<int>(migrations.size())) {
    return Status(Code::kUnsupported,
                  fmt::format("database '{}' has schema version {}, newer than this program "
                              "knows ({}); use a newer release",
                              path_, version, migrations.size()));
  }
  for (size_t i = static_cast<size_t>(version); i < migrations.size(); ++i) {
    Transaction tx(*this);
    BUD_RETURN_IF_ERROR(tx.began());
    // Another process may have migrated while we waited for the write lock: read it again.
    BUD_ASSIGN_OR_RETURN(int now, UserVersion());
    if (static_cast<size_t>(now) > i) continue;
    BUD_RETURN_IF_ERROR(Exec(migrations[i]).Context(fmt::format("migration {}", i + 1)));
    BUD_RETURN_IF_ERROR(Exec(fmt::format("PRAGMA user_version={}", i + 1)));
    BUD_RETURN_IF_ERROR(tx.Commit());
  }
  return Status::Ok();
}

Status Db::Check(bool full) {
  BUD_ASSIGN_OR_RETURN(Stmt * st, Prepare(full ? "PRAGMA integrity_check" : "PRAGMA quick_check"));
  std::string findings;
  for (;;) {
    auto row = st->Step();
    if (!row.ok()) {
      return Status(Code::kCorrupt, fmt::format("database '{}' failed its check: {}", path_,
                                                row.status().message()));
    }
    if (!*row) break;
    std::string line = st->Text(0);
    if (line != "ok") findings += (findings.empty() ? "" : "; ") + line;
  }
  st->Reset();
  if (!findings.empty()) {
    return Status(Code::kCorrupt,
                  fmt::format("database '{}' is damaged: {}; restore it from a backup", path_,
                              findings.substr(0, 500)));
  }
  return Status::Ok();
}

Status Db::Checkpoint() {
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) return Error(rc, "wal checkpoint");
  return Status::Ok();
}

Transaction::Transaction(Db& db) : db_(db) {
  // Inside an open transaction (a batch, see Store::BeginTurn in the IP) this is a savepoint:
  // its Commit releases into the outer transaction, its rollback undoes only its own changes.
  nested_ = sqlite3_get_autocommit(db_.raw()) == 0;
  begin_status_ = db_.Exec(nested_ ? "SAVEPOINT bud_nested" : "BEGIN IMMEDIATE");
  open_ = begin_status_.ok();
}

Transaction::~Transaction() {
  if (!open_) return;
  if (nested_) {
    (void)db_.Exec("ROLLBACK TO bud_nested");
    (void)db_.Exec("RELEASE bud_nested");
  } else {
    (void)db_.Exec("ROLLBACK");
  }
}

Status Transaction::Commit() {
  if (!open_) return Status(Code::kInternal, "commit without an open transaction");
  Status s = db_.Exec(nested_ ? "RELEASE bud_nested" : "COMMIT");
  if (s.ok()) open_ = false;
  return s;
}

namespace {

// Copies `src` into `dest` in one backup step (one read snapshot of `src`). A step can find the
// source briefly locked (a checkpoint, recovery): bounded retries.
Status CopyAll(Db& src, Db& dest) {
  sqlite3_backup* b = sqlite3_backup_init(dest.raw(), "main", src.raw(), "main");
  if (b == nullptr) return dest.Error(sqlite3_errcode(dest.raw()), "backup init");
  int rc = SQLITE_OK;
  for (int attempt = 0; attempt < 100; ++attempt) {
    rc = sqlite3_backup_step(b, -1);
    if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
    sqlite3_sleep(100);
  }
  int finish = sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) {
    return Status(CodeFromSqlite(rc),
                  fmt::format("backup of '{}': {}", src.path(), sqlite3_errstr(rc)));
  }
  if (finish != SQLITE_OK) return dest.Error(finish, "backup finish");
  return Status::Ok();
}

Result<BackupInfo> BackupInto(const std::string& path, const std::string& tmp) {
  Db::Options read_only;
  read_only.read_only = true;
  BUD_ASSIGN_OR_RETURN(auto src, Db::Open(path, read_only));
  Db::Options plain;
  plain.wal = false;
  BUD_ASSIGN_OR_RETURN(auto dest, Db::Open(tmp, plain));
  BUD_RETURN_IF_ERROR(CopyAll(*src, *dest));
  src.reset();
  // The copy carries the source's WAL flag; a backup is one file, readable where it lands.
  BUD_RETURN_IF_ERROR(dest->Exec("PRAGMA journal_mode=DELETE"));
  BUD_RETURN_IF_ERROR(dest->Check(/*full=*/true));
  BackupInfo info;
  BUD_ASSIGN_OR_RETURN(info.schema_version, dest->UserVersion());
  dest.reset();
  BUD_RETURN_IF_ERROR(FsyncPath(tmp));
  struct stat st;
  if (::stat(tmp.c_str(), &st) == 0) info.bytes = st.st_size;
  return info;
}

}  // namespace

Result<BackupInfo> BackupDatabase(const std::string& path, const std::string& out) {
  if (!Exists(path)) {
    return Status(Code::kNotFound, fmt::format("there is no database at '{}' to back up", path));
  }
  if (Exists(out)) {
    return Status(Code::kAlreadyExists,
                  fmt::format("'{}' exists; a backup never overwrites a file", out));
  }
  const std::string tmp = fmt::format("{}.tmp-{}", out, ::getpid());
  auto remove_tmp = [&] {
    for (const char* suffix : {"", "-journal", "-wal", "-shm"}) ::unlink((tmp + suffix).c_str());
  };
  remove_tmp();
  auto info = BackupInto(path, tmp);
  if (!info.ok()) {
    remove_tmp();
    return info.status().Context(fmt::format("backup of '{}' to '{}'", path, out));
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_NOREPLACE) != 0) {
    Status s = ErrnoStatus(errno, fmt::format("cannot rename '{}' to '{}'", tmp, out));
    remove_tmp();
    return s;
  }
  BUD_RETURN_IF_ERROR(FsyncPath(ParentDir(out)));
  return info;
}

}  // namespace bud::storage
