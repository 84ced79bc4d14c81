// SQLite as every Budstikke store uses it (common/storage/sqlite.h), on real files in temporary
// directories: durability settings, transactions that roll back unless committed, migrations
// that run once, and the failure paths (newer schema, corruption, busy, full, read-only).
#include "common/storage/sqlite.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/fs.h"
#include "tests/support/sqlite_peek.h"
#include "tests/support/temp_dir.h"

namespace bud::test {
namespace {

using storage::Db;
using storage::Transaction;

std::string QueryText(Db& db, std::string_view sql) {
  auto st = db.Prepare(sql);
  REQUIRE(st.ok());
  auto row = (*st)->Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  std::string v = (*st)->Text(0);
  (*st)->Reset();
  return v;
}

TEST_CASE("Databases open in WAL mode with synchronous=FULL and a busy timeout", "[sqlite]") {
  TempDir dir;
  auto db = OpenOrDie(dir / "store.db");
  CHECK(QueryText(*db, "PRAGMA journal_mode") == "wal");
  CHECK(QueryInt(*db, "PRAGMA synchronous") == 2);  // 2 = FULL
  CHECK(QueryInt(*db, "PRAGMA busy_timeout") == 5000);
  CHECK(QueryInt(*db, "PRAGMA foreign_keys") == 1);
  ExecOrDie(*db, "CREATE TABLE t(x)");
  CHECK(Exists(dir / "store.db-wal"));

  // The options are honoured, not hard-wired.
  Db::Options relaxed;
  relaxed.synchronous_full = false;
  relaxed.busy_timeout_ms = 1234;
  auto other = OpenOrDie(dir / "other.db", relaxed);
  CHECK(QueryInt(*other, "PRAGMA synchronous") == 1);  // NORMAL
  CHECK(QueryInt(*other, "PRAGMA busy_timeout") == 1234);
}

TEST_CASE("A transaction that is not committed leaves nothing behind", "[sqlite]") {
  TempDir dir;
  const std::string path = dir / "tx.db";
  {
    auto db = OpenOrDie(path);
    ExecOrDie(*db, "CREATE TABLE t(x INTEGER)");
    {
      Transaction tx(*db);
      REQUIRE(tx.began().ok());
      ExecOrDie(*db, "INSERT INTO t VALUES (1), (2), (3)");
      CHECK(QueryInt(*db, "SELECT count(*) FROM t") == 3);  // visible inside
    }                                                       // no Commit(): rolled back here
    CHECK(QueryInt(*db, "SELECT count(*) FROM t") == 0);
    {
      Transaction tx(*db);
      REQUIRE(tx.began().ok());
      ExecOrDie(*db, "INSERT INTO t VALUES (4)");
      // A failing statement inside does not commit the rest either.
      CHECK_FALSE(db->Exec("INSERT INTO missing_table VALUES (1)").ok());
    }
    CHECK(QueryInt(*db, "SELECT count(*) FROM t") == 0);
  }
  auto reopened = OpenOrDie(path);
  CHECK(QueryInt(*reopened, "SELECT count(*) FROM t") == 0);
}

// The integration point batches a loop turn in one transaction; each store operation inside it
// is a Transaction too, which then nests as a savepoint: its rollback undoes only itself, its
// Commit is durable only with the outer commit.
TEST_CASE("A transaction inside an open one is a savepoint", "[sqlite]") {
  TempDir dir;
  const std::string path = dir / "nested.db";
  {
    auto db = OpenOrDie(path);
    ExecOrDie(*db, "CREATE TABLE t(x INTEGER)");
    Transaction outer(*db);
    REQUIRE(outer.began().ok());
    {
      Transaction ok(*db);
      REQUIRE(ok.began().ok());
      ExecOrDie(*db, "INSERT INTO t VALUES (1)");
      REQUIRE(ok.Commit().ok());
    }
    {
      Transaction failed(*db);
      REQUIRE(failed.began().ok());
      ExecOrDie(*db, "INSERT INTO t VALUES (2)");
    }  // no Commit(): only this insert is undone
    CHECK(QueryInt(*db, "SELECT count(*) FROM t") == 1);
    {
      // Not committed by the outer transaction: a second connection sees nothing yet.
      auto other = OpenOrDie(path);
      CHECK(QueryInt(*other, "SELECT count(*) FROM t") == 0);
    }
    REQUIRE(outer.Commit().ok());
  }
  auto reopened = OpenOrDie(path);
  CHECK(QueryInt(*reopened, "SELECT x FROM t") == 1);
  CHECK(QueryInt(*reopened, "SELECT count(*) FROM t") == 1);
}

TEST_CASE("A committed transaction persists after reopening", "[sqlite]") {
  TempDir dir;
  const std::string path = dir / "tx.db";
  const std::string blob("bin\0ary\xff", 8);
  {
    auto db = OpenOrDie(path);
    ExecOrDie(*db, "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, data BLOB)");
    Transaction tx(*db);
    REQUIRE(tx.began().ok());
    for (int i = 1; i <= 100; ++i) {
      auto st = db->Prepare("INSERT INTO t(id, name, data) VALUES (?, ?, ?)");
      REQUIRE(st.ok());
      (*st)->Bind(1, i).Bind(2, "rad " + std::to_string(i)).BindBlob(3, blob);
      REQUIRE((*st)->Run().ok());
    }
    Status committed = tx.Commit();
    INFO(committed.ToString());
    REQUIRE(committed.ok());
    CHECK(tx.Commit().code() == Code::kInternal);  // only once
  }
  auto db = OpenOrDie(path);
  CHECK(QueryInt(*db, "SELECT count(*) FROM t") == 100);
  auto st = db->Prepare("SELECT name, data FROM t WHERE id = ?");
  REQUIRE(st.ok());
  (*st)->Bind(1, 42);
  auto row = (*st)->Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  CHECK((*st)->Text(0) == "rad 42");
  CHECK((*st)->Blob(1) == blob);
}

TEST_CASE("Prepared statements are cached and handed out reset", "[sqlite]") {
  TempDir dir;
  auto db = OpenOrDie(dir / "s.db");
  ExecOrDie(*db, "CREATE TABLE t(a, b)");
  const char* kInsert = "INSERT INTO t(a, b) VALUES (?, ?)";
  auto first = db->Prepare(kInsert);
  REQUIRE(first.ok());
  (*first)->BindAll(int64_t{7}, std::string("sju"));
  REQUIRE((*first)->Run().ok());
  CHECK(db->LastInsertId() == 1);
  auto second = db->Prepare(kInsert);
  REQUIRE(second.ok());
  CHECK(*second == *first);        // the same cached statement
  REQUIRE((*second)->Run().ok());  // bindings were cleared: inserts NULLs
  CHECK(QueryInt(*db, "SELECT count(*) FROM t WHERE a IS NULL AND b IS NULL") == 1);
  auto bad = db->Prepare("SELEKT 1");
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.status().message(), Catch::Contains("SELEKT"));
}

TEST_CASE("Bytes bound without a copy are stored as they were when it ran, and left behind",
          "[sqlite]") {
  TempDir dir;
  auto db = OpenOrDie(dir / "s.db");
  ExecOrDie(*db, "CREATE TABLE t(a TEXT, b BLOB)");
  const char* kInsert = "INSERT INTO t(a, b) VALUES (?, ?)";
  {
    // Heap bytes, freed after the run: the next run must not read them (under valgrind a read
    // of them is an error; without, the NULLs checked below say the bindings were dropped).
    auto text = std::make_unique<std::string>(40, 't');
    auto blob = std::make_unique<std::string>(std::string("\0\1\2", 3) + std::string(1000, 'b'));
    auto st = db->Prepare(kInsert);
    REQUIRE(st.ok());
    (*st)->BindView(1, *text).BindBlobView(2, *blob);
    REQUIRE((*st)->Run().ok());
  }
  auto again = db->Prepare(kInsert);  // handed out with no binding left
  REQUIRE(again.ok());
  REQUIRE((*again)->Run().ok());
  CHECK(QueryInt(*db,
                 "SELECT count(*) FROM t WHERE length(a) = 40 AND a NOT GLOB '*[^t]*' AND "
                 "length(b) = 1003 "
                 "AND substr(b, 1, 3) = x'000102'") == 1);
  CHECK(QueryInt(*db, "SELECT count(*) FROM t WHERE a IS NULL AND b IS NULL") == 1);
}

TEST_CASE("Migrate runs each migration exactly once", "[sqlite]") {
  TempDir dir;
  const std::string path = dir / "m.db";
  std::vector<std::string> migrations = {
      "CREATE TABLE log(step INTEGER); INSERT INTO log VALUES (1)",
      "INSERT INTO log VALUES (2); CREATE TABLE things(x)",
  };
  {
    auto db = OpenOrDie(path);
    CHECK(*db->UserVersion() == 0);
    REQUIRE(db->Migrate(migrations).ok());
    REQUIRE(db->Migrate(migrations).ok());
    CHECK(*db->UserVersion() == 2);
    CHECK(QueryInt(*db, "SELECT count(*) FROM log") == 2);
  }
  {
    auto db = OpenOrDie(path);
    CHECK(QueryInt(*db, "PRAGMA user_version") == 2);
    REQUIRE(db->Migrate(migrations).ok());
    CHECK(QueryInt(*db, "SELECT count(*) FROM log WHERE step = 1") == 1);
    CHECK(QueryInt(*db, "SELECT count(*) FROM log WHERE step = 2") == 1);

    // A new release adds a step: only that one runs.
    migrations.push_back("INSERT INTO log VALUES (3)");
    REQUIRE(db->Migrate(migrations).ok());
    CHECK(*db->UserVersion() == 3);
    CHECK(QueryInt(*db, "SELECT count(*) FROM log") == 3);

    // A failing step is rolled back with its version bump, and says which step failed.
    migrations.push_back("INSERT INTO log VALUES (4); THIS IS NOT SQL");
    Status s = db->Migrate(migrations);
    REQUIRE_FALSE(s.ok());
    CHECK_THAT(s.message(), Catch::Contains("migration 4"));
    CHECK(*db->UserVersion() == 3);
    CHECK(QueryInt(*db, "SELECT count(*) FROM log WHERE step = 4") == 0);
  }
  auto db = OpenOrDie(path);
  CHECK(*db->UserVersion() == 3);
  CHECK(QueryInt(*db, "SELECT count(*) FROM log") == 3);
}

TEST_CASE("A database from a newer release is refused", "[sqlite]") {
  TempDir dir;
  const std::string path = dir / "new.db";
  {
    auto db = OpenOrDie(path);
    ExecOrDie(*db, "PRAGMA user_version = 5");
  }
  auto db = OpenOrDie(path);
  Status s = db->Migrate({"CREATE TABLE a(x)", "CREATE TABLE b(x)"});
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == Code::kUnsupported);
  CHECK_THAT(s.message(), Catch::Contains("5") && Catch::Contains(path));
  CHECK(*db->UserVersion() == 5);
  CHECK(QueryInt(*db, "SELECT count(*) FROM sqlite_schema WHERE name IN ('a', 'b')") == 0);
}

