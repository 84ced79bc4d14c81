// The broker store's conformance suite: what every QueueStore engine must do (dedup, conflicts,
// caps, reports and notices, attempts, expiry, pruning, uploads, statistics, quota, and
// durability across a reopen), written once over the interface (broker/queue_store.h) and run
// against each engine on a real database: a SQLite file in a temp dir, and a database of its own on
// a real PostgreSQL 15 server started by the test (tests/support/postgres.h; tag [pg]).
//
// A StoreEnv is one empty store of one engine for one check: Open() opens it; opening it again
// after the previous one was destroyed is a restart. Each check runs in a section of its own,
// on a fresh env.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <map>
#include <random>
#include <set>

#include "broker/pg_queue_store.h"
#include "broker/queue_store.h"
#include "broker/sqlite_queue_store.h"
#include "common/clock.h"
#include "common/uuid.h"
#include "tests/support/postgres.h"
#include "tests/support/temp_dir.h"

namespace bud::broker {
namespace {

constexpr const char* kA = "0192:910076787";
constexpr const char* kB = "0192:910075918";
constexpr const char* kC = "0192:991825827";

class StoreEnv {
 public:
  virtual ~StoreEnv() = default;
  virtual std::unique_ptr<QueueStore> Open() = 0;
};

class SqliteEnv final : public StoreEnv {
 public:
  std::unique_ptr<QueueStore> Open() override {
    auto store = SqliteQueueStore::Open(dir_ / "broker.db");
    INFO(store.status().ToString());
    REQUIRE(store.ok());
    return std::move(*store);
  }

 private:
  test::TempDir dir_;
};

// One server for the whole run; a new database for each env.
test::PostgresServer& Postgres() {
  static test::PostgresServer server;
  return server;
}

class PgEnv final : public StoreEnv {
 public:
  PgEnv() {
    static int n = 0;
    database_ = fmt::format("conformance_{}", ++n);
    Postgres().AdminExec(fmt::format("CREATE DATABASE {} OWNER {}", database_, Postgres().User()));
  }
  std::unique_ptr<QueueStore> Open() override {
    storage::pg::ConnectOptions options;
    options.conninfo = Postgres().ConnString(database_);
    options.password_file = Postgres().PasswordFile();
    auto store = PgQueueStore::Open(options);
    INFO(store.status().ToString());
    REQUIRE(store.ok());
    return std::move(*store);
  }

