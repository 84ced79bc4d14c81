// The broker's store on a real SQLite file: the durability settings every ACCEPTED relies on,
// and group commits of submits, reports and status acks.
#include "broker/store.h"

#include <catch2/catch.hpp>

#include "common/clock.h"
#include "common/uuid.h"
#include "tests/support/temp_dir.h"

namespace bud::broker {
namespace {

int64_t Pragma(Store& store, const char* sql) {
  auto st = store.db().Prepare(sql);
  REQUIRE(st.ok());
  auto row = (*st)->Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  const int64_t v = (*st)->Int(0);
  (*st)->Reset();
  return v;
}

std::string PragmaText(Store& store, const char* sql) {
  auto st = store.db().Prepare(sql);
  REQUIRE(st.ok());
  auto row = (*st)->Step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  std::string v = (*st)->Text(0);
  (*st)->Reset();
  return v;
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
  auto store = Store::Open(dir / "broker.db");
  REQUIRE(store.ok());
  CHECK(Pragma(**store, "PRAGMA synchronous") == 2);  // FULL
  CHECK(PragmaText(**store, "PRAGMA journal_mode") == "wal");
}

TEST_CASE("status acks are committed with the batch, and only the owner's ack deletes a notice",
          "[broker]") {
  test::TempDir dir;
  auto opened = Store::Open(dir / "broker.db");
  REQUIRE(opened.ok());
  Store& store = **opened;
  const std::string id = NewUuid();
  std::vector<SubmitItem> submits = {Item(id)};
  std::vector<ReportItem> none;
  REQUIRE(store.CommitBatch(submits, none).ok());
  CHECK(*store.QueuedCount() == 1);

  ReportItem r;
  r.reporter = "0192:910075918";
  r.message_id = id;
  r.status = wire::MOTTATT;
  std::vector<ReportItem> reports = {r};
  std::vector<SubmitItem> no_submits;
  REQUIRE(store.CommitBatch(no_submits, reports).ok());
  CHECK(*store.QueuedCount() == 0);
  CHECK(reports[0].notify_org == "0192:910076787");
  auto notices = store.NoticesFor("0192:910076787", 0, 10);
  REQUIRE(notices.ok());
  REQUIRE(notices->size() == 1);
  const int64_t notice = notices->front().notice_id;

  // Someone else's ack is ignored; the sender's own deletes it.
  REQUIRE(store.CommitBatch(no_submits, none, {{"0192:910075918", notice}}).ok());
  CHECK(store.NoticesFor("0192:910076787", 0, 10)->size() == 1);
  REQUIRE(store.CommitBatch(no_submits, none, {{"0192:910076787", notice}}).ok());
  CHECK(store.NoticesFor("0192:910076787", 0, 10)->empty());
}

}  // namespace bud::broker