TEST_CASE("Check finds a database damaged on disk", "[sqlite]") {
  TempDir dir;
  const std::string path = dir / "damaged.db";
  int64_t pages = 0, page_size = 0;
  {
    auto db = OpenOrDie(path);
    ExecOrDie(*db, "CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
    ExecOrDie(*db, "CREATE INDEX t_body ON t(body)");
    ExecOrDie(*db,
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
              "INSERT INTO t(id, body) SELECT i, randomblob(200) FROM n");
    REQUIRE(db->Check().ok());
    REQUIRE(db->Check(/*full=*/true).ok());
    REQUIRE(db->Checkpoint().ok());
    pages = QueryInt(*db, "PRAGMA page_count");
    page_size = QueryInt(*db, "PRAGMA page_size");
  }
  REQUIRE(pages > 50);
  CHECK_FALSE(Exists(path + "-wal"));  // all in the main file now

  {  // Overwrite four whole pages in the middle of the file, b-tree page headers included.
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    REQUIRE(f);
    f.seekp(static_cast<std::streamoff>(pages / 2 * page_size));
    const std::string junk(static_cast<size_t>(4 * page_size), '\xa5');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    REQUIRE(f.good());
  }

  const bool full = GENERATE(false, true);
  CAPTURE(full);
  auto db = Db::Open(path);
  if (!db.ok()) {
    CHECK(db.status().code() == Code::kCorrupt);
    CHECK_THAT(db.status().message(), Catch::Contains(path));
    return;
  }
  Status s = (*db)->Check(full);
  INFO(s.ToString());
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == Code::kCorrupt);
  CHECK_THAT(s.message(), Catch::Contains(path));
}