 private:
  std::string database_;
};

SubmitItem Item(const std::string& sender = kA, const std::string& receiver = kB,
                std::string id = NewUuid(), int64_t expires_ms = NowMs() + 3600 * 1000) {
  SubmitItem s;
  s.message_id = std::move(id);
  s.sender = sender;
  s.receiver = receiver;
  s.envelope = "envelope bytes of " + s.message_id;
  s.expires_ms = expires_ms;
  return s;
}

ReportItem Report(const std::string& reporter, const std::string& id, MsgStatus status,
                  const std::string& reason = "") {
  ReportItem r;
  r.reporter = reporter;
  r.message_id = id;
  r.status = status;
  r.reason = reason;
  return r;
}

void Commit(QueueStore& store, std::vector<SubmitItem>& submits) {
  std::vector<ReportItem> none;
  auto r = store.CommitBatch(submits, none);
  INFO(r.status.ToString());
  REQUIRE(r.durable());
}

void Commit(QueueStore& store, std::vector<ReportItem>& reports,
            const std::vector<NoticeAck>& acks = {}) {
  std::vector<SubmitItem> none;
  auto r = store.CommitBatch(none, reports, acks);
  INFO(r.status.ToString());
  REQUIRE(r.durable());
}

std::vector<Queued> All(QueueStore& store, const std::string& receiver) {
  auto next = store.NextFor(receiver, 0, 100000);
  REQUIRE(next.ok());
  return std::move(*next);
}

std::vector<Notice> NoticesOf(QueueStore& store, const std::string& org) {
  auto n = store.NoticesFor(org, 0, 100000);
  REQUIRE(n.ok());
  return std::move(*n);
}

// A new id is stored once, with its envelope; the same id again (in the same batch or a later
// one) from the same sender is a duplicate, not stored twice.
void Dedup(StoreEnv& env) {
  auto store = env.Open();
  const std::string id = NewUuid();
  std::vector<SubmitItem> batch = {Item(kA, kB, id), Item(kA, kB, id)};
  Commit(*store, batch);
  CHECK_FALSE(batch[0].duplicate);
  CHECK(batch[1].duplicate);
  CHECK_FALSE(batch[1].conflict);
  std::vector<SubmitItem> again = {Item(kA, kB, id)};
  Commit(*store, again);
  CHECK(again[0].duplicate);
  CHECK_FALSE(again[0].conflict);
  CHECK(*store->QueuedCount() == 1);
  CHECK(*store->IsKnown(id));
  CHECK(*store->IsQueued(id));
  CHECK_FALSE(*store->IsKnown(NewUuid()));
  auto q = All(*store, kB);
  REQUIRE(q.size() == 1);
  CHECK(q[0].message_id == id);
  CHECK(q[0].envelope == "envelope bytes of " + id);
  // Delivered and gone from the queue, the id is still known: a resubmission is a duplicate.
  std::vector<ReportItem> done = {Report(kB, id, wire::MOTTATT)};
  Commit(*store, done);
  CHECK_FALSE(*store->IsQueued(id));
  CHECK(*store->IsKnown(id));
  std::vector<SubmitItem> late = {Item(kA, kB, id)};
  Commit(*store, late);
  CHECK(late[0].duplicate);
  CHECK(*store->QueuedCount() == 0);
}

// An id already used by one sender is refused to another (conflict), before or after delivery;
// the first sender's message is untouched.
void ConflictWithAnotherSender(StoreEnv& env) {
  auto store = env.Open();
  const std::string id = NewUuid();
  std::vector<SubmitItem> first = {Item(kA, kB, id)};
  Commit(*store, first);
  SubmitItem other = Item(kC, kB, id);
  other.envelope = "another envelope";
  std::vector<SubmitItem> second = {other};
  Commit(*store, second);
  CHECK(second[0].duplicate);
  CHECK(second[0].conflict);
  // Again, now that both organisations have sent before (PostgreSQL then takes the batch in one
  // statement), beside a new message from the same sender.
  std::vector<SubmitItem> third = {Item(kC, kB, id), Item(kC, kB)};
  Commit(*store, third);
  CHECK(third[0].duplicate);
  CHECK(third[0].conflict);
  CHECK_FALSE(third[1].duplicate);
  CHECK(*store->IsQueued(third[1].message_id));
  auto q = All(*store, kB);
  REQUIRE(q.size() == 2);
  CHECK(q[0].envelope == "envelope bytes of " + id);
  // Inside one batch too.
  const std::string id2 = NewUuid();
  std::vector<SubmitItem> mixed = {Item(kA, kC, id2), Item(kB, kC, id2)};
  Commit(*store, mixed);
  CHECK_FALSE(mixed[0].duplicate);
  CHECK(mixed[1].conflict);
  CHECK(All(*store, kC).size() == 1);
}

// (Moved from streams_test.cc.) Beyond a cap a new message is refused with the cap's name; a
// known id is still a duplicate; a delivery makes room; the counts survive a reopen.
void Caps(StoreEnv& env) {
  auto opened = env.Open();
  QueueStore& store = *opened;
  store.SetQueueCaps({/*per_receiver=*/3, /*per_sender=*/2});
  std::vector<SubmitItem> batch = {Item(kA), Item(kA), Item(kA), Item(kC), Item(kC)};
  std::vector<ReportItem> none;
  REQUIRE(store.CommitBatch(batch, none).ok());
  CHECK(batch[0].refused.empty());
  CHECK(batch[1].refused.empty());
  CHECK_THAT(batch[2].refused, Catch::Contains("max_queued_per_sender"));
  CHECK(batch[3].refused.empty());
  CHECK_THAT(batch[4].refused, Catch::Contains("max_queued_per_receiver"));
  CHECK(*store.QueuedCount() == 3);
  CHECK_FALSE(store.QueueRoom(kC, kB).empty());
  CHECK_FALSE(*store.IsKnown(batch[2].message_id));  // a refused id is not taken

  std::vector<SubmitItem> again = {batch[0]};
  REQUIRE(store.CommitBatch(again, none).ok());
  CHECK(again[0].refused.empty());
  CHECK(again[0].duplicate);

  ReportItem r = Report(kB, batch[0].message_id, wire::MOTTATT);
  std::vector<ReportItem> reports = {r};
  std::vector<SubmitItem> no_submits;
  REQUIRE(store.CommitBatch(no_submits, reports).ok());
  CHECK(store.QueueRoom(kA, kB).empty());
  opened.reset();
  auto reopened = env.Open();
  reopened->SetQueueCaps({3, 2});
  CHECK(reopened->QueueRoom(kA, kB).empty());
  std::vector<SubmitItem> more = {Item(kA), Item(kA)};
  REQUIRE(reopened->CommitBatch(more, none).ok());
  CHECK(more[0].refused.empty());
  CHECK_FALSE(more[1].refused.empty());

  // One place left under each cap: known ids (one delivered, one queued) in front of a new one
  // are duplicates and do not take its room.
  std::vector<ReportItem> delivered = {Report(kB, more[0].message_id, wire::MOTTATT)};
  REQUIRE(reopened->CommitBatch(no_submits, delivered).ok());
  std::vector<SubmitItem> mixed = {more[0], batch[1], Item(kA)};
  REQUIRE(reopened->CommitBatch(mixed, none).ok());
  CHECK(mixed[0].duplicate);
  CHECK(mixed[1].duplicate);
  CHECK(mixed[2].refused.empty());
  CHECK_FALSE(mixed[2].duplicate);
  CHECK(*reopened->IsQueued(mixed[2].message_id));
  CHECK(*reopened->QueuedCount() == 3);
  CHECK_FALSE(reopened->QueueRoom(kA, kB).empty());
}

// (Moved from store_test.cc.) Status acks are committed with the batch, and only the owner's ack
// deletes a notice.
void NoticeAcks(StoreEnv& env) {
  auto opened = env.Open();
  QueueStore& store = *opened;
  const std::string id = NewUuid();
  std::vector<SubmitItem> submits = {Item(kA, kB, id)};
  std::vector<ReportItem> none;
  REQUIRE(store.CommitBatch(submits, none).ok());
  CHECK(*store.QueuedCount() == 1);

  std::vector<ReportItem> reports = {Report(kB, id, wire::MOTTATT)};
  std::vector<SubmitItem> no_submits;
  REQUIRE(store.CommitBatch(no_submits, reports).ok());
  CHECK(*store.QueuedCount() == 0);
  CHECK(reports[0].notify_mailbox == kA);
  auto notices = store.NoticesFor(kA, 0, 10);
  REQUIRE(notices.ok());
  REQUIRE(notices->size() == 1);
  const int64_t notice = notices->front().notice_id;

  // Someone else's ack is ignored; the sender's own deletes it.
  REQUIRE(store.CommitBatch(no_submits, none, {{kB, notice}}).ok());
  CHECK(store.NoticesFor(kA, 0, 10)->size() == 1);
  REQUIRE(store.CommitBatch(no_submits, none, {{kA, notice}}).ok());
  CHECK(store.NoticesFor(kA, 0, 10)->empty());

  // Several acks in one batch: each deletes only its own organisation's notice.
  std::vector<std::string> ids = {NewUuid(), NewUuid(), NewUuid()};
  std::vector<SubmitItem> three = {Item(kA, kB, ids[0]), Item(kA, kB, ids[1]),
                                   Item(kA, kB, ids[2])};
  REQUIRE(store.CommitBatch(three, none).ok());
  std::vector<ReportItem> done = {Report(kB, ids[0], wire::MOTTATT),
                                  Report(kB, ids[1], wire::MOTTATT),
                                  Report(kB, ids[2], wire::MOTTATT)};
  REQUIRE(store.CommitBatch(no_submits, done).ok());
  auto pending = store.NoticesFor(kA, 0, 10);
  REQUIRE(pending.ok());
  REQUIRE(pending->size() == 3);
  const int64_t n0 = (*pending)[0].notice_id, n1 = (*pending)[1].notice_id,
                n2 = (*pending)[2].notice_id;
  REQUIRE(store.CommitBatch(no_submits, none, {{kA, n0}, {kB, n1}, {kA, n2}}).ok());
  auto left = store.NoticesFor(kA, 0, 10);
  REQUIRE(left.ok());
  REQUIRE(left->size() == 1);
  CHECK(left->front().notice_id == n1);
}

// Reports: only the receiver may report, an unknown id is refused, the first report of a status
// makes one notice for the sender (a repeat makes none), MOTTATT and final statuses end the
// queued copy, others leave it queued; notices come in order, with their fields.
void ReportsAndNotices(StoreEnv& env) {
  auto store = env.Open();
  const std::string id = NewUuid(), other = NewUuid();
  std::vector<SubmitItem> submits = {Item(kA, kB, id), Item(kA, kB, other)};
  Commit(*store, submits);

  std::vector<ReportItem> reports = {Report(kC, id, wire::MOTTATT),
                                     Report(kB, NewUuid(), wire::MOTTATT),
                                     Report(kB, other, wire::LEVERT, "archived"),
                                     Report(kB, id, wire::MOTTATT)};
  reports[3].at_ms = 1234;
  Commit(*store, reports);
  CHECK(reports[0].result.code() == Code::kInvalidArgument);
  CHECK(reports[0].notify_mailbox.empty());
  CHECK(reports[1].result.code() == Code::kNotFound);
  CHECK(reports[2].result.ok());
  CHECK(reports[2].notify_mailbox == kA);
  CHECK(reports[3].result.ok());
  CHECK(reports[3].notify_mailbox == kA);
  CHECK_FALSE(*store->IsQueued(id));
  CHECK(*store->IsQueued(other));  // LEVERT alone does not end the delivery

  auto notices = NoticesOf(*store, kA);
  REQUIRE(notices.size() == 2);
  CHECK(notices[0].message_id == other);
  CHECK(notices[0].status == wire::LEVERT);
  CHECK(notices[0].reason == "archived");
  CHECK(notices[1].message_id == id);
  CHECK(notices[1].status == wire::MOTTATT);
  CHECK(notices[1].at_ms == 1234);
  CHECK(notices[0].notice_id < notices[1].notice_id);
  CHECK(store->NoticesFor(kA, notices[0].notice_id, 10)->size() == 1);
  CHECK(NoticesOf(*store, kB).empty());

  // The same report again: applied, no second notice.
  std::vector<ReportItem> repeat = {Report(kB, id, wire::MOTTATT)};
  Commit(*store, repeat);
  CHECK(repeat[0].result.ok());
  CHECK(repeat[0].notify_mailbox.empty());
  CHECK(NoticesOf(*store, kA).size() == 2);
  // FEIL ends the other one.
  std::vector<ReportItem> feil = {Report(kB, other, wire::FEIL, "cannot archive")};
  Commit(*store, feil);
  CHECK(*store->QueuedCount() == 0);
  CHECK(NoticesOf(*store, kA).size() == 3);
}

// The queue: per receiver, in commit order, from after_seq, at most `limit`; BySeq finds a
// queued copy and nothing once it left.
void QueueOrder(StoreEnv& env) {
  auto store = env.Open();
  std::vector<SubmitItem> batch;
  for (int i = 0; i < 5; ++i) batch.push_back(Item(kA, i % 2 ? kC : kB));
  Commit(*store, batch);
  std::vector<SubmitItem> later = {Item(kA, kB)};
  Commit(*store, later);
  auto b = All(*store, kB);
  REQUIRE(b.size() == 4);
  CHECK(b[0].message_id == batch[0].message_id);
  CHECK(b[1].message_id == batch[2].message_id);
  CHECK(b[2].message_id == batch[4].message_id);
  CHECK(b[3].message_id == later[0].message_id);
  for (size_t i = 1; i < b.size(); ++i) CHECK(b[i - 1].seq < b[i].seq);
  auto page = store->NextFor(kB, b[0].seq, 2);
  REQUIRE(page.ok());
  REQUIRE(page->size() == 2);
  CHECK((*page)[0].seq == b[1].seq);
  CHECK(All(*store, kC).size() == 2);
  CHECK(All(*store, kA).empty());
  auto one = store->BySeq(b[1].seq);
  REQUIRE(one.ok());
  REQUIRE(one->has_value());
  CHECK((*one)->message_id == b[1].message_id);
  CHECK((*one)->envelope == "envelope bytes of " + b[1].message_id);
  std::vector<ReportItem> done = {Report(kB, b[1].message_id, wire::MOTTATT)};
  Commit(*store, done);
  auto gone = store->BySeq(b[1].seq);
  REQUIRE(gone.ok());
  CHECK_FALSE(gone->has_value());
  auto none = store->BySeq(b[3].seq + 1000);
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());
}

// Attempts are counted per queued message; at max_attempts the message ends FEIL for its sender.
void AttemptsAndExhausted(StoreEnv& env) {
  auto store = env.Open();
  const std::string tried = NewUuid(), fresh = NewUuid();
  std::vector<SubmitItem> submits = {Item(kA, kB, tried), Item(kC, kB, fresh)};
  Commit(*store, submits);
  CHECK(*store->Attempts(tried) == 0);
  REQUIRE(store->AddAttempts({tried}).ok());
  REQUIRE(store->AddAttempts({tried, NewUuid()}).ok());  // an unknown id changes nothing
  CHECK(*store->Attempts(tried) == 2);
  CHECK(*store->Attempts(fresh) == 0);
  CHECK(store->Attempts(NewUuid()).status().code() == Code::kNotFound);
  auto stats = store->Stats();
  REQUIRE(stats.ok());
  REQUIRE(stats->receivers.size() == 1);
  CHECK(stats->receivers[0].retried == 1);
  CHECK(stats->receivers[0].max_attempts == 2);

  auto none = store->FailExhausted(3, NowMs());
  REQUIRE(none.ok());
  CHECK(none->empty());
  auto failed = store->FailExhausted(2, NowMs());
  REQUIRE(failed.ok());
  REQUIRE(failed->size() == 1);
  CHECK((*failed)[0].message_id == tried);
  CHECK((*failed)[0].sender == kA);
  CHECK((*failed)[0].receiver == kB);
  CHECK_FALSE(*store->IsQueued(tried));
  CHECK(*store->IsQueued(fresh));
  auto notices = NoticesOf(*store, kA);
  REQUIRE(notices.size() == 1);
  CHECK(notices[0].status == wire::FEIL);
  CHECK_THAT(notices[0].reason, Catch::Contains("after 2 attempts"));
  // The count of queued messages for the caps follows.
  store->SetQueueCaps({1, 0});
  CHECK_FALSE(store->QueueRoom(kA, kB).empty());
}

// Expired messages go with a LEVETID_UTLOPT notice for their sender, oldest first, `limit` at a
// time; unexpired ones stay.
void Expiry(StoreEnv& env) {
  auto store = env.Open();
  const int64_t now = NowMs();
  std::vector<SubmitItem> submits = {Item(kA, kB, NewUuid(), now + 2000),
                                     Item(kC, kB, NewUuid(), now + 1000),
                                     Item(kA, kC, NewUuid(), now + 3600 * 1000)};
  Commit(*store, submits);
  auto nothing = store->ExpireDue(now, 10);
  REQUIRE(nothing.ok());
  CHECK(nothing->empty());
  auto first = store->ExpireDue(now + 5000, 1);
  REQUIRE(first.ok());
  REQUIRE(first->size() == 1);
  CHECK((*first)[0].message_id == submits[1].message_id);
  CHECK((*first)[0].sender == kC);
  auto second = store->ExpireDue(now + 5000, 10);
  REQUIRE(second.ok());
  REQUIRE(second->size() == 1);
  CHECK((*second)[0].message_id == submits[0].message_id);
  CHECK(*store->QueuedCount() == 1);
  auto to_c = NoticesOf(*store, kC);
  REQUIRE(to_c.size() == 1);
  CHECK(to_c[0].status == wire::LEVETID_UTLOPT);
  CHECK(to_c[0].message_id == submits[1].message_id);
  CHECK_THAT(to_c[0].reason, Catch::Contains("before it expired"));
  CHECK(NoticesOf(*store, kA).size() == 1);
  // An expired id is still known: a resubmission is a duplicate.
  std::vector<SubmitItem> again = {submits[0]};
  Commit(*store, again);
  CHECK(again[0].duplicate);
}

// (Moved from streams_test.cc.) seen and reports are pruned after the retention window, never
// while the message is queued or being uploaded.
void Prune(StoreEnv& env) {
  auto opened = env.Open();
  QueueStore& store = *opened;
  std::vector<SubmitItem> submits = {Item(kA), Item(kA), Item(kA), Item(kA)};
  Commit(store, submits);
  std::vector<ReportItem> reports;
  for (size_t i = 0; i < 3; ++i) reports.push_back(Report(kB, submits[i].message_id, wire::MOTTATT));
  Commit(store, reports);
  CHECK(store.Stats()->reports == 3);
  // The third is delivered but its upload row is still there (a hand-over not yet finished).
  REQUIRE(store.InsertUpload({submits[2].message_id, kA, kB, "head", 2, NowMs() + 60000}).ok());

  // Within the window nothing goes.
  CHECK(*store.PruneHistory(NowMs() - 60000, 1000) == 0);
  // After it, the delivered ids go with their reports; the queued one and the uploading one stay.
  auto pruned = store.PruneHistory(NowMs() + 1, 1000);
  REQUIRE(pruned.ok());
  CHECK(*pruned == 2);
  auto stats = store.Stats();
  REQUIRE(stats.ok());
  CHECK(stats->seen_ids == 2);
  CHECK(stats->reports == 1);
  CHECK(*store.QueuedCount() == 1);
  CHECK_FALSE(*store.IsKnown(submits[0].message_id));
  CHECK(*store.IsKnown(submits[3].message_id));
  REQUIRE(store.DeleteUploads({submits[2].message_id}).ok());
  CHECK(*store.PruneHistory(NowMs() + 1, 1) == 1);
  CHECK(*store.PruneHistory(NowMs() + 1, 1000) == 0);
  CHECK(store.Stats()->reports == 0);
}

// Upload rows: inserted once, positions set in one unit, deleted, and all of it across a reopen.
void Uploads(StoreEnv& env) {
  const std::string a = NewUuid(), b = NewUuid();
  const std::string head_a = std::string("head\0with\xff bytes", 16);
  {
    auto store = env.Open();
    CHECK(store->LoadUploads()->empty());
    REQUIRE(store->InsertUpload({a, kA, kB, head_a, 0, 1111}).ok());
    REQUIRE(store->InsertUpload({b, kC, kB, "head b", 0, 2222}).ok());
    auto dup = store->InsertUpload({a, kC, kB, "other", 0, 1});
    CHECK(dup.code() == Code::kAlreadyExists);
    REQUIRE(store->SetUploadPositions({{a, 3}, {b, 7}}).ok());
    REQUIRE(store->SetUploadPositions({{a, 5}}).ok());
    REQUIRE(store->SetUploadPositions({}).ok());
    CHECK(store->Stats()->uploads == 2);
  }
  auto store = env.Open();
  auto rows = store->LoadUploads();
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 2);
  std::map<std::string, UploadRow> by_id;
  for (auto& r : *rows) by_id[r.message_id] = r;
  CHECK(by_id[a].sender == kA);
  CHECK(by_id[a].receiver == kB);
  CHECK(by_id[a].head == head_a);
  CHECK(by_id[a].next_chunk == 5);
  CHECK(by_id[a].expires_ms == 1111);
  CHECK(by_id[b].next_chunk == 7);
  CHECK(by_id[b].head == "head b");
  // One row by its id, as LoadUploads has it; none for an id without an upload.
  auto one = store->FindUpload(a);
  REQUIRE(one.ok());
  REQUIRE(one->has_value());
  CHECK((*one)->message_id == a);
  CHECK((*one)->sender == kA);
  CHECK((*one)->receiver == kB);
  CHECK((*one)->head == head_a);
  CHECK((*one)->next_chunk == 5);
  CHECK((*one)->expires_ms == 1111);
  CHECK_FALSE(store->FindUpload(NewUuid())->has_value());
  REQUIRE(store->DeleteUploads({a, NewUuid()}).ok());
  CHECK_FALSE(store->FindUpload(a)->has_value());
  REQUIRE(store->LoadUploads()->size() == 1);
  REQUIRE(store->DeleteUploads({}).ok());
  CHECK(store->Stats()->uploads == 1);
  // An upload is not a message: its id is not known, nothing is queued.
  CHECK_FALSE(*store->IsKnown(b));
  CHECK(*store->QueuedCount() == 0);
}

