// `bud-broker db init | db migrate | db check`, `stats`, `backup` and `run` as real processes on
// a real PostgreSQL server started by the test ([store] backend = "postgresql"), and on SQLite,
// with the errors an operator meets: a database that does not exist, a connection string that
// carries a password, a read-only server, a server that is down. No output shows the password.
#include <catch2/catch.hpp>

#include "tests/ops/fixtures.h"
#include "tests/support/postgres.h"

namespace bud::test {
namespace {

using Catch::Matchers::Contains;

TomlConfig PgBrokerConfig(const OpsFolder& f, const PostgresServer& pg,
                          const std::string& url = "") {
  TomlConfig c = f.BrokerConfig();
  c["broker"].erase("store");
  c["store"] = {{"backend", Quoted("postgresql")},
                {"url", Quoted(url.empty() ? pg.ConnString() : url)},
                {"password_file", Quoted(pg.PasswordFile())}};
  return c;
}

CommandResult Broker(std::vector<std::string> args) {
  args.insert(args.begin(), BUD_BROKER_BIN);
  return RunCommand(args, Millis(60000));
}

void NoPassword(const CommandResult& r, const PostgresServer& pg) {
  CHECK(r.out.find(pg.Password()) == std::string::npos);
  CHECK(r.err.find(pg.Password()) == std::string::npos);
}

TEST_CASE("bud-broker db verbs, stats, backup and run on PostgreSQL", "[ops][pg]") {
  PostgresServer pg;
  OpsFolder f;
  const std::string config = f.Write("broker.toml", PgBrokerConfig(f, pg));

  auto check = Broker({"run", "--config", config, "--check-config"});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
  CHECK_THAT(check.out, Contains("postgresql host=127.0.0.1"));
  NoPassword(check, pg);

  auto before = Broker({"db", "check", "--config", config});
  INFO(before.out << before.err);
  CHECK(before.exit_code == 1);
  CHECK_THAT(before.err, Contains("schema version: 0"));
  CHECK_THAT(before.err, Contains("db init"));

  auto init = Broker({"db", "init", "--config", config});
  INFO(init.out << init.err);
  CHECK(init.exit_code == 0);
  CHECK_THAT(init.out, Contains("broker schema version 5 (created"));
  auto again = Broker({"db", "migrate", "--config", config});
  INFO(again.out << again.err);
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.out, Contains("already current"));

  auto ok = Broker({"db", "check", "--config", config});
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, Contains("engine:         postgresql"));
  CHECK_THAT(ok.out, Contains("writable:       yes"));
  CHECK_THAT(ok.out, Contains("db check OK"));
  NoPassword(ok, pg);

  auto stats = Broker({"stats", "--config", config});
  INFO(stats.out << stats.err);
  CHECK(stats.exit_code == 0);
  CHECK_THAT(stats.out, Contains("(nothing queued)"));
  CHECK_THAT(stats.out, Contains("PostgreSQL"));

