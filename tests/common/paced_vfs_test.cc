// The paced-writes VFS (common/storage/paced_vfs.h) on real SQLite files: it reads and writes
// like SQLite's default VFS, beside connections of that VFS, starts the kernel's writeback as a
// checkpoint writes the database file, and reports a file it cannot open.
#include "common/storage/paced_vfs.h"

#include <catch2/catch.hpp>
#include <string>

#include "common/storage/sqlite.h"
#include "tests/support/sqlite_peek.h"
#include "tests/support/temp_dir.h"

namespace bud::test {
namespace {

using storage::Db;

std::unique_ptr<Db> OpenPaced(const std::string& path) {
  Db::Options options;
  options.vfs = storage::PacedWritesVfs();
  REQUIRE(options.vfs != nullptr);
  return OpenOrDie(path, options);
}

}  // namespace

TEST_CASE("a store opened through the paced VFS reads and writes beside default connections",
          "[sqlite][paced]") {
  TempDir dir;
  const std::string path = dir / "store.db";
  auto paced = OpenPaced(path);
  ExecOrDie(*paced, "CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)");
  ExecOrDie(*paced, "INSERT INTO t(x) VALUES('one')");
  auto other = OpenOrDie(path);
  CHECK(QueryInt(*other, "SELECT count(*) FROM t") == 1);
  ExecOrDie(*other, "INSERT INTO t(x) VALUES('two')");  // the WAL index and its locks are shared
  CHECK(QueryInt(*paced, "SELECT count(*) FROM t") == 2);
  // A reader of one VFS keeps its snapshot while a writer of the other commits.
  ExecOrDie(*paced, "BEGIN");
  CHECK(QueryInt(*paced, "SELECT count(*) FROM t") == 2);
  ExecOrDie(*other, "INSERT INTO t(x) VALUES('three')");
  CHECK(QueryInt(*paced, "SELECT count(*) FROM t") == 2);
  ExecOrDie(*paced, "COMMIT");
  CHECK(QueryInt(*paced, "SELECT count(*) FROM t") == 3);
  // Only one connection may write at a time, whichever VFS it came through.
  ExecOrDie(*other, "BEGIN IMMEDIATE");
  Db::Options quick;
  quick.vfs = storage::PacedWritesVfs();
  quick.busy_timeout_ms = 50;
  auto third = Db::Open(path, quick);
  REQUIRE(third.ok());
  CHECK_FALSE((*third)->Exec("INSERT INTO t(x) VALUES('four')").ok());
  ExecOrDie(*other, "COMMIT");
  CHECK((*third)->Exec("INSERT INTO t(x) VALUES('four')").ok());
  CHECK(QueryInt(*other, "SELECT count(*) FROM t") == 4);
}

TEST_CASE("a checkpoint through the paced VFS starts the writeback as it writes, losing nothing",
          "[sqlite][paced]") {
  TempDir dir;
  const std::string path = dir / "store.db";
  auto writer = OpenOrDie(path);
  ExecOrDie(*writer, "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)");
  ExecOrDie(*writer, "PRAGMA wal_autocheckpoint=0");  // only the paced connection checkpoints
  ExecOrDie(*writer, "PRAGMA wal_checkpoint(TRUNCATE)");
  const int64_t before = FileBytes(path);
  for (int i = 0; i < 40; ++i) ExecOrDie(*writer, "INSERT INTO t(x) VALUES(zeroblob(100000))");
  auto paced = OpenPaced(path);
  const long started = storage::PacedWritebacks();
  ExecOrDie(*paced, "PRAGMA wal_checkpoint(PASSIVE)");
  // 4 MB into the database file: a writeback started after each 256 KiB of it.
  CHECK(FileBytes(path) - before >= 4000000);
  CHECK(storage::PacedWritebacks() - started >= 4000000 / (256 * 1024));
  paced.reset();
  writer.reset();
  auto again = OpenOrDie(path);
  CHECK(QueryInt(*again, "SELECT count(*) FROM t") == 40);
  CHECK(QueryInt(*again, "SELECT sum(length(x)) FROM t") == 40 * 100000);
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
