// The registry with its store on PostgreSQL, as real processes: a whole exchange whose
// bud-registry keeps its entries in a PostgreSQL 15 server started by the test
// (tests/support/postgres.h). The registry is SIGKILLed and restarted, and PostgreSQL itself is
// SIGKILLed and restarted under the running registry, which must find it again by itself.
#include <catch2/catch.hpp>
#include <string>

#include "common/uuid.h"
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

}  // namespace
}  // namespace bud::test
