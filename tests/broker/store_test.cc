// The broker's store on a real SQLite file, what only the SQLite engine has: the durability
// settings every ACCEPTED relies on, the schema migrations, and seq handed out by the store.
// What every engine must do is in store_conformance_test.cc.
#include <fmt/format.h>

#include <catch2/catch.hpp>

#include "broker/sqlite_queue_store.h"
#include "common/clock.h"
#include "common/uuid.h"
#include "tests/support/sqlite_peek.h"
#include "tests/support/temp_dir.h"

namespace bud::broker {
namespace {

// Reads the store's file through a connection of its own (committed rows only; -1: no row).
int64_t Peek(const std::string& path, const std::string& sql) {
  return test::PeekInt(path, sql, -1);
}

SubmitItem Item(const std::string& id) {
  SubmitItem s;
  s.message_id = id;
  s.sender = "0192:910076787";
  s.receiver = "0192:910075918";
  s.envelope = "envelope bytes of " + id;
  s.expires_ms = NowMs() + 3600 * 1000;
  return s;
}

}  // namespace

// The broker answers ACCEPTED once CommitBatch returned; that the commit is on disk by then is
// SQLite's synchronous=FULL in WAL mode (the WAL is fsynced at every commit). Whoever tunes the
// store for speed must not lose this.
TEST_CASE("the broker store commits with synchronous=FULL in WAL mode", "[broker][durability]") {
  test::TempDir dir;
  auto store = SqliteQueueStore::Open(dir / "broker.db");
  REQUIRE(store.ok());
  auto d = (*store)->durability();
  REQUIRE(d.ok());
  CHECK(d->synchronous == 2);  // FULL
  CHECK(d->journal_mode == "wal");
}

// Schema v4 drops messages' UNIQUE index on message_id (seen keeps the seq). A v3 store with
// queued and delivered messages migrates: the queued ones stay deliverable, reports and attempts
// still find them by id, a duplicate is still refused, and no seq is handed out twice.
TEST_CASE("schema v4 migrates a v3 store: messages found through seen, seq never reused",
          "[broker]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  const std::string queued = NewUuid(), delivered = NewUuid();
  {
    const auto& all = Migrations();
    REQUIRE(all.size() >= 4);
    auto v3 = storage::Db::OpenStore(path, {all.begin(), all.begin() + 3});
    REQUIRE(v3.ok());
    for (const auto& id : {queued, delivered}) {
      REQUIRE((*v3)->Exec(fmt::format(
          "INSERT INTO seen(message_id, sender, receiver, first_seen_ms) "
          "VALUES('{}', '0192:910076787', '0192:910075918', 1)", id)).ok());
      REQUIRE((*v3)->Exec(fmt::format(
          "INSERT INTO messages(message_id, sender, receiver, envelope, received_ms, expires_ms) "
          "VALUES('{}', '0192:910076787', '0192:910075918', x'01', 1, {})",
          id, NowMs() + 3600 * 1000)).ok());
    }
    // The newest seq (2) is gone: v4 must not hand it out again.
    REQUIRE((*v3)->Exec(fmt::format("DELETE FROM messages WHERE message_id='{}'", delivered)).ok());
  }
  auto opened = SqliteQueueStore::Open(path);
  REQUIRE(opened.ok());
  SqliteQueueStore& store = **opened;
  CHECK(Peek(path, "PRAGMA user_version") == SchemaVersion());
  CHECK(Peek(path, "SELECT count(*) FROM pragma_index_list('messages') WHERE \"unique\"") == 0);
  CHECK(Peek(path, fmt::format("SELECT seq FROM seen WHERE message_id='{}'", queued).c_str()) == 1);
  CHECK(*store.QueuedCount() == 1);

  // A new message gets seq 3; the old id is still a duplicate.
  std::vector<SubmitItem> submits = {Item(NewUuid()), Item(queued)};
  std::vector<ReportItem> none;
  REQUIRE(store.CommitBatch(submits, none).ok());
  CHECK_FALSE(submits[0].duplicate);
  CHECK(submits[1].duplicate);
  auto next = store.NextFor("0192:910075918", 0, 10);
  REQUIRE(next.ok());
  REQUIRE(next->size() == 2);
  CHECK(next->back().seq == 3);

  // Attempts and the receiver's report find the migrated message by id.
  REQUIRE(store.AddAttempts({queued}).ok());
  CHECK(Peek(path, "SELECT attempts FROM messages WHERE seq=1") == 1);
  CHECK(*store.Attempts(queued) == 1);
  ReportItem r;
  r.reporter = "0192:910075918";
  r.message_id = queued;
  r.status = wire::MOTTATT;
  std::vector<ReportItem> reports = {r};
  std::vector<SubmitItem> no_submits;
  REQUIRE(store.CommitBatch(no_submits, reports).ok());
  CHECK(*store.QueuedCount() == 1);
  CHECK(Peek(path, "SELECT count(*) FROM messages WHERE seq=1") == 0);
}

}  // namespace bud::broker

