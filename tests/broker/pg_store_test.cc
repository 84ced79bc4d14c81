// What only the PostgreSQL broker store has, on a real PostgreSQL 15 started by the test: the
// three commit outcomes with a server that really loses a connection or cancels the wait for a
// synchronous standby, reconnecting after a lost connection, a newer schema refused, and
// synchronous_commit on for the broker's session.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <future>
#include <thread>

#include "broker/pg_queue_store.h"
#include "common/clock.h"
#include "common/uuid.h"
#include "tests/support/postgres.h"

namespace bud::broker {
namespace {

constexpr const char* kA = "0192:910076787";
constexpr const char* kB = "0192:910075918";

SubmitItem Item(std::string id = NewUuid()) {
  SubmitItem s;
  s.message_id = std::move(id);
  s.sender = kA;
  s.receiver = kB;
  s.envelope = "envelope of " + s.message_id;
  s.expires_ms = NowMs() + 3600 * 1000;
  return s;
}

storage::pg::ConnectOptions Options(const test::PostgresServer& pg) {
  storage::pg::ConnectOptions o;
  o.conninfo = pg.ConnString();
  o.password_file = pg.PasswordFile();
  return o;
}

// The broker's sessions on the server (application_name bud-broker), as the superuser sees them.
std::string BrokerBackends(const test::PostgresServer& pg, const std::string& where = "true") {
  return pg.AdminQuery(fmt::format("SELECT coalesce(string_agg(pid::text, ','), '') FROM "
                                   "pg_stat_activity WHERE application_name = 'bud-broker' AND {}",
                                   where));
}

}  // namespace

// The server commits locally but a synchronous standby never confirms: the COMMIT waits. When the
// wait is cancelled, the server keeps the transaction but no standby may have it: the outcome is
// unknown, and the message is there afterwards (a resubmission is a duplicate).
TEST_CASE("PostgreSQL: a COMMIT whose wait for a synchronous standby is cancelled is unknown",
          "[broker][store][pg]") {
  test::PostgresServer pg;
  auto opened = PgQueueStore::Open(Options(pg));
  REQUIRE(opened.ok());
  PgQueueStore& store = **opened;
  pg.SetSynchronousStandbys("nobody");  // no such standby: every COMMIT waits

  std::vector<SubmitItem> submits = {Item()};
  const std::string id = submits[0].message_id;
  auto commit = std::async(std::launch::async, [&] {
    std::vector<ReportItem> none;
    return store.CommitBatch(submits, none);
  });
  std::string waiting;
  for (int i = 0; i < 600 && waiting.empty(); ++i) {  // 30 s: a loaded machine is slow
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    waiting = BrokerBackends(pg, "wait_event = 'SyncRep'");
  }
  REQUIRE_FALSE(waiting.empty());
  CHECK(commit.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
  pg.AdminQuery("SELECT pg_cancel_backend(" + waiting + ")::text");
  const CommitResult result = commit.get();
  INFO(result.status.ToString());
  CHECK(result.outcome == CommitOutcome::kUnknown);
  CHECK_FALSE(result.status.ok());

  pg.SetSynchronousStandbys("");
  // It was committed locally: the resubmission is a duplicate, the message queued once.
  CHECK(*store.IsKnown(id));
  std::vector<SubmitItem> again = {Item(id)};
  std::vector<ReportItem> none;
  REQUIRE(store.CommitBatch(again, none).durable());
  CHECK(again[0].duplicate);
  CHECK(*store.QueuedCount() == 1);
  // The caps' counts were read again after the unknown outcome.
  store.SetQueueCaps({/*per_receiver=*/1, 0});
  CHECK_FALSE(store.QueueRoom(kA, kB).empty());
}

// The server ends the broker's session (a failover, a restart): the next read reconnects and
// succeeds; a commit on the dead session fails with nothing stored, and the next one is durable.
TEST_CASE("PostgreSQL: after a lost connection the store reconnects; nothing half-stored",
          "[broker][store][pg]") {
  test::PostgresServer pg;
  auto opened = PgQueueStore::Open(Options(pg));
  REQUIRE(opened.ok());
  PgQueueStore& store = **opened;
  std::vector<SubmitItem> first = {Item()};
  std::vector<ReportItem> none;
  REQUIRE(store.CommitBatch(first, none).durable());

  auto terminate = [&] {
    const std::string pids = BrokerBackends(pg);
    REQUIRE_FALSE(pids.empty());
    pg.AdminQuery("SELECT bool_and(pg_terminate_backend(p))::text FROM unnest(string_to_array('" +
                  pids + "', ',')::int[]) p");
    // pg_terminate_backend only signals: wait until the sessions are gone, so that the store's
    // next statement meets a closed connection rather than a dying session (which could not
    // tell whether it ran the statement: an unknown outcome).
    const std::string gone = "pid = ANY(string_to_array('" + pids + "', ',')::int[])";
    const auto deadline = MonoMs() + 30000;
    while (!BrokerBackends(pg, gone).empty() && MonoMs() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(BrokerBackends(pg, gone).empty());
  };
  terminate();
  auto count = store.QueuedCount();  // tried once more on a new connection
  INFO(count.status().ToString());
  REQUIRE(count.ok());
  CHECK(*count == 1);

  terminate();
  std::vector<SubmitItem> lost = {Item()};
  const CommitResult failed = store.CommitBatch(lost, none);
  INFO(failed.status.ToString());
  CHECK(failed.outcome == CommitOutcome::kFailed);
  CHECK(failed.status.code() == Code::kUnavailable);
  std::vector<SubmitItem> retry = {Item(lost[0].message_id)};
  const CommitResult durable = store.CommitBatch(retry, none);
  INFO(durable.status.ToString());
  REQUIRE(durable.durable());
  CHECK_FALSE(retry[0].duplicate);  // the failed commit stored nothing
  CHECK(*store.QueuedCount() == 2);

  // The whole server restarted: the store finds it again.
  pg.Stop();
  pg.Start();
  auto after = store.NextFor(kB, 0, 10);
  INFO(after.status().ToString());
  REQUIRE(after.ok());
  CHECK(after->size() == 2);
}

TEST_CASE("PostgreSQL: the schema is versioned; a newer one is refused, the session commits "
          "synchronously",
          "[broker][store][pg]") {
  test::PostgresServer pg;
  pg.AdminExec("ALTER DATABASE bud SET synchronous_commit = off");
  {
    auto opened = PgQueueStore::Open(Options(pg));
    REQUIRE(opened.ok());
    // The broker sets synchronous_commit on for itself, whatever the database says.
    auto sync = (*opened)->synchronous_commit();
    REQUIRE(sync.ok());
    CHECK(*sync == "on");
  }
  auto info = CheckPgQueueStore(Options(pg));
  REQUIRE(info.ok());
  CHECK(info->schema_version == PgSchemaVersion());
  CHECK(info->writable);
  auto again = MigratePgQueueStore(Options(pg));
  REQUIRE(again.ok());
  CHECK(again->migrated_from == PgSchemaVersion());  // nothing to do

  pg.AdminExec(fmt::format("UPDATE broker_schema SET version = {}", PgSchemaVersion() + 1),
               pg.Database());
  auto newer = PgQueueStore::Open(Options(pg));
  CHECK(newer.status().code() == Code::kUnsupported);
  CHECK_THAT(newer.status().message(), Catch::Contains("newer than this release"));
  auto reader = OpenPgQueueReader(Options(pg));
  CHECK(reader.status().code() == Code::kUnsupported);
}

}  // namespace bud::broker
