// The paced-writes VFS (common/storage/paced_vfs.h) on real SQLite files: it reads and writes
// like SQLite's default VFS, beside connections of that VFS, starts the kernel's writeback as a
// checkpoint writes the database file, and reports a file it cannot open.
#include "common/storage/paced_vfs.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <string>

#include "common/storage/sqlite.h"
#include "tests/support/temp_dir.h"

namespace bud::test {
namespace {

using storage::Db;

std::unique_ptr<Db> OpenPaced(const std::string& path) {
  Db::Options options;
  options.vfs = storage::PacedWritesVfs();
  REQUIRE(options.vfs != nullptr);
  auto db = Db::Open(path, options);
  INFO(db.status().ToString());
  REQUIRE(db.ok());
  return std::move(db).value();
}

std::unique_ptr<Db> OpenDefault(const std::string& path) {
  auto db = Db::Open(path);
  INFO(db.status().ToString());
  REQUIRE(db.ok());
  return std::move(db).value();
}

void Exec(Db& db, std::string_view sql) {
  Status s = db.Exec(sql);
  INFO(s.ToString());
  REQUIRE(s.ok());
}

int64_t Int(Db& db, std::string_view sql) {
  auto st = db.Prepare(sql);
  INFO(st.status().ToString());
  REQUIRE(st.ok());
  auto row = (*st)->Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  const int64_t n = (*st)->Int(0);
  (*st)->Reset();
  return n;
}

int64_t FileBytes(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

}  // namespace

TEST_CASE("a store opened through the paced VFS reads and writes beside default connections",
          "[sqlite][paced]") {
  TempDir dir;
  const std::string path = dir / "store.db";
  auto paced = OpenPaced(path);
  Exec(*paced, "CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)");
  Exec(*paced, "INSERT INTO t(x) VALUES('one')");
  auto other = OpenDefault(path);
  CHECK(Int(*other, "SELECT count(*) FROM t") == 1);
  Exec(*other, "INSERT INTO t(x) VALUES('two')");  // the WAL index and its locks are shared
  CHECK(Int(*paced, "SELECT count(*) FROM t") == 2);
  // A reader of one VFS keeps its snapshot while a writer of the other commits.
  Exec(*paced, "BEGIN");
  CHECK(Int(*paced, "SELECT count(*) FROM t") == 2);
  Exec(*other, "INSERT INTO t(x) VALUES('three')");
  CHECK(Int(*paced, "SELECT count(*) FROM t") == 2);
  Exec(*paced, "COMMIT");
  CHECK(Int(*paced, "SELECT count(*) FROM t") == 3);
  // Only one connection may write at a time, whichever VFS it came through.
  Exec(*other, "BEGIN IMMEDIATE");
  Db::Options quick;
  quick.vfs = storage::PacedWritesVfs();
  quick.busy_timeout_ms = 50;
  auto third = Db::Open(path, quick);
  REQUIRE(third.ok());
  CHECK_FALSE((*third)->Exec("INSERT INTO t(x) VALUES('four')").ok());
  Exec(*other, "COMMIT");
  CHECK((*third)->Exec("INSERT INTO t(x) VALUES('four')").ok());
  CHECK(Int(*other, "SELECT count(*) FROM t") == 4);
}

TEST_CASE("a checkpoint through the paced VFS starts the writeback as it writes, losing nothing",
          "[sqlite][paced]") {
  TempDir dir;
  const std::string path = dir / "store.db";
  auto writer = OpenDefault(path);
  Exec(*writer, "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)");
  Exec(*writer, "PRAGMA wal_autocheckpoint=0");  // only the paced connection checkpoints
  Exec(*writer, "PRAGMA wal_checkpoint(TRUNCATE)");
  const int64_t before = FileBytes(path);
  for (int i = 0; i < 40; ++i) Exec(*writer, "INSERT INTO t(x) VALUES(zeroblob(100000))");
  auto paced = OpenPaced(path);
  const long started = storage::PacedWritebacks();
  Exec(*paced, "PRAGMA wal_checkpoint(PASSIVE)");
  // 4 MB into the database file: a writeback started after each 256 KiB of it.
  CHECK(FileBytes(path) - before >= 4000000);
  CHECK(storage::PacedWritebacks() - started >= 4000000 / (256 * 1024));
  paced.reset();
  writer.reset();
  auto again = OpenDefault(path);
  CHECK(Int(*again, "SELECT count(*) FROM t") == 40);
  CHECK(Int(*again, "SELECT sum(length(x)) FROM t") == 40 * 100000);
}

TEST_CASE("the paced VFS reports a file it cannot open", "[sqlite][paced]") {
  TempDir dir;
  Db::Options options;
  options.vfs = storage::PacedWritesVfs();
  auto db = Db::Open(dir / "no-such-folder/store.db", options);
  REQUIRE_FALSE(db.ok());
  CHECK(db.status().message().find("no-such-folder") != std::string::npos);
}

}  // namespace bud::test