namespace bud::broker {

// The store hands out seq itself (the seen row is written once, with it). Every seen row names
// its queued copy, and a reopened store whose queue was emptied never hands a seq out again.
TEST_CASE("seen.seq names the queued copy; seq is never reused after the queue empties",
          "[broker]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  std::vector<std::string> ids;
  {
    auto opened = SqliteQueueStore::Open(path);
    REQUIRE(opened.ok());
    SqliteQueueStore& store = **opened;
    std::vector<SubmitItem> submits;
    for (int i = 0; i < 5; ++i) {
      ids.push_back(NewUuid());
      submits.push_back(Item(ids.back()));
    }
    submits.push_back(Item(ids[1]));  // a duplicate inside the batch takes no seq
    std::vector<ReportItem> none;
    REQUIRE(store.CommitBatch(submits, none).ok());
    CHECK(submits.back().duplicate);
    CHECK(Peek(path, "SELECT count(*) FROM seen s JOIN messages m ON m.seq=s.seq "
                        "AND m.message_id=s.message_id") == 5);
    CHECK(Peek(path, "SELECT max(seq) FROM messages") == 5);
    std::vector<ReportItem> reports;
    for (const auto& id : ids) {
      ReportItem r;
      r.reporter = "0192:910075918";
      r.message_id = id;
      r.status = wire::MOTTATT;
      reports.push_back(r);
    }
    std::vector<SubmitItem> no_submits;
    REQUIRE(store.CommitBatch(no_submits, reports).ok());
    CHECK(*store.QueuedCount() == 0);
  }
  auto reopened = SqliteQueueStore::Open(path);
  REQUIRE(reopened.ok());
  SqliteQueueStore& store = **reopened;
  std::vector<SubmitItem> submits = {Item(NewUuid())};
  std::vector<ReportItem> none;
  REQUIRE(store.CommitBatch(submits, none).ok());
  auto next = store.NextFor("0192:910075918", 0, 10);
  REQUIRE(next.ok());
  REQUIRE(next->size() == 1);
  CHECK(next->front().seq == 6);
}

// v8: the `seen` log has no index besides its row number, so a commit appends to it and writes no
// other B-tree for it (the id index is a file of its own, broker/seen_index.h); pruning goes in
// row order (the pruning itself is checked for every engine in store_conformance_test.cc).
TEST_CASE("the SQLite store's seen log has no index to write", "[broker][retention]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  auto store = SqliteQueueStore::Open(path);
  REQUIRE(store.ok());
  CHECK(Peek(path, "SELECT count(*) FROM pragma_index_list('seen')") == 0);
  CHECK(Peek(path, "SELECT count(*) FROM sqlite_master WHERE name='reports'") == 0);
}

}  // namespace bud::broker

