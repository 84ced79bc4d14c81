// `bud-broker stats` (the store's read side opened read-only beside the writer) and
// `bud-registry list`, on real stores: exact numbers from a store with known contents, the table
// for people and JSON that parses.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "broker/sqlite_queue_store.h"
#include "common/clock.h"
#include "common/fs.h"
#include "tests/ops/fixtures.h"

namespace bud::test {
namespace {

const std::string kA = std::string("0192:") + kAgencyA;
const std::string kB = std::string("0192:") + kAgencyB;
const std::string kC = std::string("0192:") + kUnregistered;

broker::SubmitItem Submit(const std::string& id, const std::string& from, const std::string& to,
                          size_t bytes) {
  broker::SubmitItem s;
  s.message_id = id;
  s.sender = from;
  s.receiver = to;
  s.envelope = std::string(bytes, 'e');
  s.expires_ms = NowMs() + 3600000;
  return s;
}

// A store with: to B four messages (100, 200, 300, 400 bytes) of which B reported the 400-byte one
// MOTTATT (a notice for A), the 200-byte one failed twice; to C one message of 50 bytes from B.
std::unique_ptr<broker::SqliteQueueStore> MakeStore(const std::string& path) {
  auto store = broker::SqliteQueueStore::Open(path);
  REQUIRE(store.ok());
  std::vector<broker::SubmitItem> submits = {Submit("m1", kA, kB, 100), Submit("m2", kA, kB, 200),
                                             Submit("m3", kA, kB, 300), Submit("m4", kA, kB, 400),
                                             Submit("m5", kB, kC, 50)};
  std::vector<broker::ReportItem> none;
  REQUIRE((*store)->CommitBatch(submits, none).ok());
  broker::ReportItem r;
  r.reporter = kB;
  r.message_id = "m4";
  r.status = wire::MOTTATT;
  std::vector<broker::ReportItem> reports = {r};
  std::vector<broker::SubmitItem> no_submits;
  REQUIRE((*store)->CommitBatch(no_submits, reports).ok());
  REQUIRE((*store)->AddAttempts({"m2"}).ok());
  REQUIRE((*store)->AddAttempts({"m2"}).ok());
  return std::move(store).value();
}

TEST_CASE("Stats counts queues, notices and history on a read-only connection beside the writer",
          "[ops][stats]") {
  TempDir t;
  const int64_t before = NowMs();
  auto writer = MakeStore(t / "broker.db");  // stays open, as the running broker's would
  const int64_t after = NowMs();
  auto db = broker::OpenSqliteQueueReader(t / "broker.db");
  INFO(db.status().ToString());
  REQUIRE(db.ok());
  auto stats = (*db)->Stats();
  INFO(stats.status().ToString());
  REQUIRE(stats.ok());
  CHECK(stats->schema_version == broker::SchemaVersion());
  REQUIRE(stats->receivers.size() == 2);
  const auto& b = stats->receivers[0];
  CHECK(b.receiver == kB);
  CHECK(b.queued == 3);
  CHECK(b.bytes == 600);
  CHECK(b.retried == 1);
  CHECK(b.max_attempts == 2);
  CHECK(b.oldest_received_ms >= before);
  CHECK(b.oldest_received_ms <= after);
  const auto& c = stats->receivers[1];
  CHECK(c.receiver == kC);
  CHECK(c.queued == 1);
  CHECK(c.bytes == 50);
  CHECK(c.retried == 0);
  REQUIRE(stats->senders.size() == 1);
  CHECK(stats->senders[0].sender == kA);
  CHECK(stats->senders[0].pending == 1);
  CHECK(stats->queued == 4);
  CHECK(stats->bytes == 650);
  CHECK(stats->notices == 1);
  CHECK(stats->seen_ids == 5);
  CHECK(stats->reports == 1);

  // The writer moves on; a new read sees it. Without history counting, those stay -1.
  broker::ReportItem r;
  r.reporter = kC;
  r.message_id = "m5";
  r.status = wire::FEIL;
  r.reason = "test";
  std::vector<broker::ReportItem> reports = {r};
  std::vector<broker::SubmitItem> none;
  REQUIRE(writer->CommitBatch(none, reports).ok());
  auto later = (*db)->Stats(/*count_history=*/false);
  REQUIRE(later.ok());
  CHECK(later->receivers.size() == 1);
  CHECK(later->queued == 3);
  REQUIRE(later->senders.size() == 2);  // by organisation number: B's is the lower
  CHECK(later->senders[0].sender == kB);
  CHECK(later->senders[0].pending == 1);
  CHECK(later->senders[1].sender == kA);
  CHECK(later->seen_ids == -1);
  CHECK(later->reports == -1);
}

TEST_CASE("bud-broker stats prints a table and JSON, from --store or --config", "[ops][stats]") {
  OpsFolder f;
  auto writer = MakeStore(f.Path("broker.db"));
  const std::string config = f.Write("broker.toml", f.BrokerConfig());

  auto js = RunCommand({BUD_BROKER_BIN, "stats", "--store", f.Path("broker.db"), "--json"});
  INFO(js.out << js.err);
  REQUIRE(js.exit_code == 0);
  const auto j = nlohmann::json::parse(js.out);
  CHECK(j["store"] == f.Path("broker.db"));
  CHECK(j["schemaVersion"] == broker::SchemaVersion());
  REQUIRE(j["receivers"].size() == 2);
  CHECK(j["receivers"][0]["receiver"] == kB);
  CHECK(j["receivers"][0]["queued"] == 3);
  CHECK(j["receivers"][0]["bytes"] == 600);
  CHECK(j["receivers"][0]["retried"] == 1);
  CHECK(j["receivers"][0]["maxAttempts"] == 2);
  CHECK(j["receivers"][0]["oldestAgeSeconds"].get<double>() >= 0.0);
  CHECK(j["receivers"][0]["oldestAgeSeconds"].get<double>() < 600.0);
  CHECK(ParseTime(j["receivers"][0]["oldestReceivedAt"].get<std::string>()).has_value());
  REQUIRE(j["senders"].size() == 1);
  CHECK(j["senders"][0]["sender"] == kA);
  CHECK(j["senders"][0]["pendingNotices"] == 1);
  CHECK(j["totals"]["queued"] == 4);
  CHECK(j["totals"]["bytes"] == 650);
  CHECK(j["totals"]["pendingNotices"] == 1);
  CHECK(j["totals"]["seenIds"] == 5);
  CHECK(j["totals"]["reports"] == 1);

  auto table = RunCommand({BUD_BROKER_BIN, "stats", "-c", config});
  INFO(table.out << table.err);
  REQUIRE(table.exit_code == 0);
  CHECK_THAT(table.out, Catch::Matchers::Contains("RECEIVER"));
  CHECK_THAT(table.out,
             Catch::Matchers::Matches("(.|\n)*" + kB + " +- +3 +600 B +[0-9]+s +1 +2\n(.|\n)*"));
  CHECK_THAT(table.out, Catch::Matchers::Matches("(.|\n)*" + kA + " +- +1 +[0-9]+s\n(.|\n)*"));
  CHECK_THAT(table.out, Catch::Matchers::Contains("Totals: 4 queued message(s), 650 B (650 bytes); "
                                                  "1 pending notice(s); 5 message id(s) seen; "
                                                  "1 report(s) applied"));
}

TEST_CASE("bud-broker stats shows the queue and notices of each message channel apart",
          "[ops][stats]") {
  OpsFolder f;
  {
    auto store = broker::SqliteQueueStore::Open(f.Path("broker.db"));
    REQUIRE(store.ok());
    std::vector<broker::SubmitItem> submits = {Submit("c1", kA, kB, 100), Submit("c2", kA, kB, 200),
                                               Submit("c3", kB, kA, 300)};
    submits[1].receiver_channel = "arkiv2";
    submits[2].sender_channel = "arkiv2";
    std::vector<broker::ReportItem> none;
    REQUIRE((*store)->CommitBatch(submits, none).ok());
    broker::ReportItem r;
    r.reporter = kA;
    r.message_id = "c3";
    r.status = wire::MOTTATT;
    std::vector<broker::ReportItem> reports = {r};
    std::vector<broker::SubmitItem> no_submits;
    REQUIRE((*store)->CommitBatch(no_submits, reports).ok());
  }
  auto js = RunCommand({BUD_BROKER_BIN, "stats", "--store", f.Path("broker.db"), "--json"});
  INFO(js.out << js.err);
  REQUIRE(js.exit_code == 0);
  const auto j = nlohmann::json::parse(js.out);
  REQUIRE(j["receivers"].size() == 2);
  CHECK(j["receivers"][0]["receiver"] == kB);
  CHECK(j["receivers"][0]["channel"] == "");
  CHECK(j["receivers"][0]["queued"] == 1);
  CHECK(j["receivers"][1]["receiver"] == kB);
  CHECK(j["receivers"][1]["channel"] == "arkiv2");
  CHECK(j["receivers"][1]["bytes"] == 200);
  REQUIRE(j["senders"].size() == 1);
  CHECK(j["senders"][0]["sender"] == kB);
  CHECK(j["senders"][0]["channel"] == "arkiv2");
  auto table = RunCommand({BUD_BROKER_BIN, "stats", "--store", f.Path("broker.db")});
  INFO(table.out << table.err);
  REQUIRE(table.exit_code == 0);
  CHECK_THAT(table.out, Catch::Matchers::Contains("CHANNEL"));
  CHECK_THAT(table.out,
             Catch::Matchers::Matches("(.|\n)*" + kB + " +- +1 +100 B +[0-9]+s +0 +0\n(.|\n)*"));
  CHECK_THAT(table.out, Catch::Matchers::Matches("(.|\n)*" + kB +
                                                 " +arkiv2 +1 +200 B +[0-9]+s +0 +0\n(.|\n)*"));
  CHECK_THAT(table.out, Catch::Matchers::Matches("(.|\n)*" + kB + " +arkiv2 +1 +[0-9]+s\n(.|\n)*"));
}

TEST_CASE("bud-broker stats on a missing, empty or foreign store says so", "[ops][stats]") {
  TempDir t;
  auto r = RunCommand({BUD_BROKER_BIN, "stats", "--store", t / "absent.db"});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Matchers::Contains("there is no broker store at"));
  CHECK_FALSE(PathExists(t / "absent.db"));

