// The registry's store on a replicated PostgreSQL cluster started by the test: one primary and
// two streaming standbys, synchronous_standby_names = 'ANY 1 (s1, s2)'. Entries are put (each
// acknowledged only once a standby has it), the primary is SIGKILLed and the most advanced
// standby promoted; the same store object, whose connection string names all three servers,
// must find the new primary by itself, and every acknowledged entry must be there. A second
// case shows that the check sees a loss: asynchronous replication with the standby behind.
#include <catch2/catch.hpp>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "address-registry/store.h"
#include "tests/integration/harness.h"
#include "tests/support/postgres.h"

namespace bud::test {
namespace {

// "16/B374D848" -> a number that orders like the WAL position.
uint64_t ParseLsn(const std::string& lsn) {
  unsigned hi = 0, lo = 0;
  if (std::sscanf(lsn.c_str(), "%X/%X", &hi, &lo) != 2) return 0;
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

wire::RegistryEntry Entry(const std::string& orgnr, int n) {
  wire::RegistryEntry e;
  e.set_orgnr(orgnr);
  e.set_name("Agency " + std::to_string(n));
  std::string body;
  for (unsigned char c : SeededBytes(1500, static_cast<uint32_t>(n))) body += static_cast<char>('A' + c % 26);
  e.set_signing_cert_pem("-----BEGIN CERTIFICATE-----\n" + body + "\n-----END CERTIFICATE-----\n");
  e.set_broker_endpoint("tcp://127.0.0.1:7700");
  e.add_processes(kProcess);
  e.set_updated_unix_ms(1700000000000 + n);
  return e;
}

// Organisation numbers with a valid mod-11 check digit: 8 digits from `n`, then the check digit
// (numbers whose check digit would be 10 are skipped).
std::vector<std::string> Orgnrs(int count) {
  static const int kWeights[8] = {3, 2, 7, 6, 5, 4, 3, 2};
  std::vector<std::string> out;
  for (int base = 91000000; static_cast<int>(out.size()) < count; ++base) {
    std::string d = std::to_string(base);
    int sum = 0;
    for (int i = 0; i < 8; ++i) sum += (d[static_cast<size_t>(i)] - '0') * kWeights[i];
    int check = 11 - sum % 11;
    if (check == 10) continue;
    if (check == 11) check = 0;
    out.push_back(d + std::to_string(check));
  }
  return out;
}

// The acknowledged organisations that `store` (reconnecting as needed) does not list.
std::vector<std::string> LostEntries(registry::RegistryStore& store,
                                     const std::vector<std::string>& acknowledged) {
  auto listed = store.List();
  INFO(listed.status().ToString());
  REQUIRE(listed.ok());
  std::set<std::string> present;
  for (const auto& e : *listed) present.insert(e.orgnr());
  std::vector<std::string> lost;
  for (const auto& org : acknowledged) {
    if (present.count(org) == 0) lost.push_back(org);
  }
  CHECK(present.size() + lost.size() == acknowledged.size());
  return lost;
}

TEST_CASE("registry on PostgreSQL: acknowledged entries survive the primary's loss and the store "
          "finds the promoted standby",
          "[registry][pg][failover]") {
  PostgresServer primary;
  auto s1 = primary.StartStandby("s1");
  auto s2 = primary.StartStandby("s2");
  primary.SetSynchronousStandbys("ANY 1 (s1, s2)");
  WaitUntil("both standbys to stream as quorum standbys", Millis(60000), [&] {
    return primary.AdminQuery("SELECT count(*)::text FROM pg_stat_replication WHERE state = "
                              "'streaming' AND sync_state = 'quorum'") == "2";
  });

  storage::StoreConfig config;
  config.backend = storage::Backend::kPostgres;
  config.url = "host=127.0.0.1,127.0.0.1,127.0.0.1 port=" + std::to_string(primary.Port()) + "," +
               std::to_string(s1->Port()) + "," + std::to_string(s2->Port()) +
               " dbname=bud user=bud connect_timeout=3";
  config.password_file = primary.PasswordFile();
  auto opened = registry::OpenRegistryStore(config);
  INFO(opened.status().ToString());
  REQUIRE(opened.ok());
  auto store = std::move(opened).value();

  const auto orgs = Orgnrs(60);
  std::vector<std::string> acknowledged;
  for (int i = 0; i < 50; ++i) {
    Status s = store->Put(Entry(orgs[static_cast<size_t>(i)], i));
    INFO(s.ToString());
    REQUIRE(s.ok());
    acknowledged.push_back(orgs[static_cast<size_t>(i)]);
  }

  primary.Kill();
  // Promote the standby that received the most WAL (what the failover tooling does).
  const uint64_t lsn1 = ParseLsn(s1->AdminQuery("SELECT pg_last_wal_receive_lsn()::text"));
  const uint64_t lsn2 = ParseLsn(s2->AdminQuery("SELECT pg_last_wal_receive_lsn()::text"));
  PostgresServer& promoted = lsn1 >= lsn2 ? *s1 : *s2;
  promoted.Promote();
  WaitUntil("the promoted standby to take writes", Millis(30000),
            [&] { return promoted.AdminQuery("SELECT pg_is_in_recovery()::text") == "false"; });

  // The same store object: its connection is dead; the next call reconnects through the
  // multi-host string, skips the dead primary and the remaining standby, and lands on the new
  // primary.
  const auto lost = LostEntries(*store, acknowledged);
  std::printf("failover test (synchronous, ANY 1): %zu acknowledged entries, %zu lost after "
              "promoting %s\n",
              acknowledged.size(), lost.size(), &promoted == s1.get() ? "s1" : "s2");
  CHECK(lost.empty());

  // And it writes there.
  for (int i = 50; i < 60; ++i) {
    Status s = store->Put(Entry(orgs[static_cast<size_t>(i)], i));
    INFO(s.ToString());
    CHECK(s.ok());
  }
  CHECK(promoted.AdminQuery("SELECT count(*)::text FROM registry_entries", "bud") == "60");
}

// The check above can fail: with asynchronous replication, entries acknowledged while the
// standby was not receiving (here: stopped, the extreme of a lagging standby) are gone after
// the promotion, and LostEntries sees every one of them.
TEST_CASE("registry failover check: asynchronous replication loses acknowledged entries, and the "
          "check sees it",
          "[registry][pg][failover]") {
  PostgresServer primary;
  auto standby = primary.StartStandby("s1");
  storage::StoreConfig config;
  config.backend = storage::Backend::kPostgres;
  config.url = "host=127.0.0.1,127.0.0.1 port=" + std::to_string(primary.Port()) + "," +
               std::to_string(standby->Port()) + " dbname=bud user=bud connect_timeout=3";
  config.password_file = primary.PasswordFile();
  auto opened = registry::OpenRegistryStore(config);
  INFO(opened.status().ToString());
  REQUIRE(opened.ok());
  auto store = std::move(opened).value();
  // The schema reaches the standby before it stops.
  WaitUntil("the standby to replay the schema", Millis(30000), [&] {
    return standby->AdminQuery("SELECT (to_regclass('registry_entries') IS NOT NULL)::text", "bud") ==
           "true";
  });
  standby->Stop();

  const auto orgs = Orgnrs(20);
  std::vector<std::string> acknowledged;
  for (int i = 0; i < 20; ++i) {
    Status s = store->Put(Entry(orgs[static_cast<size_t>(i)], i));
    INFO(s.ToString());
    REQUIRE(s.ok());  // asynchronous: acknowledged without any standby
    acknowledged.push_back(orgs[static_cast<size_t>(i)]);
  }
  primary.Kill();
  standby->Start();
  standby->Promote();
  WaitUntil("the promoted standby to take writes", Millis(30000),
            [&] { return standby->AdminQuery("SELECT pg_is_in_recovery()::text") == "false"; });
  const auto lost = LostEntries(*store, acknowledged);
  std::printf("failover test (asynchronous, standby behind): %zu acknowledged entries, %zu lost\n",
              acknowledged.size(), lost.size());
  CHECK(lost.size() == acknowledged.size());
}

}  // namespace
}  // namespace bud::test
