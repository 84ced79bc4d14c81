// Online backups and stats beside running processes: `bud-ip backup` while messages flow through
// a real exchange (tests/integration/harness.h), and `bud-broker stats` on a running broker with
// a receiver that is down.
#include <catch2/catch.hpp>
#include <set>

#include "common/storage/sqlite.h"
#include "common/uuid.h"
#include "tests/ops/fixtures.h"

namespace bud::test {
namespace {

// Drops `n` messages from A to B, one folder each, and returns their ids.
std::vector<std::string> Send(Exchange& ex, int n, int first) {
  std::vector<std::string> ids;
  for (int i = first; i < first + n; ++i) {
    nlohmann::json meta = Exchange::Metadata(kAgencyB);
    const std::string id = NewUuid();
    meta["messageId"] = id;
    meta["title"] = "backup test " + std::to_string(i);
    ex.DropFolder(kAgencyA, "m" + std::to_string(i), meta.dump(),
                  {{"brev.txt", SeededBytes(2000 + i, static_cast<uint32_t>(i))}});
    ids.push_back(id);
  }
  return ids;
}

// message_id -> status of the outgoing messages in an IP store copy.
std::map<std::string, std::string> OutgoingIn(const std::string& path) {
  storage::Db::Options options;
  options.read_only = true;
  auto db = storage::Db::Open(path, options);
  REQUIRE(db.ok());
  auto st = (*db)->Prepare("SELECT message_id, status FROM messages WHERE direction='OUT'");
  REQUIRE(st.ok());
  std::map<std::string, std::string> out;
  for (;;) {
    auto row = (*st)->Step();
    REQUIRE(row.ok());
    if (!*row) break;
    out[(*st)->Text(0)] = (*st)->Text(1);
  }
  return out;
}

void CheckIntact(const std::string& path) {
  storage::Db::Options options;
  options.read_only = true;
  auto db = storage::Db::Open(path, options);
  REQUIRE(db.ok());
  Status s = (*db)->Check(/*full=*/true);
  INFO(s.ToString());
  CHECK(s.ok());
}

TEST_CASE("bud-ip backup copies the store while the integration point runs and messages flow",
          "[ops][backup]") {
  Exchange ex;
  const std::string config = ex.IpConfig(kAgencyA);
  std::vector<std::string> ids = Send(ex, 20, 0);
  // Once the first 20 are in the store, every copy must hold them.
  for (const auto& id : ids) ex.WaitForStatus(kAgencyA, id, "OPPRETTET");
  const std::set<std::string> first(ids.begin(), ids.end());

  // Copies taken while those 20 are on their way and 30 more are dropped.
  std::vector<std::string> copies;
  for (int round = 0; round < 3; ++round) {
    const std::string out = ex.root() + "/backup-" + std::to_string(round) + ".db";
    auto r = RunCommand({BUD_IP_BIN, "backup", "-c", config, "--out", out});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::Matchers::Contains("integrity_check ok"));
    copies.push_back(out);
    auto more = Send(ex, 10, 100 + round * 10);
    ids.insert(ids.end(), more.begin(), more.end());
  }
  for (const auto& id : ids) ex.WaitForStatus(kAgencyA, id, "MOTTATT", Millis(60000));

  const std::set<std::string> sent(ids.begin(), ids.end());
  size_t previous = 0;
  for (const auto& copy : copies) {
    INFO(copy);
    CheckIntact(copy);
    auto out = OutgoingIn(copy);
    CHECK(out.size() >= previous);  // later copies know at least as much
    previous = out.size();
    for (const auto& [id, status] : out) {
      CHECK(sent.count(id) == 1);
      CHECK((status == "OPPRETTET" || status == "SENDT" || status == "MOTTATT"));
    }
    for (const auto& id : first) CHECK(out.count(id) == 1);
  }

  // After everything arrived a copy holds every message as MOTTATT.
  const std::string final_copy = ex.root() + "/backup-final.db";
  auto r = RunCommand({BUD_IP_BIN, "backup", "--config", config, "--out", final_copy});
  REQUIRE(r.exit_code == 0);
  CheckIntact(final_copy);
  auto out = OutgoingIn(final_copy);
  CHECK(out.size() == ids.size());
  for (const auto& id : ids) CHECK(out[id] == "MOTTATT");

  // Never over an existing file; nothing from a store that does not exist.
  const std::string before = ReadFile(final_copy);
  r = RunCommand({BUD_IP_BIN, "backup", "-c", config, "--out", final_copy});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Matchers::Contains("never overwrites"));
  CHECK(ReadFile(final_copy) == before);
  std::string other = ReadFile(config);
  const auto at = other.find("store = ");
  REQUIRE(at != std::string::npos);
  other.insert(at, "store = \"nowhere/ip.db\"\n#");
  WriteFile(ex.root() + "/other.toml", other);
  r = RunCommand(
      {BUD_IP_BIN, "backup", "-c", ex.root() + "/other.toml", "--out", ex.root() + "/x.db"});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Matchers::Contains("there is no database at"));
  CHECK_FALSE(PathExists(ex.root() + "/x.db"));
}

TEST_CASE("bud-broker stats beside a running broker shows what waits for a receiver that is down",
          "[ops][stats]") {
  Exchange ex;
  const std::string broker_config = ex.root() + "/broker/broker.toml";
  ex.ip(kAgencyB).Stop();
  auto ids = Send(ex, 3, 0);
  for (const auto& id : ids) ex.WaitForStatus(kAgencyA, id, "SENDT");

  auto r = RunCommand({BUD_BROKER_BIN, "stats", "-c", broker_config, "--json"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.out);
  REQUIRE(j["receivers"].size() == 1);
  CHECK(j["receivers"][0]["receiver"] == std::string("0192:") + kAgencyB);
  CHECK(j["receivers"][0]["queued"] == 3);
  CHECK(j["receivers"][0]["bytes"].get<int64_t>() > 3 * 2000);
  CHECK(j["totals"]["queued"] == 3);
  CHECK(j["totals"]["seenIds"] == 3);

  // The receiver comes back: the queue drains.
  ex.StartIp(kAgencyB);
  for (const auto& id : ids) ex.WaitForStatus(kAgencyA, id, "MOTTATT");
  WaitUntil("the broker's queue for B to drain", kDefaultWait, [&] {
    auto s = RunCommand({BUD_BROKER_BIN, "stats", "-c", broker_config, "--json"});
    return s.exit_code == 0 && nlohmann::json::parse(s.out)["totals"]["queued"] == 0;
  });
  r = RunCommand({BUD_BROKER_BIN, "stats", "-c", broker_config});
  CHECK_THAT(r.out, Catch::Matchers::Contains("(nothing queued)"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("3 message id(s) seen; 3 report(s) applied"));
}

}  // namespace
}  // namespace bud::test