  r = RunCommand({BUD_BROKER_BIN, "stats"});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Matchers::Contains("give --config or --store"));

  {
    auto db = storage::Db::Open(t / "old.db");
    REQUIRE(db.ok());
    REQUIRE((*db)->Exec("CREATE TABLE x(y); PRAGMA user_version=1").ok());
  }
  r = RunCommand({BUD_BROKER_BIN, "stats", "--store", t / "old.db"});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Matchers::Contains("schema version 1"));

  {
    auto fresh = broker::SqliteQueueStore::Open(t / "empty.db");
    REQUIRE(fresh.ok());
  }
  r = RunCommand({BUD_BROKER_BIN, "stats", "--store", t / "empty.db"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Matchers::Contains("(nothing queued)"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("Totals: 0 queued message(s)"));
}

TEST_CASE("bud-registry list shows entries as a table and as JSON", "[ops][list]") {
  OpsFolder f;
  const std::string config = f.Write("registry.toml", f.RegistryConfig());
  // Listing an exchange that has no store yet creates none.
  auto empty = RunCommand({BUD_REGISTRY_BIN, "list", "--config", config});
  CHECK(empty.exit_code == 0);
  CHECK_THAT(empty.out, Catch::Matchers::Contains("0 organisation(s)"));
  CHECK_FALSE(PathExists(f.Path("registry.db")));
  auto empty_json = RunCommand({BUD_REGISTRY_BIN, "list", "--config", config, "--json"});
  CHECK(nlohmann::json::parse(empty_json.out).empty());

  std::map<std::string, std::string> curve_keys;
  for (const auto& [org, name] : {std::pair{kAgencyA, "Første etat"}, std::pair{kAgencyB, "B"}}) {
    const std::string dir = f.Path(std::string("org-") + org);
    REQUIRE(MakeDirs(dir).ok());
    curve_keys[org] = NewCurveKey(dir + "/curve.key");
    f.ca().IssueSigning(KeyType::kEcP256, org).WriteFiles(dir + "/s.key", dir + "/s.pem");
    f.ca().IssueEncryption(KeyType::kEcP256, org).WriteFiles(dir + "/e.key", dir + "/e.pem");
    auto add = RunCommand({BUD_REGISTRY_BIN,
                           "add",
                           "-c",
                           config,
                           "--orgnr",
                           org,
                           "--name",
                           name,
                           "--signing-cert",
                           dir + "/s.pem",
                           "--encryption-cert",
                           dir + "/e.pem",
                           "--curve-public-key",
                           curve_keys[org],
                           "--broker",
                           "tcp://broker.example:7700",
                           "--process",
                           kProcess,
                           "--document-type",
                           kDocumentType});
    INFO(add.out << add.err);
    REQUIRE(add.exit_code == 0);
  }
  auto table = RunCommand({BUD_REGISTRY_BIN, "list", "--config", config});
  INFO(table.out << table.err);
  REQUIRE(table.exit_code == 0);
  CHECK_THAT(table.out, Catch::Matchers::StartsWith("ORGNR"));
  CHECK_THAT(table.out, Catch::Matchers::Contains("CERT DAYS"));
  CHECK_THAT(table.out,
             Catch::Matchers::Matches("(.|\n)*" + std::string(kAgencyA) +
                                      " +Første etat +tcp://broker.example:7700 +36[45] +" +
                                      kProcess + "\n(.|\n)*"));
  CHECK_THAT(table.out, Catch::Matchers::EndsWith("2 organisation(s)\n"));

  auto js = RunCommand({BUD_REGISTRY_BIN, "list", "--config", config, "--json"});
  REQUIRE(js.exit_code == 0);
  const auto j = nlohmann::json::parse(js.out);
  REQUIRE(j.size() == 2);
  CHECK(j[0]["orgnr"] == kAgencyB);  // ordered by orgnr
  CHECK(j[1]["orgnr"] == kAgencyA);
  CHECK(j[1]["name"] == "Første etat");
  CHECK(j[1]["brokerEndpoint"] == "tcp://broker.example:7700");
  CHECK(j[1]["curvePublicKey"] == curve_keys[kAgencyA]);
  CHECK(j[1]["processes"] == nlohmann::json::array({kProcess}));
  CHECK(j[1]["documentTypes"] == nlohmann::json::array({kDocumentType}));
  CHECK(j[1]["signingCertDaysToExpiry"].get<int>() >= 364);
  CHECK(ParseTime(j[1]["updated"].get<std::string>()).has_value());
}

}  // namespace
}  // namespace bud::test
