// `bud-registry db init | db migrate | db check`, `add`, `list` and `backup` as real processes,
// on SQLite and on a real PostgreSQL server started by the test, with the errors an operator
// meets: a connection string that is not one, one that carries a password, a database that does
// not exist, a wrong password, a server that is down, a read-only server. No output ever shows
// the password.
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "tests/ops/fixtures.h"
#include "tests/support/postgres.h"

namespace bud::test {
namespace {

using Catch::Matchers::Contains;

TomlConfig PgRegistryConfig(const OpsFolder& f, const PostgresServer& pg,
                            const std::string& url = "") {
  TomlConfig c = f.RegistryConfig();
  c["registry"].erase("store");
  c["store"] = {{"backend", Quoted("postgresql")},
                {"url", Quoted(url.empty() ? pg.ConnString() : url)},
                {"password_file", Quoted(pg.PasswordFile())}};
  return c;
}

CommandResult Registry(std::vector<std::string> args) {
  args.insert(args.begin(), BUD_REGISTRY_BIN);
  return RunCommand(args, Millis(60000));
}

CommandResult AddAgency(const OpsFolder& f, const std::string& config) {
  return Registry({"add", "--config", config, "--orgnr", f.orgnr(), "--name", "Etat A",
                   "--signing-cert", f.Path("keys/signing.pem"), "--encryption-cert",
                   f.Path("keys/encryption.pem"), "--curve-public-key", f.ip_key, "--broker",
                   "tcp://127.0.0.1:7700", "--process", kProcess});
}

void NoPassword(const CommandResult& r, const PostgresServer& pg) {
  CHECK(r.out.find(pg.Password()) == std::string::npos);
  CHECK(r.err.find(pg.Password()) == std::string::npos);
}

TEST_CASE("bud-registry db verbs, add, list and backup on PostgreSQL", "[ops][pg]") {
  PostgresServer pg;
  OpsFolder f;
  const std::string config = f.Write("registry.toml", PgRegistryConfig(f, pg));

  auto check = Registry({"run", "--config", config, "--check-config"});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
  CHECK_THAT(check.out, Contains("postgresql host=127.0.0.1"));
  NoPassword(check, pg);

  auto before = Registry({"db", "check", "--config", config});
  INFO(before.out << before.err);
  CHECK(before.exit_code == 1);
  CHECK_THAT(before.out, Contains("schema version: 0"));
  CHECK_THAT(before.err, Contains("db init"));

  auto init = Registry({"db", "init", "--config", config});
  INFO(init.out << init.err);
  CHECK(init.exit_code == 0);
  CHECK_THAT(init.out, Contains("registry schema version 1 (created)"));
  auto again = Registry({"db", "migrate", "--config", config});
  CHECK(again.exit_code == 0);
  CHECK_THAT(again.out, Contains("(already current)"));

  auto ok = Registry({"db", "check", "--config", config});
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, Contains("engine:         postgresql"));
  CHECK_THAT(ok.out, Contains("PostgreSQL 15"));
  CHECK_THAT(ok.out, Contains("writable:       yes"));
  CHECK_THAT(ok.out, Contains("db check OK"));
  NoPassword(ok, pg);

  auto add = AddAgency(f, config);
  INFO(add.out << add.err);
  REQUIRE(add.exit_code == 0);
  auto list = Registry({"list", "--config", config, "--json"});
  REQUIRE(list.exit_code == 0);
  auto entries = nlohmann::json::parse(list.out);
  REQUIRE(entries.size() == 1);
  CHECK(entries[0]["orgnr"] == f.orgnr());
  CHECK(entries[0]["curvePublicKey"] == f.ip_key);