// Stats: per receiver and per sender, totals, history counts only when asked.
void Statistics(StoreEnv& env) {
  auto store = env.Open();
  const int64_t before = NowMs();
  std::vector<SubmitItem> submits = {Item(kA, kB), Item(kA, kB), Item(kA, kB), Item(kB, kC)};
  submits[0].envelope = std::string(100, 'x');
  submits[1].envelope = std::string(200, 'x');
  submits[2].envelope = std::string(300, 'x');
  submits[3].envelope = std::string(50, 'x');
  Commit(*store, submits);
  const int64_t after = NowMs();
  std::vector<ReportItem> reports = {Report(kB, submits[2].message_id, wire::MOTTATT)};
  Commit(*store, reports);
  REQUIRE(store->AddAttempts({submits[1].message_id}).ok());
  auto stats = store->Stats();
  REQUIRE(stats.ok());
  CHECK(stats->schema_version > 0);
  REQUIRE(stats->receivers.size() == 2);
  CHECK(stats->receivers[0].receiver == kB);
  CHECK(stats->receivers[0].queued == 2);
  CHECK(stats->receivers[0].bytes == 300);
  CHECK(stats->receivers[0].retried == 1);
  CHECK(stats->receivers[0].max_attempts == 1);
  CHECK(stats->receivers[0].oldest_received_ms >= before);
  CHECK(stats->receivers[0].oldest_received_ms <= after);
  CHECK(stats->receivers[1].receiver == kC);
  CHECK(stats->receivers[1].bytes == 50);
  REQUIRE(stats->senders.size() == 1);
  CHECK(stats->senders[0].sender == kA);
  CHECK(stats->senders[0].pending == 1);
  CHECK(stats->queued == 3);
  CHECK(stats->bytes == 350);
  CHECK(stats->notices == 1);
  CHECK(stats->seen_ids == 4);
  CHECK(stats->reports == 1);
  auto quick = store->Stats(/*count_history=*/false);
  REQUIRE(quick.ok());
  CHECK(quick->seen_ids == -1);
  CHECK(quick->reports == -1);
  CHECK(quick->queued == 3);
  CHECK(*store->QueuedCount() == 3);
  CHECK_FALSE(store->Describe().empty());
}

