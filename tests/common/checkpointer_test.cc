// Background WAL checkpoints (common/storage/checkpointer.h) on real SQLite files: pages reach the
// database file without the writer checkpointing, the writer takes over when the WAL outgrows the
// hard limit, and nothing committed is lost either way.
#include "common/storage/checkpointer.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "common/storage/paced_vfs.h"
#include "tests/support/sqlite_peek.h"
#include "tests/support/temp_dir.h"

namespace bud::test {
namespace {

using storage::Checkpointer;
using storage::Db;

// The rows of the one table the tests write to.
int64_t Count(Db& db) { return QueryInt(db, "SELECT count(*) FROM t"); }

// A store with the one table the tests write to.
std::unique_ptr<Db> OpenWithTable(const std::string& path) {
  auto db = OpenOrDie(path);
  ExecOrDie(*db, "CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)");
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
  ExecOrDie(*db, "PRAGMA wal_checkpoint(TRUNCATE)");
  const int64_t before = FileBytes(path);
  const long paced_before = storage::PacedWritebacks();
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
  // The thread's writes to the database file were paced (storage/paced_vfs.h): 600 KB and more.
  CHECK(storage::PacedWritebacks() - paced_before >= 2);
  // SQLite's own automatic checkpoint is off while attached: only the thread can have grown the
  // database file by the 200 rows' pages.
  CHECK(FileBytes(path) - before >= 100 * 6000);
  CHECK(Count(*db) == 200);
  auto other = OpenOrDie(path);
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
  auto reader = OpenOrDie(path);
  ExecOrDie(*reader, "BEGIN");
  CHECK(Count(*reader) == 0);
  CommitRows(*db, 50);
  CHECK((*c)->writer_runs() > 0);
  CHECK(Count(*reader) == 0);  // the reader's snapshot is untouched
  ExecOrDie(*reader, "COMMIT");
  CHECK(Count(*reader) == 50);
  c->reset();
  CommitRows(*db, 5);  // SQLite's automatic checkpoint is back; the connection still works
  CHECK(Count(*db) == 55);
}

TEST_CASE(
    "under a writer that commits without pause, the WAL still starts again from its beginning",
    "[sqlite][checkpointer]") {
  // SQLite starts the WAL again only after a checkpoint that reached its end with no commit in
  // between. A thread chasing a writer that never pauses rarely gets there (the WAL grew without
  // bound, short of the hard limit); the writer copying the last few frames itself does.
  TempDir dir;
  const std::string path = dir / "store.db";
  auto db = OpenWithTable(path);
  ExecOrDie(*db, "PRAGMA wal_checkpoint(TRUNCATE)");
  constexpr int64_t kPages = 256;
  auto c = Checkpointer::Attach(*db, kPages, 100000, /*finish_pages=*/64);
  INFO(c.status().ToString());
  REQUIRE(c.ok());
  int64_t largest_wal = 0;
  for (int i = 0; i < 40; ++i) {
    CommitRows(*db, 50);  // 2,000 commits of a few frames each: ~6,000 frames in all
    largest_wal = std::max(largest_wal, FileBytes(path + "-wal"));
  }
  INFO("largest WAL " << largest_wal << " bytes; background checkpoints " << (*c)->background_runs()
                      << ", the writer's " << (*c)->writer_finishes());
  CHECK((*c)->writer_finishes() > 0);
  CHECK((*c)->writer_runs() == 0);  // never near the hard limit
  // A cycle is kPages frames, what came during the thread's checkpoint, and the few the writer
  // copies; 4 * kPages frames (of 4 KiB and a header) leaves room for a slow checkpoint.
  CHECK(largest_wal < 4 * kPages * (4096 + 24));
  c->reset();
  CHECK(Count(*db) == 2000);
  auto other = OpenOrDie(path);
  CHECK(Count(*other) == 2000);
}

TEST_CASE("a checkpointer refuses nonsense limits", "[sqlite][checkpointer]") {
  TempDir dir;
  auto db = OpenOrDie(dir / "store.db");
  CHECK(Checkpointer::Attach(*db, 0).status().code() == Code::kInvalidArgument);
  CHECK(Checkpointer::Attach(*db, 10, 1).status().code() == Code::kInvalidArgument);
  CHECK(Checkpointer::Attach(*db, 10, 8, 10).status().code() == Code::kInvalidArgument);
}

}  // namespace bud::test
