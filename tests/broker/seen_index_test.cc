// The SQLite broker store's id index (broker/seen_index.h) on real files: ids merged into the
// index file in batches, found in memory, in the file and after a reopen; a lost, foreign or
// stale index file never makes a known id new or a new id known; a merge that cannot write keeps
// its ids in memory; the v7 -> v8 migration keeps every id and every report.
#include "broker/seen_index.h"

#include <fmt/format.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

#include "broker/sqlite_queue_store.h"
#include "common/clock.h"
#include "common/uuid.h"
#include "tests/support/sqlite_peek.h"
#include "tests/support/temp_dir.h"

namespace bud::broker {
namespace {

constexpr const char* kSender = "0192:910076787";
constexpr const char* kReceiver = "0192:910075918";

SubmitItem Item(const std::string& id, const std::string& sender = kSender) {
  SubmitItem s;
  s.message_id = id;
  s.sender = sender;
  s.receiver = kReceiver;
  s.envelope = "envelope bytes of " + id;
  s.expires_ms = NowMs() + 3600 * 1000;
  return s;
}

int64_t Peek(const std::string& path, const std::string& sql) {
  return test::PeekInt(path, sql, -1);
}

// The index file's entries as (run, hash, row), read from its chunks (16 bytes an entry,
// little-endian), whatever the index itself believes.
struct SideEntry {
  int64_t run, h, n;
};
std::vector<SideEntry> SideEntries(const std::string& side, const std::string& where = "") {
  std::vector<SideEntry> out;
  auto db = storage::Db::Open(side);
  REQUIRE(db.ok());
  auto q = (*db)->Prepare("SELECT run, entries FROM chunks " + where + " ORDER BY run, first");
  REQUIRE(q.ok());
  for (;;) {
    auto row = (*q)->Step();
    REQUIRE(row.ok());
    if (!*row) break;
    const std::string blob = (*q)->Blob(1);
    REQUIRE(blob.size() % 16 == 0);
    for (size_t at = 0; at < blob.size(); at += 16) {
      uint64_t h = 0, n = 0;
      for (int i = 7; i >= 0; --i) {
        h = (h << 8) | static_cast<unsigned char>(blob[at + i]);
        n = (n << 8) | static_cast<unsigned char>(blob[at + 8 + i]);
      }
      out.push_back({(*q)->Int(0), static_cast<int64_t>(h), static_cast<int64_t>(n)});
    }
  }
  (*q)->Reset();
  return out;
}

int64_t SideCount(const std::string& side) {
  const auto n = static_cast<int64_t>(SideEntries(side).size());
  CHECK(Peek(side, "SELECT coalesce(sum(ids), 0) FROM runs") == n);  // the runs' own counts agree
  return n;
}

// Submits `ids` in batches of 50; returns how many came back as duplicates.
int Submit(SqliteQueueStore& store, const std::vector<std::string>& ids,
           const std::string& sender = kSender, int* conflicts = nullptr) {
  int duplicates = 0;
  for (size_t at = 0; at < ids.size(); at += 50) {
    std::vector<SubmitItem> batch;
    for (size_t i = at; i < std::min(ids.size(), at + 50); ++i)
      batch.push_back(Item(ids[i], sender));
    std::vector<ReportItem> none;
    auto r = store.CommitBatch(batch, none);
    REQUIRE(r.ok());
    for (const auto& s : batch) {
      CHECK(s.refused.empty());
      duplicates += s.duplicate ? 1 : 0;
      if (conflicts) *conflicts += s.conflict ? 1 : 0;
    }
  }
  return duplicates;
}

// Merges every id waiting in memory into the index file (a merge may be running already; the
// loop's own Tick would start the next one later).
void MergeAll(SqliteQueueStore& store) {
  for (int i = 0; i < 20 && store.seen_index().in_memory() > 0; ++i) {
    store.seen_index().Settle(10000);
    store.seen_index().Tick(/*force=*/true);
    store.seen_index().Settle(10000);
  }
  REQUIRE(store.seen_index().in_memory() == 0);
}

// How many of this process's threads run at `nice` (/proc/self/task/*/stat, field 19).
int ThreadsAtNice(int nice) {
  int n = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t end_of_name = stat.rfind(')');
    if (end_of_name == std::string::npos) continue;
    std::istringstream fields(stat.substr(end_of_name + 2));  // from field 3, the state
    std::string field;
    for (int i = 3; i <= 19 && fields >> field; ++i) {
      if (i == 19 && std::stoi(field) == nice) ++n;
    }
  }
  return n;
}

std::vector<std::string> NewIds(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back(NewUuid());
  return ids;
}

}  // namespace