// The quota: BytesUsed counts what the store holds; beyond LimitBytes a commit fails as on a full
// disk (kDiskFull), and nothing of its batch is stored; reports still go through.
void Quota(StoreEnv& env) {
  auto store = env.Open();
  auto empty = store->BytesUsed();
  REQUIRE(empty.ok());
  CHECK(*empty > 0);
  std::vector<SubmitItem> warmup = {Item(kA, kB)};
  Commit(*store, warmup);
  REQUIRE(store->LimitBytes(*store->BytesUsed()).ok());
  SubmitItem big = Item(kA, kB);
  // Bytes no engine compresses away.
  std::mt19937_64 rng(7);
  big.envelope.resize(4 << 20);
  for (auto& c : big.envelope) c = static_cast<char>(rng());
  std::vector<SubmitItem> batch = {Item(kA, kB), big};
  std::vector<ReportItem> none;
  auto full = store->CommitBatch(batch, none);
  CHECK(full.outcome == CommitOutcome::kFailed);
  CHECK(full.status.code() == Code::kDiskFull);
  CHECK(*store->QueuedCount() == 1);
  CHECK_FALSE(*store->IsKnown(batch[0].message_id));
  std::vector<ReportItem> reports = {Report(kB, warmup[0].message_id, wire::MOTTATT)};
  std::vector<SubmitItem> no_submits;
  auto freed = store->CommitBatch(no_submits, reports);
  INFO(freed.status.ToString());
  CHECK(freed.durable());
  CHECK(*store->QueuedCount() == 0);
  REQUIRE(store->LimitBytes(int64_t{1} << 40).ok());
  std::vector<SubmitItem> fits = {big};
  Commit(*store, fits);
  CHECK(*store->QueuedCount() == 1);
  CHECK(*store->BytesUsed() > 4 << 20);
}