TEST_CASE("A file that is not a database is refused as corrupt", "[sqlite]") {
  TempDir dir;
  const std::string path = dir / "text.db";
  REQUIRE(WriteFileSynced(path, std::string(8192, 'x')).ok());
  auto db = Db::Open(path);
  if (db.ok()) {
    Status s = (*db)->Check();
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == Code::kCorrupt);
  } else {
    CHECK(db.status().code() == Code::kCorrupt);
    CHECK_THAT(db.status().message(), Catch::Contains(path));
  }
}

TEST_CASE("Failure paths map to their codes: busy, full, read-only, constraint", "[sqlite]") {
  TempDir dir;
  const std::string path = dir / "f.db";
  auto db = OpenOrDie(path);
  ExecOrDie(*db, "CREATE TABLE t(k TEXT PRIMARY KEY, v BLOB)");

  SECTION("a second writer times out as busy") {
    Db::Options impatient;
    impatient.busy_timeout_ms = 50;
    auto other = OpenOrDie(path, impatient);
    Transaction held(*db);
    REQUIRE(held.began().ok());
    Transaction blocked(*other);
    CHECK(blocked.began().code() == Code::kBusy);
    CHECK(blocked.Commit().code() == Code::kInternal);  // never began
  }
  SECTION("a full database is disk-full") {
    ExecOrDie(*db, "PRAGMA max_page_count = 20");
    Status s;
    for (int i = 0; i < 1000 && s.ok(); ++i) {
      auto st = db->Prepare("INSERT INTO t(k, v) VALUES (?, randomblob(4000))");
      REQUIRE(st.ok());
      (*st)->Bind(1, std::to_string(i));
      s = (*st)->Run();
    }
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == Code::kDiskFull);
  }
  SECTION("a read-only connection cannot write") {
    Db::Options ro;
    ro.read_only = true;
    auto reader = OpenOrDie(path, ro);
    Status s = reader->Exec("INSERT INTO t(k) VALUES ('x')");
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == Code::kIo);
  }
  SECTION("a duplicate key is already-exists") {
    ExecOrDie(*db, "INSERT INTO t(k) VALUES ('a')");
    Status s = db->Exec("INSERT INTO t(k) VALUES ('a')");
    CHECK(s.code() == Code::kAlreadyExists);
  }
  SECTION("a directory that does not exist cannot be opened") {
    auto missing = Db::Open(dir / "no/such/dir/x.db");
    REQUIRE_FALSE(missing.ok());
    CHECK_THAT(missing.status().message(), Catch::Contains("no/such/dir"));
  }
}