TEST_CASE(
    "ids reach the index file in merges and are found in memory, in the file and after a "
    "reopen",
    "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  const auto ids = NewIds(350);
  {
    auto opened = SqliteQueueStore::Open(path, 0, /*merge_at=*/100);
    REQUIRE(opened.ok());
    SqliteQueueStore& store = **opened;
    CHECK(Submit(store, ids) == 0);
    for (int i = 0; i < 10 && store.seen_index().in_memory() >= 100; ++i) {
      store.seen_index().Settle(10000);  // takes a finished merge, starts the next at 100
    }
    CHECK(store.seen_index().merges() >= 2);
    CHECK(store.seen_index().in_memory() < 100);
    // Some in the index file, the rest in memory: every one is known.
    CHECK(SideCount(SeenIndex::PathFor(path)) == 350 - store.seen_index().in_memory());
    CHECK(Submit(store, ids) == 350);
    int conflicts = 0;
    CHECK(Submit(store, {ids[0], ids[349]}, "0192:999999999", &conflicts) == 2);
    CHECK(conflicts == 2);  // the same id from another organisation is refused as used
    CHECK(*store.IsKnown(ids[7]));
    CHECK_FALSE(*store.IsKnown(NewUuid()));
  }
  auto reopened = SqliteQueueStore::Open(path, 0, 100);
  REQUIRE(reopened.ok());
  CHECK(Submit(**reopened, ids) == 350);
  CHECK(Submit(**reopened, NewIds(20)) == 0);
  // A forced tick (the loop's periodic one) merges what waits, however little.
  MergeAll(**reopened);
  CHECK(SideCount(SeenIndex::PathFor(path)) == 370);
}

TEST_CASE(
    "a new id is ruled out by the filter without reading the index file; known ids are still "
    "found, also when the filter is built by the thread after a reopen",
    "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  const auto known = NewIds(350);
  {
    auto opened = SqliteQueueStore::Open(path, 0, /*merge_at=*/100);
    REQUIRE(opened.ok());
    SqliteQueueStore& store = **opened;
    CHECK(store.seen_index().filter_ready());  // an empty index file: built while opening
    CHECK(Submit(store, known) == 0);
    MergeAll(store);
    REQUIRE(SideCount(SeenIndex::PathFor(path)) == 350);
    // Every known id is in the file, not in memory: each is found there (a read each).
    const int64_t before = store.seen_index().side_reads();
    CHECK(Submit(store, known) == 350);
    CHECK(store.seen_index().side_reads() - before >= 350);
    // New ids: the filter (kept up by the merges) answers without a read.
    const int64_t reads = store.seen_index().side_reads();
    CHECK(Submit(store, NewIds(500)) == 0);
    CHECK(store.seen_index().side_reads() - reads <= 5);
  }
  // 850 ids in the file, more than a merge's worth: the thread reads them for the filter; until
  // then every lookup reads the file, and no answer changes either way.
  auto opened = SqliteQueueStore::Open(path, 0, /*merge_at=*/100);
  REQUIRE(opened.ok());
  SqliteQueueStore& store = **opened;
  CHECK(Submit(store, known) == 350);
  store.seen_index().Settle(10000);
  REQUIRE(store.seen_index().filter_ready());
  CHECK(Submit(store, known) == 350);
  const int64_t reads = store.seen_index().side_reads();
  const auto fresh = NewIds(500);
  CHECK(Submit(store, fresh) == 0);
  CHECK(store.seen_index().side_reads() - reads <= 5);
  CHECK(Submit(store, fresh) == 500);  // now known: in memory or, after a merge, in the file
}