// Durability across a restart (Redpanda's kvstore test): random batches of submits, duplicates,
// reports, acks and attempts against a truth kept here; the store closed, reopened and compared
// with the truth; seq is never handed out again after the reopen.
void ReopenAndCompare(StoreEnv& env) {
  std::mt19937 rng(20261203);
  const std::vector<std::string> orgs = {kA, kB, kC};
  struct Truth {
    std::string sender, receiver, envelope;
    bool queued = true;
    int64_t attempts = 0;
  };
  std::map<std::string, Truth> truth;
  std::map<std::string, size_t> notices_of;  // notices each org should still have
  int64_t max_seq = 0;
  for (int round = 0; round < 3; ++round) {
    auto store = env.Open();
    for (int b = 0; b < 20; ++b) {
      std::vector<SubmitItem> submits;
      for (int i = 0; i < 8; ++i) {
        if (!truth.empty() && rng() % 5 == 0) {
          auto it = std::next(truth.begin(), static_cast<long>(rng() % truth.size()));
          submits.push_back(Item(it->second.sender, it->second.receiver, it->first));
          continue;
        }
        SubmitItem s = Item(orgs[rng() % 3], orgs[rng() % 3]);
        s.envelope = std::string(rng() % 2000, static_cast<char>('a' + rng() % 26));
        submits.push_back(s);
      }
      std::vector<ReportItem> reports;
      for (auto& [id, t] : truth) {
        if (t.queued && rng() % 4 == 0) reports.push_back(Report(t.receiver, id, wire::MOTTATT));
      }
      std::vector<ReportItem> no_reports;
      auto r = store->CommitBatch(submits, reports);
      REQUIRE(r.durable());
      for (const auto& s : submits) {
        if (s.duplicate) continue;
        truth[s.message_id] = {s.sender, s.receiver, s.envelope};
      }
      for (const auto& rep : reports) {
        REQUIRE(rep.result.ok());
        auto& t = truth[rep.message_id];
        if (t.queued) {
          t.queued = false;
          ++notices_of[t.sender];
        }
      }
      // Attempts for a few queued ones.
      std::vector<std::string> tried;
      for (auto& [id, t] : truth) {
        if (t.queued && rng() % 6 == 0) {
          tried.push_back(id);
          ++t.attempts;
        }
      }
      REQUIRE(store->AddAttempts(tried).ok());
    }
    // Acks for half of one org's notices.
    auto pending = NoticesOf(*store, kA);
    std::vector<NoticeAck> acks;
    for (size_t i = 0; i < pending.size() / 2; ++i) acks.push_back({kA, pending[i].notice_id});
    std::vector<ReportItem> none;
    Commit(*store, none, acks);
    notices_of[kA] -= acks.size();
    for (const auto& org : orgs) {
      for (const auto& q : All(*store, org)) max_seq = std::max(max_seq, q.seq);
    }
  }
  auto store = env.Open();
  size_t queued = 0;
  for (const auto& org : orgs) {
    std::set<std::string> want;
    for (const auto& [id, t] : truth) {
      if (t.queued && t.receiver == org) want.insert(id);
    }
    queued += want.size();
    std::set<std::string> got;
    for (const auto& q : All(*store, org)) {
      got.insert(q.message_id);
      CHECK(q.envelope == truth[q.message_id].envelope);
    }
    CHECK(got == want);
    CHECK(NoticesOf(*store, org).size() == notices_of[org]);
  }
  CHECK(*store->QueuedCount() == static_cast<int64_t>(queued));
  for (const auto& [id, t] : truth) {
    CHECK(*store->IsKnown(id));
    CHECK(*store->IsQueued(id) == t.queued);
    if (t.queued) CHECK(*store->Attempts(id) == t.attempts);
  }
  auto stats = store->Stats();
  REQUIRE(stats.ok());
  CHECK(stats->seen_ids == static_cast<int64_t>(truth.size()));
  std::vector<SubmitItem> fresh = {Item(kA, kB)};
  Commit(*store, fresh);
  auto q = All(*store, kB);
  REQUIRE_FALSE(q.empty());
  CHECK(q.back().message_id == fresh[0].message_id);
  CHECK(q.back().seq > max_seq);
}

