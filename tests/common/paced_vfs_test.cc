// The paced-writes VFS (common/storage/paced_vfs.h) on real SQLite files: it reads and writes
// like SQLite's default VFS, beside connections of that VFS, starts the kernel's writeback as a
// checkpoint writes the database file, and reports a file it cannot open. The gathering VFS:
// each commit is in the file when it returns (another connection sees it, a killed process loses
// none), its frames go in a few writes, and a write that fails fails the commit.
#include "common/storage/paced_vfs.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

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

std::unique_ptr<Db> OpenGathered(const std::string& path) {
  Db::Options options;
  options.vfs = storage::GatheredWritesVfs();
  REQUIRE(options.vfs != nullptr);
  return OpenOrDie(path, options);
}

// Runs `child` in a forked process; its exit code (-1: killed by a signal).
template <typename F>
int InChild(F child) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ::_exit(child());
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
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

TEST_CASE("the gathering VFS: each commit in the file when it returns, its frames in few writes",
          "[sqlite][gathered]") {
  TempDir dir;
  const std::string path = dir / "store.db";
  auto gathered = OpenGathered(path);
  ExecOrDie(*gathered, "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)");
  auto other = OpenOrDie(path);
  // 40 pages of 4 KiB: 80 writes of frames (header and page) through the default VFS.
  const long before = storage::GatheredWrites();
  ExecOrDie(*gathered, "BEGIN");
  for (int i = 0; i < 40; ++i) ExecOrDie(*gathered, "INSERT INTO t(x) VALUES(zeroblob(4000))");
  ExecOrDie(*gathered, "COMMIT");
  const long writes = storage::GatheredWrites() - before;
  CHECK(writes >= 1);
  CHECK(writes <= 4);  // 40 frames of 4,120 bytes in writes of at most 64 KiB
  CHECK(QueryInt(*other, "SELECT count(*) FROM t") == 40);  // read from the WAL file
  // A transaction larger than one write of the default VFS (it writes at most 128 KiB at once).
  ExecOrDie(*gathered, "INSERT INTO t(x) VALUES(zeroblob(1500000))");
  CHECK(QueryInt(*other, "SELECT sum(length(x)) FROM t") == 40 * 4000 + 1500000);
  // The other connection's commits are read by the gathering one too.
  ExecOrDie(*other, "INSERT INTO t(x) VALUES('from the other')");
  CHECK(QueryInt(*gathered, "SELECT count(*) FROM t") == 42);
}

TEST_CASE("the gathering VFS: a process killed after its commits loses none of them",
          "[sqlite][gathered]") {
  TempDir dir;
  const std::string path = dir / "store.db";
  ExecOrDie(*OpenOrDie(path), "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)");
  const int code = InChild([&] {
    Db::Options options;
    options.vfs = storage::GatheredWritesVfs();
    auto db = Db::Open(path, options);
    if (!db.ok()) return 2;
    for (int i = 0; i < 100; ++i) {
      if (!(*db)->Exec("INSERT INTO t(x) VALUES(zeroblob(3000))").ok()) return 3;
    }
    ::raise(SIGKILL);  // no close, nothing flushed on the way out
    return 4;
  });
  CHECK(code == -1);
  auto again = OpenOrDie(path);
  CHECK(QueryInt(*again, "SELECT count(*) FROM t") == 100);
  CHECK(QueryInt(*again, "SELECT sum(length(x)) FROM t") == 100 * 3000);
}

TEST_CASE("the gathering VFS: a write that fails fails the commit, and the store stays whole",
          "[sqlite][gathered]") {
  TempDir dir;
  const std::string path = dir / "store.db";
  {
    auto db = OpenOrDie(path);
    ExecOrDie(*db, "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)");
    ExecOrDie(*db, "INSERT INTO t(x) VALUES('kept')");
  }
  // The child may write no file beyond 1 MiB (RLIMIT_FSIZE; SIGXFSZ ignored, so the write fails
  // with EFBIG): a commit of 2 MB of frames cannot reach the WAL.
  const int code = InChild([&] {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit {
      1 << 20, 1 << 20
    };
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 2;
    Db::Options options;
    options.vfs = storage::GatheredWritesVfs();
    auto db = Db::Open(path, options);
    if (!db.ok()) return 3;
    const bool committed = (*db)->Exec("INSERT INTO t(x) VALUES(zeroblob(2000000))").ok();
    if (committed) return 4;
    // The connection goes on after the failed commit.
    return (*db)->Exec("INSERT INTO t(x) VALUES('after')").ok() ? 0 : 5;
  });
  CHECK(code == 0);
  auto again = OpenOrDie(path);
  CHECK(QueryInt(*again, "SELECT count(*) FROM t WHERE length(x) > 1000") == 0);
  CHECK(QueryInt(*again, "SELECT count(*) FROM t") == 2);
  CHECK(again->Check().ok());
}

}  // namespace bud::test