namespace bud::broker {

// v7 (message channels): a mailbox's queue read and its notices stay index range scans. The
// plans are asked for the shapes of NextFor's and NoticesFor's statements.
TEST_CASE("schema v7: a mailbox's queue and notices are read through their indexes",
          "[broker][store][channels]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  {
    auto store = SqliteQueueStore::Open(path);
    REQUIRE(store.ok());
  }
  auto db = storage::Db::Open(path);
  REQUIRE(db.ok());
  auto plan = [&](const char* sql) {
    auto st = (*db)->Prepare(std::string("EXPLAIN QUERY PLAN ") + sql);
    REQUIRE(st.ok());
    std::string out;
    for (;;) {
      auto row = (*st)->Step();
      REQUIRE(row.ok());
      if (!*row) break;
      out += (*st)->Text(3) + "\n";
    }
    return out;
  };
  const std::string queue = plan(
      "SELECT seq, message_id, envelope FROM messages WHERE receiver='a' AND "
      "receiver_channel='b' AND seq>0 ORDER BY seq LIMIT 10");
  INFO(queue);
  CHECK_THAT(queue, Catch::Contains("USING INDEX messages_by_receiver (receiver=? AND "
                                    "receiver_channel=? AND seq>?)"));
  CHECK_THAT(queue, !Catch::Contains("TEMP B-TREE"));
  const std::string notices = plan(
      "SELECT notice_id, message_id, status, reason, at_ms FROM notices WHERE org='a' AND "
      "channel='b' AND notice_id>0 ORDER BY notice_id LIMIT 10");
  INFO(notices);
  CHECK_THAT(notices, Catch::Contains("USING INDEX notices_by_org (org=? AND channel=? AND "
                                      "notice_id>?)"));
  CHECK_THAT(notices, !Catch::Contains("TEMP B-TREE"));
}

// Deliveries right after their commit are handed out from memory (broker/fresh_envelopes.h):
// they must be the committed envelopes, nothing of a batch whose commit failed, and the same as
// a reopened store (which reads every envelope from its rows) hands out.
TEST_CASE("deliveries after the commit: the committed envelopes, never a failed batch's",
          "[broker][fresh]") {
  test::TempDir dir;
  const std::string path = dir / "broker.db";
  const std::string kReceiver = "0192:910075918";
  std::vector<Queued> first_claim;
  {
    // A cap the third batch does not fit under (SQLITE_FULL, as on a full disk).
    auto opened = SqliteQueueStore::Open(path, /*max_bytes=*/400 << 10);
    REQUIRE(opened.ok());
    SqliteQueueStore& store = **opened;
    std::vector<ReportItem> none;
    int committed = 0;
    for (int round = 0; round < 3; ++round) {
      std::vector<SubmitItem> submits;
      for (int i = 0; i < (round < 2 ? 4 : 40); ++i) {
        submits.push_back(Item(NewUuid()));
        submits.back().envelope = fmt::format("{:08}", round * 100 + i) + std::string(10000, 'e');
        submits.back().receiver_online = i % 2 == 0;  // half from memory, half from the rows
      }
      const CommitResult result = store.CommitBatch(submits, none);
      if (round < 2) {
        REQUIRE(result.status.ok());
        committed += 4;
      } else {
        REQUIRE_FALSE(result.status.ok());  // 40 x 10 KB do not fit in 400 KiB with the rest
      }
    }
    auto lease = store.TakeSession(kReceiver, "broker-1", 60000);
    REQUIRE(lease.ok());
    auto claimed = store.ClaimDeliveries({kReceiver, "broker-1", lease->epoch}, {}, 100);
    REQUIRE(claimed.ok());
    REQUIRE(static_cast<int>(claimed->size()) == committed);
    for (int i = 0; i < committed; ++i) {
      const auto& q = (*claimed)[i];
      CHECK(q.envelope == fmt::format("{:08}", (i / 4) * 100 + i % 4) + std::string(10000, 'e'));
    }
    first_claim = *claimed;
  }
  auto reopened = SqliteQueueStore::Open(path);
  REQUIRE(reopened.ok());
  auto lease = (*reopened)->TakeSession(kReceiver, "broker-1", 60000);
  REQUIRE(lease.ok());
  auto again = (*reopened)->ClaimDeliveries({kReceiver, "broker-1", lease->epoch}, {}, 100);
  REQUIRE(again.ok());
  REQUIRE(again->size() == first_claim.size());
  for (size_t i = 0; i < again->size(); ++i) {
    CHECK((*again)[i].seq == first_claim[i].seq);
    CHECK((*again)[i].message_id == first_claim[i].message_id);
    CHECK((*again)[i].envelope == first_claim[i].envelope);
  }
}

}  // namespace bud::broker