// A batch of only reports and acks, an empty batch, and a report for a message submitted in the
// same batch (applied after the submits).
void MixedBatch(StoreEnv& env) {
  auto store = env.Open();
  std::vector<SubmitItem> none;
  std::vector<ReportItem> no_reports;
  REQUIRE(store->CommitBatch(none, no_reports).durable());
  const std::string id = NewUuid();
  std::vector<SubmitItem> submits = {Item(kA, kB, id)};
  std::vector<ReportItem> reports = {Report(kB, id, wire::MOTTATT)};
  auto r = store->CommitBatch(submits, reports);
  REQUIRE(r.durable());
  CHECK_FALSE(submits[0].duplicate);
  CHECK(reports[0].result.ok());
  CHECK(*store->QueuedCount() == 0);
  CHECK(NoticesOf(*store, kA).size() == 1);
}

// A session lease: each take has a higher epoch and takes the lease over from a live holder;
// renewal tells a holder what it still holds; a release ends it, and the epoch still grows.
void SessionLeases(StoreEnv& env) {
  auto store = env.Open();
  auto first = store->TakeSession(kB, "broker-1", 60000);
  REQUIRE(first.ok());
  CHECK(first->previous_holder.empty());
  CHECK(first->epoch > 0);
  auto second = store->TakeSession(kB, "broker-2", 60000);
  REQUIRE(second.ok());
  CHECK(second->previous_holder == "broker-1");
  CHECK(second->epoch > first->epoch);
  auto held1 = store->RenewSessions("broker-1", 60000);
  REQUIRE(held1.ok());
  CHECK(held1->empty());
  auto held2 = store->RenewSessions("broker-2", 60000);
  REQUIRE(held2.ok());
  REQUIRE(held2->size() == 1);
  CHECK((*held2)[0] == std::make_pair(std::string(kB), second->epoch));
  // Another organisation's lease is apart.
  auto other = store->TakeSession(kA, "broker-1", 60000);
  REQUIRE(other.ok());
  CHECK(other->previous_holder.empty());
  held1 = store->RenewSessions("broker-1", 60000);
  REQUIRE(held1.ok());
  CHECK(held1->size() == 1);
  // A release by a holder that no longer holds it changes nothing.
  CHECK(store->ReleaseSession({kB, "broker-1", first->epoch}).ok());
  held2 = store->RenewSessions("broker-2", 60000);
  REQUIRE(held2.ok());
  CHECK(held2->size() == 1);
  CHECK(store->ReleaseSession({kB, "broker-2", second->epoch}).ok());
  held2 = store->RenewSessions("broker-2", 60000);
  REQUIRE(held2.ok());
  CHECK(held2->empty());
  auto third = store->TakeSession(kB, "broker-1", 60000);
  REQUIRE(third.ok());
  CHECK(third->previous_holder.empty());  // released: nothing taken over
  CHECK(third->epoch > second->epoch);
}

