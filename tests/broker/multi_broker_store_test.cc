// Several broker processes on one PostgreSQL database, at the store's level: two PgQueueStores
// (as two brokers would open them) on one real PostgreSQL 15 started by the test. The queue caps
// hold across them; a message committed late with a lower seq is still claimed (where a "highest
// seq handed out" cursor skips it); a commit on one wakes the other (LISTEN/NOTIFY), also after
// its listening connection was lost; a claim and a takeover of the same lease are serialised.
// Also: a version 2 store migrates to version 3, and the read side tells a writable server from
// a read-only or stopped one (what /health reports).
#include <fmt/format.h>
#include <poll.h>

#include <catch2/catch.hpp>
#include <future>
#include <thread>

#include "broker/pg_queue_store.h"
#include "common/clock.h"
#include "common/uuid.h"
#include "tests/support/postgres.h"

namespace bud::broker {
namespace {

namespace pg = storage::pg;

constexpr const char* kA = "0192:910076787";
constexpr const char* kB = "0192:910075918";
constexpr const char* kC = "0192:991825827";

SubmitItem Item(const std::string& sender = kA, const std::string& receiver = kB) {
  SubmitItem s;
  s.message_id = NewUuid();
  s.sender = sender;
  s.receiver = receiver;
  s.envelope = "envelope of " + s.message_id;
  s.expires_ms = NowMs() + 3600 * 1000;
  return s;
}

pg::ConnectOptions Options(const test::PostgresServer& server) {
  pg::ConnectOptions o;
  o.conninfo = server.ConnString();
  o.password_file = server.PasswordFile();
  return o;
}

std::unique_ptr<PgQueueStore> OpenStore(const test::PostgresServer& server) {
  auto store = PgQueueStore::Open(Options(server));
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(*store);
}

void CommitSubmits(QueueStore& store, std::vector<SubmitItem>& submits) {
  std::vector<ReportItem> none;
  auto r = store.CommitBatch(submits, none);
  INFO(r.status.ToString());
  REQUIRE(r.durable());
}

// The wake-ups `store` receives within `timeout` (polling its WakeFd as the broker's loop does),
// until `want` is among them.
std::vector<std::string> WaitForWakeup(QueueStore& store, const std::string& want,
                                       int64_t timeout_ms = 5000) {
  std::vector<std::string> seen;
  const int64_t deadline = MonoMs() + timeout_ms;
  while (MonoMs() < deadline) {
    const int fd = store.WakeFd();
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      (void)::poll(&p, 1, 100);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    auto got = store.TakeWakeups();
    if (!got.ok()) continue;  // a lost listener: the next call opens it again
    for (auto& org : *got) seen.push_back(org);
    if (std::find(seen.begin(), seen.end(), want) != seen.end()) break;
  }
  return seen;
}

}  // namespace

TEST_CASE("several brokers on one PostgreSQL: the queue caps hold across them",
          "[broker][store][pg][multi]") {
  test::PostgresServer server;
  auto one = OpenStore(server);
  auto two = OpenStore(server);
  one->SetQueueCaps({/*per_receiver=*/3, /*per_sender=*/100});
  two->SetQueueCaps({/*per_receiver=*/3, /*per_sender=*/100});
  std::vector<SubmitItem> a = {Item(kA, kB), Item(kA, kB)};
  CommitSubmits(*one, a);
  std::vector<SubmitItem> b = {Item(kC, kB)};
  CommitSubmits(*two, b);
  CHECK(b[0].refused.empty());
  // Each broker stored fewer than three; together they hold three: both refuse the fourth.
  CHECK_THAT(one->QueueRoom(kA, kB), Catch::Contains("max_queued_per_receiver"));
  CHECK_THAT(two->QueueRoom(kC, kB), Catch::Contains("max_queued_per_receiver"));
  std::vector<SubmitItem> c = {Item(kA, kB)};
  CommitSubmits(*one, c);
  CHECK_THAT(c[0].refused, Catch::Contains("max_queued_per_receiver"));
  std::vector<SubmitItem> d = {Item(kC, kB)};
  CommitSubmits(*two, d);
  CHECK_THAT(d[0].refused, Catch::Contains("max_queued_per_receiver"));
  CHECK(*one->QueuedCount() == 3);

  // Concurrent batches from both brokers for one receiver: never more than the cap stored.
  auto fill = [](PgQueueStore& store, int n) {
    int stored = 0;
    for (int i = 0; i < n; ++i) {
      std::vector<SubmitItem> batch = {Item(kA, kC), Item(kA, kC)};
      std::vector<ReportItem> none;
      if (!store.CommitBatch(batch, none).durable()) continue;
      for (const auto& s : batch) stored += s.refused.empty() ? 1 : 0;
    }
    return stored;
  };
  one->SetQueueCaps({/*per_receiver=*/25, /*per_sender=*/0});
  two->SetQueueCaps({/*per_receiver=*/25, /*per_sender=*/0});
  auto f1 = std::async(std::launch::async, [&] { return fill(*one, 20); });
  auto f2 = std::async(std::launch::async, [&] { return fill(*two, 20); });
  const int stored = f1.get() + f2.get();
  CHECK(stored == 25);
  auto stats = one->Stats(false);
  REQUIRE(stats.ok());
  int64_t for_c = 0;
  for (const auto& r : stats->receivers) {
    if (r.receiver == kC) for_c = r.queued;
  }
  CHECK(for_c == 25);
}

// Two brokers take seqs from one sequence: broker 2 draws the lower one but commits after
// broker 1, whose message was already handed out. A cursor at "the highest seq handed out" never
// goes back for it; a claim that leaves out only what is in flight finds it.
TEST_CASE("several brokers on one PostgreSQL: a lower seq committed later is still delivered",
          "[broker][store][pg][multi]") {
  test::PostgresServer server;
  auto store = OpenStore(server);
  auto late = pg::Connection::Open(Options(server));
  REQUIRE(late.ok());
  pg::Transaction tx(**late);
  REQUIRE(tx.began().ok());
  const std::string late_id = NewUuid();
  // Broker 2's batch, in progress: seq drawn, rows written, not committed yet.
  auto seq = (*late)->Exec(
      "INSERT INTO broker_seen(message_id, sender, receiver, first_seen_ms, seq) "
      "VALUES ($1, $2, $3, $4, nextval('broker_message_seq')) RETURNING seq",
      pg::Params::Of(late_id, std::string(kA), std::string(kB), NowMs()));
  REQUIRE(seq.ok());
  const int64_t low = seq->Int(0, 0);
  pg::Params p = pg::Params::Of(low, late_id, std::string(kA), std::string(kB));
  p.AddBytea("late envelope").Add(NowMs()).Add(NowMs() + 3600 * 1000);
  REQUIRE((*late)
              ->Exec("INSERT INTO broker_messages(seq, message_id, sender, receiver, envelope, "
                     "received_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                     p)
              .ok());

  std::vector<SubmitItem> early = {Item(kA, kB)};
  CommitSubmits(*store, early);
  auto lease = store->TakeSession(kB, "broker-1", 60000);
  REQUIRE(lease.ok());
  const LeaseRef ref{kB, "broker-1", lease->epoch};
  auto first = store->ClaimDeliveries(ref, {}, 10);
  REQUIRE(first.ok());
  REQUIRE(first->size() == 1);
  const int64_t high = (*first)[0].seq;
  REQUIRE(high > low);

  REQUIRE(tx.Commit().durable());  // broker 2 commits now

  auto cursor = store->NextFor(kB, high, 10);  // what a cursor would ask
  REQUIRE(cursor.ok());
  CHECK(cursor->empty());
  auto claimed = store->ClaimDeliveries(ref, {high}, 10);
  REQUIRE(claimed.ok());
  REQUIRE(claimed->size() == 1);
  CHECK((*claimed)[0].seq == low);
  CHECK((*claimed)[0].message_id == late_id);
}

TEST_CASE(
    "several brokers on one PostgreSQL: a commit on one wakes the other, also after its "
    "listener was lost",
    "[broker][store][pg][multi]") {
  test::PostgresServer server;
  auto one = OpenStore(server);
  auto two = OpenStore(server);
  CHECK(two->Shared());
  REQUIRE(two->WakeFd() >= 0);
  auto nothing = two->TakeWakeups();
  REQUIRE(nothing.ok());
  CHECK(nothing->empty());

  std::vector<SubmitItem> batch = {Item(kA, kB)};
  CommitSubmits(*one, batch);
  auto seen = WaitForWakeup(*two, kB);
  CHECK(std::find(seen.begin(), seen.end(), kB) != seen.end());

  // A report stored on broker 1 makes a notice for the sender: broker 2 hears of it.
  std::vector<SubmitItem> none;
  std::vector<ReportItem> reports(1);
  reports[0].reporter = kB;
  reports[0].message_id = batch[0].message_id;
  reports[0].status = wire::MOTTATT;
  REQUIRE(one->CommitBatch(none, reports).durable());
  seen = WaitForWakeup(*two, kA);
  CHECK(std::find(seen.begin(), seen.end(), kA) != seen.end());

  // A batch with nothing new (a duplicate) wakes nobody.
  std::vector<SubmitItem> again = {batch[0]};
  CommitSubmits(*one, again);
  CHECK(again[0].duplicate);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto quiet = two->TakeWakeups();
  REQUIRE(quiet.ok());
  CHECK(quiet->empty());

  // The listening connections (both stores') are cut by the server: each store notices, opens
  // its own again, and hears the next commit.
  server.AdminExec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE application_name = 'bud-broker-listen'");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const int64_t deadline = MonoMs() + 10000;
  bool listening_again = false;
  while (MonoMs() < deadline && !listening_again) {
    (void)one->TakeWakeups();
    (void)two->TakeWakeups();
    listening_again = server.AdminQuery(
                          "SELECT count(*)::text FROM pg_stat_activity WHERE "
                          "application_name = 'bud-broker-listen'") == "2";
    if (!listening_again) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  REQUIRE(listening_again);
  std::vector<SubmitItem> later = {Item(kA, kC)};
  CommitSubmits(*one, later);
  seen = WaitForWakeup(*two, kC);
  CHECK(std::find(seen.begin(), seen.end(), kC) != seen.end());
}

// The fence: a takeover in progress (its transaction holds the lease row) makes a claim of the
// old holder wait, and once it commits the claim finds the lease gone; so no claim of the old
// epoch can succeed after a takeover committed.
TEST_CASE(
    "several brokers on one PostgreSQL: a claim waits for a takeover in progress, then "
    "is refused",
    "[broker][store][pg][multi]") {
  test::PostgresServer server;
  auto one = OpenStore(server);
  std::vector<SubmitItem> batch = {Item(kA, kB)};
  CommitSubmits(*one, batch);
  auto lease = one->TakeSession(kB, "broker-1", 60000);
  REQUIRE(lease.ok());
  const LeaseRef ref{kB, "broker-1", lease->epoch};

  auto other = pg::Connection::Open(Options(server));
  REQUIRE(other.ok());
  pg::Transaction takeover(**other);
  REQUIRE(takeover.began().ok());
  REQUIRE((*other)
              ->Exec("UPDATE broker_sessions SET holder='broker-2', epoch=epoch+1 "
                     "WHERE org=$1",
                     pg::Params::Of(std::string(kB)))
              .ok());
  auto claim = std::async(std::launch::async, [&] { return one->ClaimDeliveries(ref, {}, 10); });
  CHECK(claim.wait_for(std::chrono::milliseconds(500)) == std::future_status::timeout);
  REQUIRE(takeover.Commit().durable());
  REQUIRE(claim.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  auto claimed = claim.get();
  REQUIRE_FALSE(claimed.ok());
  CHECK(claimed.status().code() == Code::kConflict);

  // And a lease taken and released by broker 2 does not come back to broker 1's old epoch.
  REQUIRE(one->ReleaseSession({kB, "broker-2", lease->epoch + 1}).ok());
  CHECK_FALSE(one->ClaimDeliveries(ref, {}, 10).ok());
}

}  // namespace bud::broker

namespace bud::broker {

// A version 2 database (one broker per database, no leases, caps counted from the queue) is
// migrated to the current version when a broker of this release opens it: the queue is kept,
// the leases work, and the queue counts start from what is queued.
TEST_CASE("PostgreSQL: a version 2 broker store migrates (session leases, queue counts)",
          "[broker][store][pg][multi]") {
  test::PostgresServer server;
  std::vector<SubmitItem> queued = {Item(kA, kB), Item(kA, kB), Item(kC, kB)};
  {
    auto store = OpenStore(server);
    CommitSubmits(*store, queued);
  }
  // What a release of schema 2 left behind: no leases, no message channels (4), no queue
  // counts (5; it also dropped the per-sender index 3 made).
  server.AdminExec(
      "DROP TABLE broker_sessions; DROP TABLE broker_queue_counts; "
      "ALTER TABLE broker_messages DROP COLUMN receiver_channel; "
      "ALTER TABLE broker_seen DROP COLUMN sender_channel, DROP COLUMN receiver_channel; "
      "ALTER TABLE broker_notices DROP COLUMN channel; "
      "CREATE INDEX broker_messages_by_receiver ON broker_messages(receiver, seq); "
      "CREATE INDEX broker_notices_by_org ON broker_notices(org, notice_id); "
      "UPDATE broker_schema SET version = 2",
      server.Database());
  auto info = CheckPgQueueStore(Options(server));
  REQUIRE(info.ok());
  CHECK(info->schema_version == 2);
  auto migrated = MigratePgQueueStore(Options(server));
  REQUIRE(migrated.ok());
  CHECK(migrated->migrated_from == 2);
  CHECK(migrated->schema_version == PgSchemaVersion());
  CHECK(server.AdminQuery("SELECT string_agg(key || '=' || n, ',' ORDER BY key) "
                          "FROM broker_queue_counts",
                          server.Database()) == fmt::format("r {}=3,s {}=2,s {}=1", kB, kA, kC));
  auto store = OpenStore(server);
  store->SetQueueCaps({/*per_receiver=*/4, /*per_sender=*/0});  // the migrated counts hold
  std::vector<SubmitItem> more = {Item(kC, kB), Item(kC, kB)};
  CommitSubmits(*store, more);
  CHECK(more[0].refused.empty());
  CHECK_THAT(more[1].refused, Catch::Contains("max_queued_per_receiver"));
  auto lease = store->TakeSession(kB, "broker-1", 60000);
  REQUIRE(lease.ok());
  auto claimed = store->ClaimDeliveries({kB, "broker-1", lease->epoch}, {}, 10);
  REQUIRE(claimed.ok());
  REQUIRE(claimed->size() == 4);
  CHECK((*claimed)[0].message_id == queued[0].message_id);
}

}  // namespace bud::broker

namespace bud::broker {

// The queue counts (broker_queue_counts) stay what the queue holds through everything that
// stores or removes messages: submits (duplicates and refusals not counted), reports, expiry;
// from two brokers on one database.
TEST_CASE("PostgreSQL: the queue counts follow the queue through submits, reports and expiry",
          "[broker][store][pg][multi]") {
  test::PostgresServer server;
  auto one = OpenStore(server);
  auto two = OpenStore(server);
  one->SetQueueCaps({/*per_receiver=*/100, /*per_sender=*/3});
  two->SetQueueCaps({100, 3});
  const auto counted = [&] {
    return server.AdminQuery(
        "SELECT coalesce(string_agg(key || '=' || n, ',' ORDER BY key), '') "
        "FROM broker_queue_counts WHERE n <> 0",
        server.Database());
  };
  const auto queued = [&] {
    return server.AdminQuery(
        "SELECT coalesce(string_agg(k || '=' || c, ',' ORDER BY k), '') FROM ("
        "SELECT 'r ' || receiver AS k, count(*) AS c FROM broker_messages GROUP BY receiver "
        "UNION ALL SELECT 's ' || sender, count(*) FROM broker_messages GROUP BY sender) q",
        server.Database());
  };
  std::vector<SubmitItem> a = {Item(kA, kB), Item(kA, kB), Item(kC, kB)};
  a.push_back(a[0]);  // a duplicate in the batch
  CommitSubmits(*one, a);
  std::vector<SubmitItem> b = {Item(kA, kC), Item(kA, kC), a[1]};  // one refused, one known
  CommitSubmits(*two, b);
  CHECK(b[0].refused.empty());
  CHECK_THAT(b[1].refused, Catch::Contains("max_queued_per_sender"));
  CHECK(b[2].duplicate);
  CHECK(counted() == fmt::format("r {}=3,r {}=1,s {}=3,s {}=1", kB, kC, kA, kC));
  CHECK(counted() == queued());

  ReportItem done;
  done.reporter = kB;
  done.message_id = a[0].message_id;
  done.status = wire::MOTTATT;
  done.at_ms = NowMs();
  std::vector<ReportItem> reports = {done, done};  // a repeated report removes nothing more
  std::vector<SubmitItem> none;
  REQUIRE(two->CommitBatch(none, reports).durable());
  CHECK(counted() == queued());
  CHECK(counted() == fmt::format("r {}=2,r {}=1,s {}=2,s {}=1", kB, kC, kA, kC));

  auto expired = one->ExpireDue(NowMs() + 2 * 3600 * 1000, 100);  // everything left expires
  REQUIRE(expired.ok());
  CHECK(expired->size() == 3);
  CHECK(counted().empty());
  CHECK(queued().empty());
}

// What /health asks of the store's read side: a server that takes no writes is named as such.
TEST_CASE("PostgreSQL: the read side says whether the server takes writes",
          "[broker][store][pg][multi]") {
  test::PostgresServer server;
  { auto store = OpenStore(server); }
  auto reader = OpenPgQueueReader(Options(server));
  REQUIRE(reader.ok());
  CHECK((*reader)->CheckWritable().ok());
  server.AdminExec("ALTER DATABASE " + server.Database() +
                   " SET default_transaction_read_only = on");
  auto read_only = OpenPgQueueReader(Options(server));  // a new session takes the setting
  REQUIRE(read_only.ok());
  Status w = (*read_only)->CheckWritable();
  CHECK(w.code() == Code::kUnavailable);
  CHECK_THAT(w.message(), Catch::Contains("takes no writes"));
  server.Stop();
  Status down = (*reader)->CheckWritable();
  CHECK_FALSE(down.ok());
  CHECK_THAT(down.message(), Catch::Contains(std::to_string(server.Port())));
  server.Start();
}

}  // namespace bud::broker