  SECTION("run serves on PostgreSQL and stops on SIGTERM") {
    Process broker("broker", {BUD_BROKER_BIN, "run", "--config", config}, f.root(),
                   f.Path("broker.log"));
    broker.Start();
    broker.WaitForLog("broker listening on");
    CHECK_THAT(broker.LogSinceStart(), Contains("PostgreSQL"));
    CHECK(PathExists(f.Path("broker.endpoint")));
    CHECK_FALSE(PathExists(f.Path("spool")));  // the chunks are rows of the database
    broker.Stop();
    CHECK(broker.ExitCode() == 0);
  }
  SECTION("backup is a pg_dump of the broker's tables") {
    const std::string out = f.Path("broker.dump");
    auto b = Broker({"backup", "--config", config, "--out", out});
    INFO(b.out << b.err);
    REQUIRE(b.exit_code == 0);
    CHECK_THAT(b.out, Contains("pg_dump"));
    CHECK(PathExists(out));
    NoPassword(b, pg);
    auto twice = Broker({"backup", "--config", config, "--out", out});
    CHECK(twice.exit_code == 1);
    CHECK_THAT(twice.err, Contains("exists"));
    auto list = RunCommand({PostgresServer::BinDir() + "/pg_restore", "--list", out}, Millis(60000));
    INFO(list.out << list.err);
    REQUIRE(list.exit_code == 0);
    CHECK_THAT(list.out, Contains("broker_seen"));
    CHECK_THAT(list.out, Contains("broker_messages"));
  }
  SECTION("clear errors") {
    auto missing_db = Broker({"db", "check", "--config",
                              f.Write("nodb.toml", PgBrokerConfig(f, pg, pg.ConnString("nodb")))});
    INFO(missing_db.err);
    CHECK(missing_db.exit_code == 1);
    CHECK_THAT(missing_db.err, Contains("database \"nodb\" does not exist"));
    auto run_missing = Broker({"run", "--config", f.Path("nodb.toml")});
    CHECK(run_missing.exit_code == 1);
    CHECK_THAT(run_missing.err, Contains("NOT_FOUND"));

    auto with_pw = Broker(
        {"db", "check", "--config",
         f.Write("pw.toml", PgBrokerConfig(f, pg, pg.ConnString() + " password=" + pg.Password()))});
    CHECK(with_pw.exit_code == 1);
    CHECK_THAT(with_pw.err, Contains("carries a password"));
    NoPassword(with_pw, pg);


    pg.AdminExec("ALTER DATABASE bud SET default_transaction_read_only = on");
    auto ro_check = Broker({"db", "check", "--config", config});
    INFO(ro_check.out << ro_check.err);
    CHECK(ro_check.exit_code == 1);
    CHECK_THAT(ro_check.err, Contains("writable:       NO"));
    auto ro_run = Broker({"run", "--config", config});
    INFO(ro_run.err);
    CHECK(ro_run.exit_code == 1);
    CHECK_THAT(ro_run.err, Contains("read-only"));
    pg.AdminExec("ALTER DATABASE bud RESET default_transaction_read_only");

    pg.Stop();
    auto down = Broker({"db", "check", "--config", config});
    INFO(down.err);
    CHECK(down.exit_code == 1);
    CHECK_THAT(down.err, Contains(std::to_string(pg.Port())));
    auto down_run = Broker({"run", "--config", config});
    CHECK(down_run.exit_code == 1);
    CHECK_THAT(down_run.err, Contains("UNAVAILABLE"));
    auto down_backup = Broker({"backup", "--config", config, "--out", f.Path("down.dump")});
    CHECK(down_backup.exit_code == 1);
    CHECK_FALSE(PathExists(f.Path("down.dump")));
    pg.Start();
  }
}

TEST_CASE("bud-broker db verbs on SQLite", "[ops]") {
  OpsFolder f;
  TomlConfig c = f.BrokerConfig();
  c["broker"].erase("store");
  c["store"] = {{"backend", Quoted("sqlite")}, {"path", Quoted("broker.db")}};
  const std::string config = f.Write("broker.toml", c);

  auto before = Broker({"db", "check", "--config", config});
  CHECK(before.exit_code == 1);
  CHECK_THAT(before.err, Contains("there is no broker store"));
  CHECK_FALSE(PathExists(f.Path("broker.db")));

  auto init = Broker({"db", "init", "--config", config});
  INFO(init.out << init.err);
  CHECK(init.exit_code == 0);
  CHECK_THAT(init.out, Contains("sqlite " + f.Path("broker.db")));
  CHECK(ModeOf(f.Path("broker.db")) == 0600);

  auto ok = Broker({"db", "check", "--config", config});
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, Contains("engine:         sqlite"));
  CHECK_THAT(ok.out, Contains("db check OK"));

  auto b = Broker({"backup", "--config", config, "--out", f.Path("copy.db")});
  INFO(b.out << b.err);
  CHECK(b.exit_code == 0);
  CHECK_THAT(b.out, Contains("integrity_check ok"));

  c["store"]["url"] = Quoted("host=127.0.0.1");
  auto mixed = Broker({"db", "check", "--config", f.Write("mixed.toml", c)});
  CHECK(mixed.exit_code == 1);
  CHECK_THAT(mixed.err, Contains("store.url"));
}

}  // namespace
}  // namespace bud::test