// Deliveries are claimed only under the current lease: a holder whose lease was taken over gets
// kConflict from both claims, and counts no attempt.
void ClaimsAreFenced(StoreEnv& env) {
  auto store = env.Open();
  std::vector<SubmitItem> batch = {Item(kA, kB)};
  Commit(*store, batch);
  auto old_lease = store->TakeSession(kB, "broker-1", 60000);
  REQUIRE(old_lease.ok());
  const LeaseRef old_ref{kB, "broker-1", old_lease->epoch};
  auto claimed = store->ClaimDeliveries(old_ref, {}, 10);
  REQUIRE(claimed.ok());
  REQUIRE(claimed->size() == 1);
  const int64_t seq = (*claimed)[0].seq;
  auto new_lease = store->TakeSession(kB, "broker-2", 60000);
  REQUIRE(new_lease.ok());
  auto fenced = store->ClaimDeliveries(old_ref, {}, 10);
  REQUIRE_FALSE(fenced.ok());
  CHECK(fenced.status().code() == Code::kConflict);
  auto fenced_again = store->ClaimRedelivery(old_ref, seq);
  REQUIRE_FALSE(fenced_again.ok());
  CHECK(fenced_again.status().code() == Code::kConflict);
  CHECK(*store->Attempts(batch[0].message_id) == 0);
  // The same holder with a stale epoch is fenced too.
  auto stale = store->ClaimDeliveries({kB, "broker-2", old_lease->epoch}, {}, 10);
  CHECK_FALSE(stale.ok());
  const LeaseRef new_ref{kB, "broker-2", new_lease->epoch};
  auto now_claimed = store->ClaimDeliveries(new_ref, {}, 10);
  REQUIRE(now_claimed.ok());
  CHECK(now_claimed->size() == 1);
  // Without any lease (never taken, or released), nothing.
  CHECK_FALSE(store->ClaimDeliveries({kC, "broker-2", 1}, {}, 10).ok());
  REQUIRE(store->ReleaseSession(new_ref).ok());
  CHECK_FALSE(store->ClaimDeliveries(new_ref, {}, 10).ok());
}

// A claim leaves out the seqs in flight (no cursor), so a message below them is still found; a
// redelivery counts an attempt; a message no longer queued is nullopt.
void ClaimsLeaveOutInFlight(StoreEnv& env) {
  auto store = env.Open();
  std::vector<SubmitItem> batch = {Item(kA, kB), Item(kA, kB), Item(kA, kB), Item(kA, kC)};
  Commit(*store, batch);
  auto lease = store->TakeSession(kB, "broker-1", 60000);
  REQUIRE(lease.ok());
  const LeaseRef ref{kB, "broker-1", lease->epoch};
  auto first = store->ClaimDeliveries(ref, {}, 2);
  REQUIRE(first.ok());
  REQUIRE(first->size() == 2);
  CHECK((*first)[0].message_id == batch[0].message_id);
  CHECK((*first)[1].message_id == batch[1].message_id);
  CHECK((*first)[0].envelope == batch[0].envelope);
  const int64_t s0 = (*first)[0].seq, s1 = (*first)[1].seq;
  auto rest = store->ClaimDeliveries(ref, {s0, s1}, 10);
  REQUIRE(rest.ok());
  REQUIRE(rest->size() == 1);
  CHECK((*rest)[0].message_id == batch[2].message_id);
  const int64_t s2 = (*rest)[0].seq;
  // Taken back (Defer) or a lower seq: found again when not in flight.
  auto again = store->ClaimDeliveries(ref, {s1, s2}, 10);
  REQUIRE(again.ok());
  REQUIRE(again->size() == 1);
  CHECK((*again)[0].seq == s0);
  auto none = store->ClaimDeliveries(ref, {s0, s1, s2}, 10);
  REQUIRE(none.ok());
  CHECK(none->empty());
  auto redelivery = store->ClaimRedelivery(ref, s1);
  REQUIRE(redelivery.ok());
  REQUIRE(redelivery->has_value());
  CHECK((*redelivery)->message_id == batch[1].message_id);
  CHECK(*store->Attempts(batch[1].message_id) == 1);
  std::vector<ReportItem> done = {Report(kB, batch[1].message_id, wire::MOTTATT)};
  Commit(*store, done);
  auto gone = store->ClaimRedelivery(ref, s1);
  REQUIRE(gone.ok());
  CHECK_FALSE(gone->has_value());
  auto left = store->ClaimDeliveries(ref, {}, 10);
  REQUIRE(left.ok());
  CHECK(left->size() == 2);
  // Another receiver's message is never claimed under this lease.
  for (const auto& q : *left) CHECK(q.message_id != batch[3].message_id);
}