TEST_CASE("a finished merge's ids leave memory a chunk a tick, and are found all along",
          "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  constexpr int64_t kChunk = static_cast<int64_t>(SeenIndex::kDrainChunk);
  auto opened = SqliteQueueStore::Open(path, 0, /*merge_at=*/3 * kChunk);
  REQUIRE(opened.ok());
  SqliteQueueStore& store = **opened;
  const auto ids = NewIds(static_cast<int>(3 * kChunk));
  CHECK(Submit(store, ids) == 0);  // the last commit starts the merge of all of them
  // The Tick that takes the merge's outcome moves one chunk of its ids out of memory.
  const int64_t deadline = MonoMs() + 20000;
  while (store.seen_index().merges() == 0 && MonoMs() < deadline) {
    store.seen_index().Tick(/*force=*/false);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE(store.seen_index().merges() == 1);
  CHECK(store.seen_index().in_memory() == 2 * kChunk);
  CHECK(SideCount(SeenIndex::PathFor(path)) == 3 * kChunk);
  // Each id is known, whether still in memory or already only in the filter and the file.
  int known = 0;
  for (const auto& id : ids) known += *store.IsKnown(id) ? 1 : 0;
  CHECK(known == 3 * kChunk);
  store.seen_index().Tick(/*force=*/false);
  CHECK(store.seen_index().in_memory() == kChunk);
  store.seen_index().Tick(/*force=*/false);
  CHECK(store.seen_index().in_memory() == 0);
  CHECK(Submit(store, ids) == 3 * kChunk);
  CHECK(Submit(store, NewIds(10)) == 0);
}

// Each merge writes a run; kFanIn runs of a level become one of the next, up to the top level,
// whose runs stay. Every id is in exactly one run and found; a pruned one leaves its run.
TEST_CASE("the index file's runs are merged level by level: every id in one run, found, pruned",
          "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db", side = SeenIndex::PathFor(path);
  static_assert(SeenIndex::kFanIn == 4 && SeenIndex::kTopLevel == 2);
  auto opened = SqliteQueueStore::Open(path, 0, /*merge_at=*/50);
  REQUIRE(opened.ok());
  SqliteQueueStore& store = **opened;
  std::vector<std::string> ids;
  // 37 merges of 50: 9 merges of four level-0 runs, 2 of four level-1 runs.
  for (int merge = 0; merge < 37; ++merge) {
    const auto batch = NewIds(50);
    CHECK(Submit(store, batch) == 0);
    MergeAll(store);
    ids.insert(ids.end(), batch.begin(), batch.end());
    for (int level = 0; level < SeenIndex::kTopLevel; ++level) {
      CHECK(Peek(side, fmt::format("SELECT count(*) FROM runs WHERE level={}", level)) <
            SeenIndex::kFanIn);
    }
  }
  CHECK(store.seen_index().merges() == 37);
  CHECK(store.seen_index().level_merges() == 11);
  CHECK(store.IdIndex()->level_merges == 11);  // as the broker's /metrics shows it
  CHECK(Peek(side, "SELECT count(*) FROM runs WHERE level=2") == 2);
  CHECK(Peek(side, "SELECT count(*) FROM runs WHERE level=1") == 1);
  CHECK(Peek(side, "SELECT count(*) FROM runs WHERE level=0") == 1);
  CHECK(Peek(side, "SELECT count(*) FROM runs WHERE level>2") == 0);
  CHECK(Peek(side, "SELECT count(*) FROM chunks WHERE run NOT IN (SELECT run FROM runs)") == 0);
  CHECK(SideCount(side) == 1850);
  std::set<int64_t> rows;
  for (const auto& e : SideEntries(side)) rows.insert(e.n);
  CHECK(rows.size() == 1850);
  // A top-level run of 16 merges, in key order, in chunks of at most a page's worth.
  const std::string oldest = "WHERE run=(SELECT min(run) FROM runs)";
  const auto top = SideEntries(side, oldest);
  CHECK(top.size() == 800);
  CHECK(std::is_sorted(top.begin(), top.end(), [](const SideEntry& a, const SideEntry& b) {
    return std::pair(a.h, a.n) < std::pair(b.h, b.n);
  }));
  CHECK(Peek(side, "SELECT count(*) FROM chunks " + oldest) >= 4);
  CHECK(Submit(store, ids) == 1850);
  CHECK(Submit(store, NewIds(100)) == 0);

  // The first 10 ids delivered and acknowledged, then pruned: out of their top-level run.
  std::vector<SubmitItem> none;
  std::vector<ReportItem> reports;
  for (int i = 0; i < 10; ++i) {
    ReportItem r;
    r.reporter = kReceiver;
    r.message_id = ids[i];
    r.status = wire::MOTTATT;
    reports.push_back(r);
  }
  REQUIRE(store.CommitBatch(none, reports).ok());
  auto pruned = store.PruneHistory(NowMs() + 1, 10);
  REQUIRE(pruned.ok());
  REQUIRE(*pruned == 10);
  MergeAll(store);
  store.seen_index().Tick(/*force=*/true);  // the forget rides on a merge, even of nothing new
  store.seen_index().Settle(10000);
  CHECK(SideEntries(side, oldest).size() == 790);
  CHECK(Peek(side, "SELECT ids FROM runs WHERE run=(SELECT min(run) FROM runs)") == 790);
  for (int i = 0; i < 10; ++i) CHECK_FALSE(*store.IsKnown(ids[i]));
  CHECK(*store.IsKnown(ids[10]));
}

// A merge takes whatever has been committed when it starts, usually a little more than a merge's
// worth: its run is still of level 0, and four of them make one of level 1.
TEST_CASE("a merge of more than a merge's worth writes a run of the first level",
          "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db", side = SeenIndex::PathFor(path);
  auto opened = SqliteQueueStore::Open(path, 0, /*merge_at=*/50);
  REQUIRE(opened.ok());
  SqliteQueueStore& store = **opened;
  for (int merge = 0; merge < 4; ++merge) {
    std::vector<SubmitItem> batch;
    for (const auto& id : NewIds(60)) batch.push_back(Item(id));  // one commit of 60
    std::vector<ReportItem> none;
    REQUIRE(store.CommitBatch(batch, none).ok());
    store.seen_index().Settle(10000);
    REQUIRE(store.seen_index().in_memory() == 0);
  }
  CHECK(store.seen_index().merges() == 4);
  CHECK(store.seen_index().level_merges() == 1);
  CHECK(Peek(side, "SELECT count(*) FROM runs WHERE level=1") == 1);
  CHECK(Peek(side, "SELECT count(*) FROM runs") == 1);
  CHECK(SideCount(side) == 240);
}

// The first layout kept the text ids in one B-tree; a file of it is rebuilt, not believed (its
// watermark and token would otherwise stand for rows it does not hold in the new layout).
TEST_CASE("an index file of the first layout is rebuilt from the store", "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db", side = SeenIndex::PathFor(path);
  const auto ids = NewIds(300);
  std::string token;
  {
    auto opened = SqliteQueueStore::Open(path, 0, 50);
    REQUIRE(opened.ok());
    CHECK(Submit(**opened, ids) == 0);
    MergeAll(**opened);
  }
  {
    auto store = storage::Db::Open(path);
    REQUIRE(store.ok());
    auto q = (*store)->Prepare("SELECT value FROM store_meta WHERE key='seen_index_token'");
    REQUIRE(q.ok());
    REQUIRE(*(*q)->Step());
    token = (*q)->Text(0);
    (*q)->Reset();
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(side + suffix);
  {
    auto old = storage::Db::Open(side);
    REQUIRE(old.ok());
    REQUIRE(
        (*old)
            ->Exec(fmt::format(
                "CREATE TABLE ids (message_id TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
                "INSERT INTO meta VALUES('token', '{}'), ('watermark', '300'), ('seed', '7');"
                "PRAGMA user_version=1;",
                token))
            .ok());
  }
  auto opened = SqliteQueueStore::Open(path, 0, 50);
  REQUIRE(opened.ok());
  CHECK(SideCount(side) == 300);
  CHECK(Peek(side, "SELECT value FROM meta WHERE key='seed'") != 7);
  CHECK(Submit(**opened, ids) == 300);
}

TEST_CASE("the merge thread runs below the loop's priority, and merges all the same",
          "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  const int before = ThreadsAtNice(SeenIndex::kThreadNice);
  auto opened = SqliteQueueStore::Open(path, 0, /*merge_at=*/100);
  REQUIRE(opened.ok());
  SqliteQueueStore& store = **opened;
  const auto ids = NewIds(300);
  CHECK(Submit(store, ids) == 0);
  MergeAll(store);  // the thread is up and has merged
  CHECK(ThreadsAtNice(SeenIndex::kThreadNice) == before + 1);
  CHECK(ThreadsAtNice(0) >= 1);  // this one, the loop's stand-in, keeps its own
  CHECK(SideCount(SeenIndex::PathFor(path)) == 300);
  CHECK(Submit(store, ids) == 300);
}

TEST_CASE("a lost index file is rebuilt from the store, in memory or at once",
          "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  const auto ids = NewIds(300);
  {
    auto opened = SqliteQueueStore::Open(path, 0, 100);
    REQUIRE(opened.ok());
    CHECK(Submit(**opened, ids) == 0);
  }
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(SeenIndex::PathFor(path) + suffix);
  }
  SECTION("few rows: read back into memory") {
    auto opened = SqliteQueueStore::Open(path, 0, 1000);
    REQUIRE(opened.ok());
    CHECK((*opened)->seen_index().in_memory() == 300);
    CHECK(Submit(**opened, ids) == 300);
  }
  SECTION("more than four merges' worth: built before the store opens") {
    auto opened = SqliteQueueStore::Open(path, 0, 50);
    REQUIRE(opened.ok());
    CHECK((*opened)->seen_index().in_memory() == 0);
    CHECK(SideCount(SeenIndex::PathFor(path)) == 300);
    CHECK(Submit(**opened, ids) == 300);
  }
  SECTION("a damaged file is replaced") {
    {
      std::FILE* f = std::fopen(SeenIndex::PathFor(path).c_str(), "wb");
      REQUIRE(f);
      std::fputs(
          "this is not a SQLite database, but it is long enough to look at............"
          "................................................................................",
          f);
      std::fclose(f);
    }
    auto opened = SqliteQueueStore::Open(path, 0, 50);
    REQUIRE(opened.ok());
    CHECK(Submit(**opened, ids) == 300);
  }
}

TEST_CASE("an index file of another store is not believed", "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string a = dir / "a.db", b = dir / "b.db";
  const auto ids_a = NewIds(120), ids_b = NewIds(120);
  for (const auto& [path, ids] : {std::pair{a, ids_a}, std::pair{b, ids_b}}) {
    auto opened = SqliteQueueStore::Open(path, 0, 50);
    REQUIRE(opened.ok());
    CHECK(Submit(**opened, ids) == 0);
    MergeAll(**opened);
  }
  for (const char* suffix : {"-wal", "-shm"})
    std::filesystem::remove(SeenIndex::PathFor(b) + suffix);
  std::filesystem::copy_file(SeenIndex::PathFor(a), SeenIndex::PathFor(b),
                             std::filesystem::copy_options::overwrite_existing);
  auto opened = SqliteQueueStore::Open(b, 0, 1000);
  REQUIRE(opened.ok());
  CHECK(Submit(**opened, ids_b) == 120);  // b's own ids: still known
  CHECK(Submit(**opened, ids_a) == 0);    // a's: new here
}

// A store restored from a copy older than its index file: the index names rows the store no longer
// has. Messages committed after the copy are new again, the copy's are known, and rows written
// after the restore are numbered above everything the index holds, so a reopen finds them.
TEST_CASE("an index file newer than its store hides nothing and invents nothing",
          "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db", copy = dir / "copy.db";
  const auto before = NewIds(120), after = NewIds(120), later = NewIds(60);
  {
    auto opened = SqliteQueueStore::Open(path, 0, 50);
    REQUIRE(opened.ok());
    CHECK(Submit(**opened, before) == 0);
    MergeAll(**opened);
  }
  REQUIRE(storage::BackupDatabase(path, copy).ok());
  {
    auto opened = SqliteQueueStore::Open(path, 0, 50);
    REQUIRE(opened.ok());
    CHECK(Submit(**opened, after) == 0);
    MergeAll(**opened);
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  std::filesystem::copy_file(copy, path);
  {
    auto opened = SqliteQueueStore::Open(path, 0, 1000);
    REQUIRE(opened.ok());
    CHECK(Submit(**opened, before) == 120);
    CHECK(Submit(**opened, after) == 0);  // the restored store never had them
    CHECK(Submit(**opened, later) == 0);
  }
  auto opened = SqliteQueueStore::Open(path, 0, 1000);
  REQUIRE(opened.ok());
  CHECK(Submit(**opened, before) == 120);
  CHECK(Submit(**opened, after) == 120);
  CHECK(Submit(**opened, later) == 60);
}

// A merge that cannot write (here: another connection holds the index file's write lock past the
// busy timeout) keeps its ids in memory, where they are still found; the next merge writes them.
TEST_CASE("a failed merge keeps its ids in memory until one succeeds", "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  auto opened = SqliteQueueStore::Open(path, 0, 50);
  REQUIRE(opened.ok());
  SqliteQueueStore& store = **opened;
  auto blocker = storage::Db::Open(SeenIndex::PathFor(path));
  REQUIRE(blocker.ok());
  REQUIRE((*blocker)->Exec("BEGIN IMMEDIATE").ok());
  const auto ids = NewIds(60);
  CHECK(Submit(store, ids) == 0);  // the 50th starts a merge, which waits for the lock
  store.seen_index().Settle(20000);
  CHECK(store.seen_index().merge_failures() == 1);
  CHECK(store.seen_index().in_memory() == 60);
  // As the broker's /metrics shows it (QueueStore::IdIndex).
  std::optional<IdIndexStats> shown = store.IdIndex();
  REQUIRE(shown);
  CHECK(shown->merge_failures == 1);
  CHECK(shown->merges == 0);
  CHECK(shown->in_memory == 60);
  CHECK(Submit(store, ids) == 60);
  REQUIRE((*blocker)->Exec("ROLLBACK").ok());
  store.seen_index().Tick(/*force=*/true);
  store.seen_index().Settle(10000);
  CHECK(store.seen_index().merges() == 1);
  CHECK(store.seen_index().in_memory() == 0);
  shown = store.IdIndex();
  CHECK(shown->merges == 1);
  CHECK(shown->merge_failures == 1);
  CHECK(shown->in_memory == 0);
  CHECK(shown->filter_ready);
  CHECK(Submit(store, ids) == 60);
}

// While merges cannot write, memory takes at most 8 merges' worth of ids: beyond, a new message is
// refused (RETRY_LATER, with the reason) while a known one is still answered as a duplicate; once
// a merge succeeds, new messages are taken again.
TEST_CASE("ids that cannot be merged are capped in memory: new messages are refused beyond",
          "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  auto opened = SqliteQueueStore::Open(path, 0, /*merge_at=*/50);  // cap: 400
  REQUIRE(opened.ok());
  SqliteQueueStore& store = **opened;
  auto blocker = storage::Db::Open(SeenIndex::PathFor(path));
  REQUIRE(blocker.ok());
  REQUIRE((*blocker)->Exec("BEGIN IMMEDIATE").ok());
  const auto ids = NewIds(400);
  CHECK(Submit(store, ids) == 0);
  CHECK(store.seen_index().in_memory() == 400);
  std::vector<SubmitItem> batch = {Item(NewUuid()), Item(ids[3])};
  std::vector<ReportItem> none;
  REQUIRE(store.CommitBatch(batch, none).ok());
  CHECK_THAT(batch[0].refused, Catch::Contains("cannot be written"));
  CHECK(batch[1].refused.empty());
  CHECK(batch[1].duplicate);
  REQUIRE((*blocker)->Exec("ROLLBACK").ok());
  MergeAll(store);
  CHECK(Submit(store, NewIds(10)) == 0);
}

// v8 turns `seen` into a log and the reports into bits of its rows: a v7 store's ids stay known,
// its queued message stays deliverable, and a report it had applied makes no second notice.
TEST_CASE("schema v8 migrates a v7 store: ids, queue and applied reports kept",
          "[broker][store][dedup]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  const std::string queued = NewUuid(), reported = NewUuid();
  {
    const auto& all = Migrations();
    REQUIRE(all.size() >= 8);
    auto v7 = storage::Db::OpenStore(path, {all.begin(), all.begin() + 7});
    REQUIRE(v7.ok());
    int seq = 1;
    for (const auto& id : {queued, reported}) {
      REQUIRE((*v7)
                  ->Exec(fmt::format(
                      "INSERT INTO seen(message_id, sender, receiver, first_seen_ms, seq) "
                      "VALUES('{}', '{}', '{}', {}, {})",
                      id, kSender, kReceiver, NowMs(), seq))
                  .ok());
      REQUIRE(
          (*v7)
              ->Exec(fmt::format(
                  "INSERT INTO messages(seq, message_id, sender, receiver, envelope, received_ms, "
                  "expires_ms) VALUES({}, '{}', '{}', '{}', x'01', 1, {})",
                  seq, id, kSender, kReceiver, NowMs() + 3600 * 1000))
              .ok());
      ++seq;
    }
    REQUIRE((*v7)
                ->Exec(fmt::format("INSERT INTO reports(message_id, status) VALUES('{}', {})",
                                   reported, static_cast<int>(wire::LEVERT)))
                .ok());
  }
  auto opened = SqliteQueueStore::Open(path);
  REQUIRE(opened.ok());
  SqliteQueueStore& store = **opened;
  CHECK(Peek(path, "PRAGMA user_version") == SchemaVersion());
  CHECK(Peek(path, "SELECT count(*) FROM sqlite_master WHERE name='reports'") == 0);
  CHECK(Peek(path, fmt::format("SELECT reported FROM seen WHERE message_id='{}'", reported)) ==
        (1 << wire::LEVERT));
  CHECK(Submit(store, {queued, reported}) == 2);
  auto next = store.NextFor(kReceiver, 0, 10);
  REQUIRE(next.ok());
  CHECK(next->size() == 2);
  auto stats = store.Stats(true);
  REQUIRE(stats.ok());
  CHECK(stats->seen_ids == 2);
  CHECK(stats->reports == 1);

  // LEVERT again for `reported`: applied before, so no notice; MOTTATT is new: one notice.
  std::vector<ReportItem> reports;
  for (auto status : {wire::LEVERT, wire::MOTTATT}) {
    ReportItem r;
    r.reporter = kReceiver;
    r.message_id = reported;
    r.status = status;
    reports.push_back(r);
  }
  std::vector<SubmitItem> none;
  REQUIRE(store.CommitBatch(none, reports).ok());
  CHECK(reports[0].result.ok());
  CHECK(reports[0].notify_mailbox.empty());
  CHECK(reports[1].notify_mailbox == kSender);
  auto notices = store.NoticesFor(kSender, 0, 10);
  REQUIRE(notices.ok());
  CHECK(notices->size() == 1);
  CHECK(*store.QueuedCount() == 1);
}

}  // namespace bud::broker
