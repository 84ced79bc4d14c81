// HistoryStore and PointDb over a real SQLite file: the read side (listings, statuses,
// conversations, counts, what the benchmark reads), read-only opening, the turn and the
// store's own checkpoints.
#include <sys/stat.h>

#include <fstream>

#include "tests/ip/store_fixture.h"

namespace bud::ip {
namespace {

using store_test::Fixture;
using store_test::Row;

// One outgoing message (sealed, so it is queued) and one incoming, delivered.
struct Two {
  MessageRow out = Row();
  MessageRow in = Row("0192:333333333", "0192:111111111");
  explicit Two(Fixture& f) {
    REQUIRE(f.store->outgoing.CreateOutgoing(out).ok());
    REQUIRE(f.store->outgoing.MarkSealed(out.message_id, "env").ok());
    in.state = WorkState::kDone;
    REQUIRE(f.store->incoming
                .RecordIncoming(in, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", NowMs())
                .ok());
  }
};

TEST_CASE("history store: messages of both directions, apart", "[ip][store]") {
  Fixture f;
  Two two(f);
  CHECK(f.store->history.HasMessage(two.out.message_id, Direction::kOut).value());
  CHECK_FALSE(f.store->history.HasMessage(two.out.message_id, Direction::kIn).value());
  CHECK(f.store->history.Get(two.in.message_id, Direction::kIn).value().has_value());
  CHECK_FALSE(f.store->history.Get("no-such-id", Direction::kIn).value().has_value());

  auto all = f.store->history.List({}).value();
  CHECK(all.size() == 2);
  ListFilter only_in;
  only_in.direction = Direction::kIn;
  auto in = f.store->history.List(only_in).value();
  REQUIRE(in.size() == 1);
  CHECK(in[0].message_id == two.in.message_id);
  CHECK(in[0].payload.empty());  // listings leave the blobs out
  ListFilter by_status;
  by_status.status = "OPPRETTET";
  CHECK(f.store->history.List(by_status).value().size() == 1);

  auto updates = f.store->history.IncomingUpdates().value();
  REQUIRE(updates.size() == 1);
  CHECK(updates[0].first == two.in.message_id);
  CHECK(updates[0].second > 0);
}

TEST_CASE("history store: statuses and conversations, filtered and paged", "[ip][store]") {
  Fixture f;
  Two two(f);
  REQUIRE(f.store->outgoing.ApplyStatus(two.out.message_id, wire::SENDT, "", NowMs()).ok());

  auto all = f.store->history.Statuses({}).value();
  CHECK(all.total == 3);  // OPPRETTET, SENDT, INNKOMMENDE_MOTTATT
  StatusQuery q;
  q.direction = Direction::kOut;
  q.newest_first = true;
  q.limit = 1;
  auto page = f.store->history.Statuses(q).value();
  CHECK(page.total == 2);
  REQUIRE(page.items.size() == 1);
  CHECK(page.items[0].status == "SENDT");
  CHECK(page.items[0].conversation_id == two.out.conversation_id);

  ConversationQuery c;
  c.orgnr = "0192:333333333";
  auto convs = f.store->history.Conversations(c).value();
  REQUIRE(convs.total == 1);
  CHECK(convs.items[0].message_id == two.in.message_id);
  ConversationQuery unfinished;
  unfinished.unfinished_only = true;
  CHECK(f.store->history.Conversations(unfinished).value().total == 2);
  REQUIRE(f.store->outgoing.ApplyStatus(two.out.message_id, wire::FEIL, "x", NowMs()).ok());
  CHECK(f.store->history.Conversations(unfinished).value().total == 1);
}

TEST_CASE("history store: counts for health and metrics", "[ip][store]") {
  Fixture f;
  Two two(f);
  MessageRow fresh = Row();
  REQUIRE(f.store->outgoing.CreateOutgoing(fresh).ok());
  auto counts = f.store->history.CountByStatus().value();
  int64_t opprettet = 0, mottatt = 0;
  for (const auto& c : counts) {
    if (c.direction == Direction::kOut && c.status == "OPPRETTET") opprettet = c.count;
    if (c.direction == Direction::kIn && c.status == "INNKOMMENDE_MOTTATT") mottatt = c.count;
  }
  CHECK(opprettet == 2);
  CHECK(mottatt == 1);
  CHECK(f.store->history.PendingReportCount().value() == 1);
  auto queue = f.store->history.OutgoingQueue().value();
  REQUIRE(queue.size() == 1);
  CHECK(queue[0].receiver == two.out.receiver);
  CHECK(queue[0].count == 2);  // the new one and the sealed one
}

TEST_CASE("point db: read-only opening neither creates, migrates nor writes", "[ip][store]") {
  test::TempDir dir;
  CHECK_FALSE(PointStore::OpenReadOnly(dir / "missing.db").ok());
  CHECK_FALSE(std::ifstream(dir / "missing.db").good());
  {
    auto empty = storage::Db::Open(dir / "other.db");  // a SQLite file of another schema
    REQUIRE(empty.ok());
  }
  auto other = PointStore::OpenReadOnly(dir / "other.db");
  REQUIRE_FALSE(other.ok());
  CHECK(other.status().code() == Code::kUnsupported);

  Fixture f;
  Two two(f);
  auto reader = PointStore::OpenReadOnly(f.path);
  REQUIRE(reader.ok());
  CHECK((*reader)->history.List({}).value().size() == 2);
  CHECK_FALSE((*reader)->outgoing.CreateOutgoing(Row()).ok());
}

TEST_CASE("point db: a turn's writes are one transaction, rolled back or committed",
          "[ip][store]") {
  Fixture f;
  auto reader = PointStore::OpenReadOnly(f.path).value();
  REQUIRE(f.store->point->BeginTurn().ok());
  CHECK(f.store->point->InTurn());
  MessageRow a = Row();
  REQUIRE(f.store->outgoing.CreateOutgoing(a).ok());
  CHECK_FALSE(
      reader->history.HasMessage(a.message_id, Direction::kOut).value());  // not committed yet
  f.store->point->RollbackTurn();
  CHECK_FALSE(f.store->point->InTurn());
  CHECK_FALSE(f.store->outgoing.Has(a.message_id).value());

  REQUIRE(f.store->point->BeginTurn().ok());
  REQUIRE(f.store->outgoing.CreateOutgoing(a).ok());
  // A failing operation inside undoes only itself.
  CHECK(f.store->outgoing.CreateOutgoing(a).code() == Code::kAlreadyExists);
  REQUIRE(f.store->point->CommitTurn().ok());
  CHECK(reader->history.HasMessage(a.message_id, Direction::kOut).value());
  CHECK(f.store->point->CommitTurn().ok());  // without a turn: nothing to do
}

TEST_CASE("point db: the store checkpoints its own WAL", "[ip][store]") {
  Fixture f;
  REQUIRE(f.store->point->BeginTurn().ok());
  for (int i = 0; i < 50; ++i) REQUIRE(f.store->outgoing.CreateOutgoing(Row()).ok());
  REQUIRE(f.store->point->CommitTurn().ok());
  // The first commit of a turn truncates the WAL: its pages are in the database file.
  struct stat wal {};
  REQUIRE(::stat((f.path + "-wal").c_str(), &wal) == 0);
  CHECK(wal.st_size == 0);
  auto reader = PointStore::OpenReadOnly(f.path).value();
  CHECK(reader->history.List({}).value().size() == 50);
}

}  // namespace
}  // namespace bud::ip
