// Background WAL checkpoints (common/storage/checkpointer.h) on real SQLite files: pages reach the
// database file without the writer checkpointing, the writer takes over when the WAL outgrows the
// hard limit, and nothing committed is lost either way.
#include "common/storage/checkpointer.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "tests/support/temp_dir.h"

namespace bud::test {
namespace {

using storage::Checkpointer;
using storage::Db;

std::unique_ptr<Db> Open(const std::string& path) {
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

int64_t Count(Db& db) {
  auto st = db.Prepare("SELECT count(*) FROM t");
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

// A store with the one table the tests write to.
std::unique_ptr<Db> OpenWithTable(const std::string& path) {
  auto db = Open(path);
  Exec(*db, "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)");
  return db;
}

// One commit per row, each row a few pages' worth, so every commit adds frames to the WAL.
void CommitRows(Db& db, int rows) {
  for (int i = 0; i < rows; ++i) {
    auto st = db.Prepare("INSERT INTO t(x) VALUES(zeroblob(6000))");
    REQUIRE(st.ok());
    Status s = (*st)->Run();
    INFO(s.ToString());
    REQUIRE(s.ok());
  }
}

}  // namespace

TEST_CASE("a background checkpoint copies the WAL into the database file, not the writer",
          "[sqlite][checkpointer]") {
  TempDir dir;
  const std::string path = dir / "store.db";
  auto db = OpenWithTable(path);
  Exec(*db, "PRAGMA wal_checkpoint(TRUNCATE)");
  const int64_t before = FileBytes(path);
  {
    // A hard limit far away: this loop commits faster than any disk checkpoints.
    auto c = Checkpointer::Attach(*db, 16, 100000);
    INFO(c.status().ToString());
    REQUIRE(c.ok());
    CommitRows(*db, 200);
    // The thread runs on its own; give it a bounded while to copy at least half the rows (one
    // early run alone would pass a wait for the first run, not the size check below).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (FileBytes(path) - before < 100 * 6000 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK((*c)->background_runs() > 0);
    CHECK((*c)->writer_runs() == 0);
  }
  // SQLite's own automatic checkpoint is off while attached: only the thread can have grown the
  // database file by the 200 rows' pages.
  CHECK(FileBytes(path) - before >= 100 * 6000);
  CHECK(Count(*db) == 200);
  auto other = Open(path);
  CHECK(Count(*other) == 200);
}

TEST_CASE("the writer checkpoints itself when the WAL outgrows the hard limit",
          "[sqlite][checkpointer]") {
  TempDir dir;
  const std::string path = dir / "store.db";
  auto db = OpenWithTable(path);
  auto c = Checkpointer::Attach(*db, 4, 2);
  REQUIRE(c.ok());
  // A reader holding an old snapshot: no checkpoint can reset the WAL, so it keeps growing.
  auto reader = Open(path);
  Exec(*reader, "BEGIN");
  CHECK(Count(*reader) == 0);
  CommitRows(*db, 50);
  CHECK((*c)->writer_runs() > 0);
  CHECK(Count(*reader) == 0);  // the reader's snapshot is untouched
  Exec(*reader, "COMMIT");
  CHECK(Count(*reader) == 50);
  c->reset();
  CommitRows(*db, 5);  // SQLite's automatic checkpoint is back; the connection still works
  CHECK(Count(*db) == 55);
}

TEST_CASE("a checkpointer refuses nonsense limits", "[sqlite][checkpointer]") {
  TempDir dir;
  auto db = Open(dir / "store.db");
  CHECK(Checkpointer::Attach(*db, 0).status().code() == Code::kInvalidArgument);
  CHECK(Checkpointer::Attach(*db, 10, 1).status().code() == Code::kInvalidArgument);
}

}  // namespace bud::test