TEST_CASE("CodeFromSqlite maps primary and extended codes", "[sqlite]") {
  using storage::CodeFromSqlite;
  CHECK(CodeFromSqlite(SQLITE_OK) == Code::kOk);
  CHECK(CodeFromSqlite(SQLITE_DONE) == Code::kOk);
  CHECK(CodeFromSqlite(SQLITE_FULL) == Code::kDiskFull);
  CHECK(CodeFromSqlite(SQLITE_BUSY) == Code::kBusy);
  CHECK(CodeFromSqlite(SQLITE_BUSY_SNAPSHOT) == Code::kBusy);
  CHECK(CodeFromSqlite(SQLITE_LOCKED) == Code::kBusy);
  CHECK(CodeFromSqlite(SQLITE_CORRUPT) == Code::kCorrupt);
  CHECK(CodeFromSqlite(SQLITE_NOTADB) == Code::kCorrupt);
  CHECK(CodeFromSqlite(SQLITE_IOERR_FSYNC) == Code::kIo);
  CHECK(CodeFromSqlite(SQLITE_CONSTRAINT_UNIQUE) == Code::kAlreadyExists);
  CHECK(CodeFromSqlite(SQLITE_ERROR) == Code::kInternal);
}

// ---------------------------------------------------------------------------------------------
// BackupDatabase: a consistent online copy

