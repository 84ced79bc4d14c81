// The registry with its store on PostgreSQL, as real processes: a whole exchange whose
// bud-registry keeps its entries in a PostgreSQL 15 server started by the test
// (tests/support/postgres.h). The registry is SIGKILLed and restarted, and PostgreSQL itself is
// SIGKILLed and restarted under the running registry, which must find it again by itself.
#include <catch2/catch.hpp>
#include <string>
#include <zmq.hpp>

#include "common/orgnr.h"
#include "common/registry_client.h"
#include "common/uuid.h"
#include "common/wire/curve.h"
#include "tests/integration/harness.h"
#include "tests/support/postgres.h"

namespace bud::test {
namespace {

std::string Send(Exchange& ex, const std::string& from, const std::string& to, int n) {
  nlohmann::json meta = Exchange::Metadata(to);
  const std::string id = NewUuid();
  meta["messageId"] = id;
  meta["title"] = "registry on PostgreSQL " + std::to_string(n);
  ex.DropFolder(from, "m" + std::to_string(n), meta.dump(),
                {{"brev.txt", SeededBytes(5000 + n, static_cast<uint32_t>(n))}});
  return id;
}

std::string RegistrySessions(const PostgresServer& pg) {
  return pg.AdminQuery(
      "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'bud-registry'");
}

TEST_CASE("a registry on PostgreSQL survives its own SIGKILL and a restart of PostgreSQL",
          "[integration][pg]") {
  PostgresServer pg;
  ExchangeOptions options;
  options.registry_store_url = pg.ConnString();
  options.registry_store_password_file = pg.PasswordFile();
  Exchange ex(std::move(options));
  CHECK_FALSE(PathExists(ex.root() + "/registry/registry.db"));

  const std::string first = Send(ex, kAgencyA, kAgencyB, 1);
  ex.WaitForInbox(kAgencyB, first);
  ex.WaitForStatus(kAgencyA, first, "MOTTATT");

  INFO("the registry SIGKILLed and started again: the entries are where they were");
  ex.registry().Kill();
  ex.StartRegistry();
  const std::string second = Send(ex, kAgencyB, kAgencyA, 2);
  ex.WaitForInbox(kAgencyA, second);
  ex.WaitForStatus(kAgencyB, second, "MOTTATT");

  INFO("PostgreSQL SIGKILLed and started again under the running registry");
  pg.Kill();
  pg.Start();
  CHECK(RegistrySessions(pg) == "0");
  // A restarted integration point makes the registry look its CURVE key up (ZAP) and the
  // receiver's entry; the registry's store reconnects on that first call.
  ex.ip(kAgencyA).Stop();
  ex.StartIp(kAgencyA);
  const std::string third = Send(ex, kAgencyA, kAgencyB, 3);
  ex.WaitForInbox(kAgencyB, third);
  ex.WaitForStatus(kAgencyA, third, "MOTTATT");
  WaitUntil("the registry to hold a new PostgreSQL session", Millis(10000),
            [&] { return RegistrySessions(pg) == "1"; });
  CHECK(ex.registry().Running());

  auto list = RunCommand({BUD_REGISTRY_BIN, "list", "--config", ex.root() + "/registry/registry.toml",
                          "--json"});
  INFO(list.err);
  REQUIRE(list.exit_code == 0);
  CHECK(nlohmann::json::parse(list.out).size() == 2);
}

// Found by the chaos test: while PostgreSQL failed over, the registry refused the points' new
// CURVE connections and logged their keys as "not registered". It still refuses them (it cannot
// tell), but says that it cannot look the key up, and admits them once the store is back.
TEST_CASE("a registry whose PostgreSQL is down says so when it refuses a connection",
          "[integration][pg]") {
  PostgresServer pg;
  ExchangeOptions options;
  options.registry_store_url = pg.ConnString();
  options.registry_store_password_file = pg.PasswordFile();
  options.start_ips = false;
  Exchange ex(std::move(options));
  auto keys = wire::LoadCurveKeyFile(ex.CurveKeyFile(kAgencyA));
  REQUIRE(keys.ok());
  const Orgnr b = *Orgnr::Parse(kAgencyB);
  zmq::context_t ctx;

  pg.Kill();
  {
    RegistryClient client(ctx, ex.registry_endpoint(), /*timeout_ms=*/1500, /*cache_ms=*/0, *keys,
                          ex.registry_public_key());
    CHECK_FALSE(client.Lookup(b).ok());
  }
  ex.registry().WaitForLog("cannot look up CURVE key " + keys->public_key, Millis(10000));
  CHECK(ex.registry().LogSinceStart().find("CURVE key " + keys->public_key +
                                           " is not registered") == std::string::npos);

  pg.Start();
  RegistryClient client(ctx, ex.registry_endpoint(), /*timeout_ms=*/1500, /*cache_ms=*/0, *keys,
                        ex.registry_public_key());
  Result<wire::RegistryEntry> entry = Status(Code::kUnavailable, "not asked yet");
  WaitUntil("a lookup through the registry once PostgreSQL is back", Millis(20000), [&] {
    entry = client.Lookup(b);
    return entry.ok();
  });
  CHECK(entry->orgnr() == kAgencyB);
  CHECK(ex.registry().Running());
}

}  // namespace
}  // namespace bud::test