// Message channels: a mailbox is (organisation, channel). The queue of each mailbox holds only
// the messages for its receiver_channel; notices go to the sender's mailbox; a report from
// another mailbox of the receiving organisation is refused; an ack from another mailbox deletes
// nothing; leases are per mailbox; dedup and conflicts stay per organisation; the statistics and
// the expiry name the mailboxes.
void MessageChannels(StoreEnv& env) {
  auto store = env.Open();
  const std::string a2 = MailboxKey(kA, "arkiv2");
  CHECK(a2 == std::string(kA) + "/arkiv2");
  CHECK(SplitMailboxKey(a2) == std::pair<std::string, std::string>(kA, "arkiv2"));
  CHECK(SplitMailboxKey(kA) == std::pair<std::string, std::string>(kA, ""));
  SubmitItem plain = Item(kA, kB), from_a2 = Item(kA, kB), to_a2 = Item(kB, kA),
             to_a = Item(kB, kA);
  from_a2.sender_channel = "arkiv2";
  to_a2.receiver_channel = "arkiv2";
  std::vector<SubmitItem> batch = {plain, from_a2, to_a2, to_a};
  Commit(*store, batch);
  for (const auto& item : batch) CHECK_FALSE(item.duplicate);
  auto ids = [](const std::vector<Queued>& q) {
    std::set<std::string> out;
    for (const auto& m : q) out.insert(m.message_id);
    return out;
  };
  CHECK(ids(All(*store, kA)) == std::set<std::string>{to_a.message_id});
  CHECK(ids(All(*store, a2)) == std::set<std::string>{to_a2.message_id});
  CHECK(ids(All(*store, kB)) == std::set<std::string>{plain.message_id, from_a2.message_id});
  CHECK(All(*store, MailboxKey(kB, "other")).empty());

  // Dedup and conflicts are per organisation: another point of A resubmitting is a duplicate.
  std::vector<SubmitItem> again = {from_a2};
  again[0].sender_channel.clear();
  Commit(*store, again);
  CHECK(again[0].duplicate);
  CHECK_FALSE(again[0].conflict);

  // Leases: one per mailbox, each claiming its own queue only.
  auto lease_a = store->TakeSession(kA, "broker-1", 60000);
  auto lease_a2 = store->TakeSession(a2, "broker-2", 60000);
  REQUIRE(lease_a.ok());
  REQUIRE(lease_a2.ok());
  CHECK(lease_a2->previous_holder.empty());  // A's lease is not A/arkiv2's
  auto claimed = store->ClaimDeliveries({a2, "broker-2", lease_a2->epoch}, {}, 10);
  REQUIRE(claimed.ok());
  CHECK(ids(*claimed) == std::set<std::string>{to_a2.message_id});
  auto claimed_a = store->ClaimDeliveries({kA, "broker-1", lease_a->epoch}, {}, 10);
  REQUIRE(claimed_a.ok());
  CHECK(ids(*claimed_a) == std::set<std::string>{to_a.message_id});

  // Reports: the notice goes to the sender's mailbox; only the message's own mailbox reports.
  std::vector<ReportItem> reports = {Report(kB, from_a2.message_id, wire::MOTTATT),
                                     Report(kA, to_a2.message_id, wire::MOTTATT)};
  Commit(*store, reports);
  CHECK(reports[0].result.ok());
  CHECK(reports[0].notify_mailbox == a2);
  CHECK_FALSE(reports[1].result.ok());
  CHECK_THAT(reports[1].result.message(), Catch::Contains(a2));
  CHECK(NoticesOf(*store, kA).empty());
  auto a2_notices = NoticesOf(*store, a2);
  REQUIRE(a2_notices.size() == 1);
  CHECK(a2_notices[0].message_id == from_a2.message_id);
  std::vector<ReportItem> right = {Report(kA, to_a2.message_id, wire::MOTTATT)};
  right[0].reporter_channel = "arkiv2";
  Commit(*store, right);
  CHECK(right[0].result.ok());
  CHECK(right[0].notify_mailbox == kB);
  CHECK(ids(All(*store, a2)).empty());

  // An ack from another mailbox of A deletes nothing; A/arkiv2's own does.
  std::vector<ReportItem> none;
  Commit(*store, none, {{kA, a2_notices[0].notice_id}});
  CHECK(NoticesOf(*store, a2).size() == 1);
  Commit(*store, none, {{a2, a2_notices[0].notice_id}});
  CHECK(NoticesOf(*store, a2).empty());

  // Statistics per receiver and channel, and per sender and channel.
  std::vector<SubmitItem> more = {Item(kB, kA), Item(kB, kA)};
  more[0].receiver_channel = "arkiv2";
  Commit(*store, more);
  auto stats = store->Stats();
  REQUIRE(stats.ok());
  std::map<std::pair<std::string, std::string>, int64_t> queued;
  for (const auto& r : stats->receivers) queued[{r.receiver, r.channel}] = r.queued;
  CHECK(queued[{kA, ""}] == 2);
  CHECK(queued[{kA, "arkiv2"}] == 1);
  CHECK(queued[{kB, ""}] == 1);  // `plain`
  std::map<std::pair<std::string, std::string>, int64_t> pending;
  for (const auto& n : stats->senders) pending[{n.sender, n.channel}] = n.pending;
  CHECK(pending[{kB, ""}] == 1);

  // Expiry names both mailboxes; the notice goes to the sender's.
  auto expired = store->ExpireDue(NowMs() + 2 * 3600 * 1000, 100);
  REQUIRE(expired.ok());
  std::map<std::string, Expired> by_id;
  for (const auto& e : *expired) by_id[e.message_id] = e;
  REQUIRE(by_id.contains(more[0].message_id));
  CHECK(by_id[more[0].message_id].receiver_mailbox == a2);
  CHECK(by_id[more[0].message_id].sender_mailbox == kB);
  REQUIRE(by_id.contains(more[1].message_id));
  CHECK(by_id[more[1].message_id].receiver_mailbox == kA);
  CHECK(by_id[plain.message_id].receiver_mailbox == kB);
  CHECK(by_id[plain.message_id].sender_mailbox == kA);
}

// Reachable and writable, as /health asks.
void Writable(StoreEnv& env) {
  auto store = env.Open();
  Status w = store->CheckWritable();
  INFO(w.ToString());
  CHECK(w.ok());
}

const std::vector<std::pair<const char*, void (*)(StoreEnv&)>> kChecks = {
    {"dedup", Dedup},
    {"conflict with another sender", ConflictWithAnotherSender},
    {"queue caps", Caps},
    {"notice acks", NoticeAcks},
    {"reports and notices", ReportsAndNotices},
    {"queue order, NextFor and BySeq", QueueOrder},
    {"attempts and exhausted", AttemptsAndExhausted},
    {"expiry", Expiry},
    {"prune history", Prune},
    {"uploads", Uploads},
    {"statistics", Statistics},
    {"quota", Quota},
    {"mixed batch", MixedBatch},
    {"reopen and compare", ReopenAndCompare},
    {"session leases", SessionLeases},
    {"claims are fenced by the lease", ClaimsAreFenced},
    {"claims leave out what is in flight", ClaimsLeaveOutInFlight},
    {"writable", Writable},
    {"message channels", MessageChannels},
};

}  // namespace

TEST_CASE("store conformance: SQLite", "[broker][store][conformance]") {
  for (const auto& [name, check] : kChecks) {
    DYNAMIC_SECTION(name) {
      SqliteEnv env;
      check(env);
    }
  }
}

TEST_CASE("store conformance: PostgreSQL", "[broker][store][conformance][pg]") {
  for (const auto& [name, check] : kChecks) {
    DYNAMIC_SECTION(name) {
      PgEnv env;
      check(env);
    }
  }
}

}  // namespace bud::broker