namespace backup {

// Rows go in pairs, one pair per transaction: a consistent copy holds an even number of rows.
void WritePairs(const std::string& path, std::atomic<bool>& stop, std::atomic<int64_t>& pairs) {
  auto db = Db::Open(path);
  if (!db.ok()) return;
  for (int i = 0; i < 200000 && !stop.load(); ++i) {
    Transaction tx(**db);
    if (!tx.began().ok()) continue;
    auto st = (*db)->Prepare("INSERT INTO t(pair, filler) VALUES(?, randomblob(300))");
    if (!st.ok()) return;
    if (!(*st)->Bind(1, int64_t{i}).Run().ok() || !(*st)->Bind(1, int64_t{i}).Run().ok()) continue;
    if (tx.Commit().ok()) pairs.fetch_add(1);
  }
}

}  // namespace backup

TEST_CASE("BackupDatabase copies a consistent snapshot while another connection writes",
          "[sqlite][backup]") {
  TempDir dir;
  const std::string path = dir / "live.db";
  {
    auto db = OpenOrDie(path);
    ExecOrDie(*db,
              "CREATE TABLE t(id INTEGER PRIMARY KEY, pair INTEGER, filler BLOB); "
              "PRAGMA user_version=7");
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> pairs{0};
  std::thread writer(backup::WritePairs, path, std::ref(stop), std::ref(pairs));
  // Let the writer get going, then copy three times while it keeps committing.
  for (int i = 0; i < 400 && pairs.load() < 50; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::vector<int64_t> counts;
  for (int n = 0; n < 3; ++n) {
    const std::string out = dir / ("copy-" + std::to_string(n) + ".db");
    auto info = storage::BackupDatabase(path, out);
    INFO(info.status().ToString());
    REQUIRE(info.ok());
    CHECK(info->schema_version == 7);
    CHECK(info->bytes > 0);
    auto copy = OpenOrDie(out, Db::Options{.wal = false});
    CHECK(copy->Check(/*full=*/true).ok());
    CHECK(QueryText(*copy, "PRAGMA journal_mode") == "delete");
    const int64_t rows = QueryInt(*copy, "SELECT count(*) FROM t");
    CHECK(rows % 2 == 0);  // never half a transaction
    CHECK(QueryInt(*copy,
                   "SELECT count(*) FROM (SELECT pair FROM t GROUP BY pair "
                   "HAVING count(*) != 2)") == 0);
    counts.push_back(rows);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop.store(true);
  writer.join();
  CHECK(counts.front() > 0);
  CHECK(std::is_sorted(counts.begin(), counts.end()));
  // Nothing but the copies was left beside them.
  auto names = ListDir(dir.path());
  REQUIRE(names.ok());
  for (const auto& name : *names) {
    INFO(name);
    CHECK(name.find(".tmp-") == std::string::npos);
  }
}

TEST_CASE("BackupDatabase never overwrites and says what is missing", "[sqlite][backup]") {
  TempDir dir;
  {
    auto db = OpenOrDie(dir / "live.db");
    ExecOrDie(*db, "CREATE TABLE t(x)");
  }
  REQUIRE(WriteFileSynced(dir / "taken.db", "keep me").ok());
  auto r = storage::BackupDatabase(dir / "live.db", dir / "taken.db");
  CHECK(r.status().code() == Code::kAlreadyExists);
  CHECK(*ReadFile(dir / "taken.db") == "keep me");

  r = storage::BackupDatabase(dir / "absent.db", dir / "out.db");
  CHECK(r.status().code() == Code::kNotFound);
  CHECK_THAT(r.status().message(), Catch::Matchers::Contains("absent.db"));
  CHECK_FALSE(Exists(dir / "absent.db"));  // not created by trying
  CHECK_FALSE(Exists(dir / "out.db"));

  r = storage::BackupDatabase(dir / "live.db", dir / "no/such/dir/out.db");
  CHECK_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Catch::Matchers::Contains("no/such/dir"));

  // A file that is not a database is not "backed up".
  REQUIRE(WriteFileSynced(dir / "junk.db", std::string(8192, 'x')).ok());
  r = storage::BackupDatabase(dir / "junk.db", dir / "junk-copy.db");
  CHECK_FALSE(r.ok());
  CHECK_FALSE(Exists(dir / "junk-copy.db"));
  auto names = ListDir(dir.path());
  REQUIRE(names.ok());
  for (const auto& name : *names) CHECK(name.find(".tmp-") == std::string::npos);
}

}  // namespace
}  // namespace bud::test
