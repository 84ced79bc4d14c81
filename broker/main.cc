// bud-broker: the central store-and-forward broker. Thin main over the broker library.
#include <CLI/CLI.hpp>
#include <iostream>

#include "broker/admin.h"
#include "broker/config.h"
#include "broker/metrics.h"
#include "broker/server.h"
#include "broker/store_factory.h"
#include "common/log.h"
#include "common/runtime.h"
#include "common/wire/curve.h"

int main(int argc, char** argv) {
  using namespace bud;
  CLI::App app{"bud-broker: Budstikke broker"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "bud-broker " BUD_VERSION);
  std::string config_path;
  bool check_config = false;
  auto* run = app.add_subcommand("run", "serve integration points");
  run->add_option("-c,--config", config_path, "config file (TOML)")->required();
  run->add_flag(
      "--check-config", check_config,
      "check the config and every file it names, then exit 0 (OK) or 1; binds and creates nothing");
  std::string keygen_out;
  auto* keygen = app.add_subcommand("keygen", "make a CURVE key pair file and print its public key");
  keygen->add_option("--out", keygen_out, "key file to create (mode 0600)")->required();

  std::string store_path;
  bool json = false;
  auto* stats = app.add_subcommand(
      "stats",
      "what is queued per receiver and waiting per sender (read-only, beside a running "
      "broker)");
  auto* stats_config = stats->add_option("-c,--config", config_path, "config file (TOML)");
  stats->add_option("--store", store_path, "the broker store, instead of --config")
      ->excludes(stats_config);
  stats->add_flag("--json", json, "JSON instead of a table");

  auto* db = app.add_subcommand("db", "the store's schema and connection");
  db->require_subcommand(1);
  auto* db_init = db->add_subcommand("init", "create the store's schema (or migrate an older one)");
  db_init->add_option("-c,--config", config_path, "config file (TOML)")->required();
  auto* db_migrate = db->add_subcommand("migrate", "migrate the store's schema to this release's");
  db_migrate->add_option("-c,--config", config_path, "config file (TOML)")->required();
  auto* db_check = db->add_subcommand(
      "check", "connect and report: engine, server, schema version, writable; creates nothing");
  db_check->add_option("-c,--config", config_path, "config file (TOML)")->required();

  std::string backup_out;
  auto* backup = app.add_subcommand(
      "backup", "consistent online copy of the store (while the broker runs): SQLite's online "
                "backup, integrity-checked, or pg_dump of the broker's tables on PostgreSQL");
  backup->add_option("-c,--config", config_path, "config file (TOML)")->required();
  backup->add_option("--out", backup_out, "the copy to create (never overwritten)")->required();
  CLI11_PARSE(app, argc, argv);
  if (*keygen) return wire::KeygenCommand(keygen_out, "bud-broker");
  if (*stats && store_path.empty() && config_path.empty()) {
    std::cerr << "bud-broker stats: give --config or --store\n";
    return 1;
  }
  // `stats --store FILE` needs no config.
  auto config =
      *stats && !store_path.empty() ? broker::Config{} : broker::Config::Load(config_path);
  if (!config.ok()) {
    std::cerr << "bud-broker: " << config.status().message() << "\n";
    return 1;
  }
  if (check_config) return PrintResult(broker::CheckConfig(*config, config_path), "bud-broker");
  if (*stats) {
    if (store_path.empty() && !config->storage.sqlite()) {
      return PrintResult(broker::StatsCommand(*config, json), "bud-broker stats");
    }
    return PrintResult(broker::StatsCommand(store_path.empty() ? config->store : store_path, json),
                       "bud-broker stats");
  }
  if (*backup) {
    if (config->storage.sqlite()) return BackupCommand(config->store, backup_out, "bud-broker");
    return PrintResult(broker::BackupPgStoreCommand(*config, backup_out), "bud-broker backup");
  }
  if (*db_init || *db_migrate) {
    const char* verb = *db_init ? "db init" : "db migrate";
    return PrintResult(broker::DbMigrateCommand(*config, verb), std::string("bud-broker ") + verb);
  }
  if (*db_check) return PrintResult(broker::DbCheckCommand(*config), "bud-broker db check");
  // The loop writes each turn's lines at its end (Server::Run): a write(2) per line was 7 % of
  // the broker's CPU at 48,000 messages a second.
  SetupLogging(config->log_level, config->log_file, LogFlush::kWhenAsked);
  InstallStopSignals();
  zmq::context_t ctx(1);
  broker::Server server(*config, ctx);
  std::unique_ptr<broker::BrokerHttp> http;
  Status s;
  if (!config->http.listen.empty()) {
    http = std::make_unique<broker::BrokerHttp>(*config, server.metrics());
    s = http->Start();
  }
  if (s.ok()) s = server.Run();
  http.reset();
  if (!s.ok()) {
    Logger("broker")->critical("{}", s.ToString());
    std::cerr << "bud-broker: " << s.ToString() << "\n";
    return 1;
  }
  return 0;
}