  SECTION("backup is a pg_dump that restores") {
    const std::string out = f.Path("registry.dump");
    auto b = Registry({"backup", "--config", config, "--out", out});
    INFO(b.out << b.err);
    REQUIRE(b.exit_code == 0);
    CHECK_THAT(b.out, Contains("pg_restore --list ok"));
    CHECK(ModeOf(out) != -1);
    NoPassword(b, pg);
    auto twice = Registry({"backup", "--config", config, "--out", out});
    CHECK(twice.exit_code == 1);
    CHECK_THAT(twice.err, Contains("exists"));

    // Restore it into a new database and read it with a registry pointed there.
    pg.AdminExec("CREATE DATABASE restored OWNER bud");
    auto restore = RunCommand({PostgresServer::BinDir() + "/pg_restore", "--no-owner", "-h",
                               pg.dir() + "/sock", "-p", std::to_string(pg.Port()), "-U", "postgres",
                               "-d", "restored", out},
                              Millis(60000));
    INFO(restore.out << restore.err);
    REQUIRE(restore.exit_code == 0);
    pg.AdminExec("GRANT ALL ON ALL TABLES IN SCHEMA public TO bud", "restored");
    const std::string restored_config =
        f.Write("restored.toml", PgRegistryConfig(f, pg, pg.ConnString("restored")));
    auto restored = Registry({"list", "--config", restored_config, "--json"});
    INFO(restored.out << restored.err);
    REQUIRE(restored.exit_code == 0);
    auto rows = nlohmann::json::parse(restored.out);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0]["orgnr"] == f.orgnr());
  }
  SECTION("clear errors") {
    auto missing_db = Registry({"db", "check", "--config",
                                f.Write("nodb.toml", PgRegistryConfig(f, pg, pg.ConnString("nodb")))});
    INFO(missing_db.err);
    CHECK(missing_db.exit_code == 1);
    CHECK_THAT(missing_db.err, Contains("NOT_FOUND"));
    CHECK_THAT(missing_db.err, Contains("database \"nodb\" does not exist"));

    auto bad_url = Registry({"db", "check", "--config",
                             f.Write("badurl.toml", PgRegistryConfig(f, pg, "host=127.0.0.1 port"))});
    CHECK(bad_url.exit_code == 1);
    CHECK_THAT(bad_url.err, Contains("store.url"));
    CHECK_THAT(bad_url.err, Contains("not a libpq connection string"));

    auto with_pw = Registry(
        {"db", "check", "--config",
         f.Write("pw.toml", PgRegistryConfig(f, pg, pg.ConnString() + " password=" + pg.Password()))});
    CHECK(with_pw.exit_code == 1);
    CHECK_THAT(with_pw.err, Contains("carries a password"));
    NoPassword(with_pw, pg);

    WriteFileMode(f.Path("wrong-pw"), "not-the-password\n", 0600);
    TomlConfig wrong = PgRegistryConfig(f, pg);
    wrong["store"]["password_file"] = Quoted(f.Path("wrong-pw"));
    auto bad_pw = Registry({"db", "check", "--config", f.Write("wrongpw.toml", wrong)});
    INFO(bad_pw.err);
    CHECK(bad_pw.exit_code == 1);
    CHECK_THAT(bad_pw.err, Contains("CONFIG"));
    CHECK_THAT(bad_pw.err, Contains("password authentication failed"));

    ::chmod(pg.PasswordFile().c_str(), 0644);
    auto open_pw = Registry({"run", "--config", config, "--check-config"});
    ::chmod(pg.PasswordFile().c_str(), 0600);
    CHECK(open_pw.exit_code == 1);
    CHECK_THAT(open_pw.err, Contains("store.password_file"));

    pg.AdminExec("ALTER DATABASE bud SET default_transaction_read_only = on");
    auto ro_check = Registry({"db", "check", "--config", config});
    INFO(ro_check.out << ro_check.err);
    CHECK(ro_check.exit_code == 1);
    CHECK_THAT(ro_check.out, Contains("writable:       NO"));
    auto ro_add = AddAgency(f, config);
    INFO(ro_add.err);
    CHECK(ro_add.exit_code == 1);
    CHECK_THAT(ro_add.err, Contains("UNAVAILABLE"));
    CHECK_THAT(ro_add.err, Contains("read-only"));
    pg.AdminExec("ALTER DATABASE bud RESET default_transaction_read_only");

    pg.Stop();
    auto down = Registry({"db", "check", "--config", config});
    INFO(down.err);
    CHECK(down.exit_code == 1);
    CHECK_THAT(down.err, Contains("UNAVAILABLE"));
    CHECK_THAT(down.err, Contains(std::to_string(pg.Port())));
    auto down_backup = Registry({"backup", "--config", config, "--out", f.Path("down.dump")});
    CHECK(down_backup.exit_code == 1);
    CHECK_FALSE(PathExists(f.Path("down.dump")));
    pg.Start();
  }
}

TEST_CASE("bud-registry db verbs on SQLite", "[ops]") {
  OpsFolder f;
  TomlConfig c = f.RegistryConfig();
  c["registry"].erase("store");
  c["store"] = {{"backend", Quoted("sqlite")}, {"path", Quoted("registry.db")}};
  const std::string config = f.Write("registry.toml", c);

  auto before = Registry({"db", "check", "--config", config});
  CHECK(before.exit_code == 1);
  CHECK_THAT(before.err, Contains("db init"));
  CHECK_FALSE(PathExists(f.Path("registry.db")));

  auto init = Registry({"db", "init", "--config", config});
  INFO(init.out << init.err);
  CHECK(init.exit_code == 0);
  CHECK_THAT(init.out, Contains("sqlite " + f.Path("registry.db")));
  CHECK_THAT(init.out, Contains("registry schema version 1 (created)"));
  CHECK(ModeOf(f.Path("registry.db")) == 0600);

  auto ok = Registry({"db", "check", "--config", config});
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, Contains("engine:         sqlite"));
  CHECK_THAT(ok.out, Contains("db check OK"));

  REQUIRE(AddAgency(f, config).exit_code == 0);
  auto b = Registry({"backup", "--config", config, "--out", f.Path("copy.db")});
  INFO(b.out << b.err);
  CHECK(b.exit_code == 0);
  CHECK_THAT(b.out, Contains("integrity_check ok"));

  // Keys of the other engine are refused, naming the key.
  c["store"]["url"] = Quoted("host=127.0.0.1");
  auto mixed = Registry({"db", "check", "--config", f.Write("mixed.toml", c)});
  CHECK(mixed.exit_code == 1);
  CHECK_THAT(mixed.err, Contains("store.url"));
  // Both the old and the new place of the file: refused too.
  c["store"].erase("url");
  c["registry"]["store"] = Quoted("other.db");
  auto both = Registry({"db", "check", "--config", f.Write("both.toml", c)});
  CHECK(both.exit_code == 1);
  CHECK_THAT(both.err, Contains("keep one"));
}

}  // namespace
}  // namespace bud::test
