// bud-registry: the address registry. Thin main: parses the command line and calls the library.
#include <CLI/CLI.hpp>
#include <iostream>

#include "address-registry/admin.h"
#include "address-registry/config.h"
#include "address-registry/health.h"
#include "address-registry/server.h"
#include "common/log.h"
#include "common/runtime.h"
#include "common/wire/curve.h"

int main(int argc, char** argv) {
  using namespace bud;
  CLI::App app{"bud-registry: Budstikke address registry"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "bud-registry " BUD_VERSION);
  std::string config_path;
  bool check_config = false;

  auto* run = app.add_subcommand("run", "serve lookups");
  run->add_option("-c,--config", config_path, "config file (TOML)")->required();
  run->add_flag(
      "--check-config", check_config,
      "check the config and every file it names, then exit 0 (OK) or 1; binds and creates nothing");

  registry::AddRequest add_req;
  auto* add = app.add_subcommand("add", "add or replace an organisation's entry");
  add->add_option("-c,--config", config_path)->required();
  add->add_option("--orgnr", add_req.orgnr, "organisation number")->required();
  add->add_option("--name", add_req.name, "organisation name")->required();
  add->add_option("--signing-cert", add_req.signing_cert_file, "signing certificate (PEM)")->required();
  add->add_option("--encryption-cert", add_req.encryption_cert_file, "encryption certificate (PEM)")->required();
  add->add_option("--next-signing-cert", add_req.next_signing_cert_file,
                  "the next signing certificate, during a rotation (PEM)");
  add->add_option("--next-encryption-cert", add_req.next_encryption_cert_file,
                  "the next encryption certificate, during a rotation (PEM)");
  add->add_option("--curve-public-key", add_req.curve_public_key, "CURVE public key (Z85)");
  add->add_option("--broker", add_req.broker_endpoints,
                  "a broker endpoint of the organisation (repeatable: the order to try them)");
  add->add_option("--process", add_req.processes, "accepted process (repeatable)")->required();
  add->add_option("--document-type", add_req.document_types, "accepted document type (repeatable)");

  std::string remove_org;
  auto* remove = app.add_subcommand("remove", "remove an organisation's entry");
  remove->add_option("-c,--config", config_path)->required();
  remove->add_option("--orgnr", remove_org)->required();

  std::string brokers_org;
  std::vector<std::string> brokers;
  auto* set_brokers = app.add_subcommand(
      "set-brokers",
      "replace the broker endpoints of a registered organisation (the order to try "
      "them); no --broker removes them");
  set_brokers->add_option("-c,--config", config_path)->required();
  set_brokers->add_option("--orgnr", brokers_org)->required();
  set_brokers->add_option("--broker", brokers, "a broker endpoint (repeatable)");

  auto* health =
      app.add_subcommand("health",
                         "ask the running registry whether it can serve (its store readable and "
                         "writable); prints JSON, exits 0 (healthy) or 1");
  health->add_option("-c,--config", config_path, "the registry's config file (TOML)")->required();
  int64_t health_timeout_ms = 3000;
  health->add_option("--timeout-ms", health_timeout_ms, "how long to wait for the answer")
      ->check(CLI::Range(100, 600000));

  bool json = false;
  auto* list = app.add_subcommand("list", "list entries");
  list->add_option("-c,--config", config_path)->required();
  list->add_flag("--json", json, "JSON instead of a table");

  auto* crl_urls = app.add_subcommand(
      "crl-urls", "print the CRL Distribution Point URLs of every registered certificate, one per "
                  "line (fetch them into the CRL folders); certificates naming none on stderr");
  crl_urls->add_option("-c,--config", config_path)->required();

  std::string keygen_out;
  auto* keygen = app.add_subcommand("keygen", "make a CURVE key pair file and print its public key");
  keygen->add_option("--out", keygen_out, "key file to create (mode 0600)")->required();
  auto* db = app.add_subcommand("db", "the store's schema and connection");
  db->require_subcommand(1);
  auto* db_init = db->add_subcommand("init", "create the store's schema (or migrate an older one)");
  db_init->add_option("-c,--config", config_path, "config file (TOML)")->required();
  auto* db_migrate = db->add_subcommand("migrate", "migrate the store's schema to this release's");
  db_migrate->add_option("-c,--config", config_path, "config file (TOML)")->required();
  auto* db_check = db->add_subcommand(
      "check", "connect and report: server, schema version, writable; creates nothing");
  db_check->add_option("-c,--config", config_path, "config file (TOML)")->required();

  std::string backup_out;
  auto* backup = app.add_subcommand(
      "backup", "consistent online copy of the store (while the registry runs): SQLite's online "
                "backup, integrity-checked, or pg_dump of the registry's tables on PostgreSQL");
  backup->add_option("-c,--config", config_path, "config file (TOML)")->required();
  backup->add_option("--out", backup_out, "the copy to create (never overwritten)")->required();
  CLI11_PARSE(app, argc, argv);
  if (*keygen) return wire::KeygenCommand(keygen_out, "bud-registry");

  auto config = registry::Config::Load(config_path);
  if (!config.ok()) {
    std::cerr << "bud-registry: " << config.status().message() << "\n";
    return 1;
  }
  if (check_config) return PrintResult(registry::CheckConfig(*config, config_path), "bud-registry");
  if (*backup) {
    auto done = registry::BackupRegistryStore(config->store, backup_out);
    if (!done.ok()) {
      std::cerr << "bud-registry backup: " << done.status().ToString() << "\n";
      return 1;
    }
    std::cout << *done << "\n";
    return 0;
  }
  if (*db_init || *db_migrate) {
    const char* verb = *db_init ? "db init" : "db migrate";
    auto r = registry::MigrateRegistryStore(config->store);
    if (!r.ok()) {
      std::cerr << "bud-registry " << verb << ": " << r.status().ToString() << "\n";
      return 1;
    }
    std::cout << config->store.Describe() << ": registry schema version " << r->to;
    if (r->from == r->to) {
      std::cout << " (already current)\n";
    } else if (r->from == 0) {
      std::cout << " (created)\n";
    } else {
      std::cout << " (migrated from version " << r->from << ")\n";
    }
    return 0;
  }
  if (*db_check) {
    auto h = registry::CheckRegistryStore(config->store);
    if (!h.ok()) {
      std::cerr << "bud-registry db check: " << h.status().ToString() << "\n";
      return 1;
    }
    std::cout << "engine:         " << h->engine << "\n"
              << "store:          " << h->where << "\n";
    if (!h->server.empty()) std::cout << "server:         " << h->server << "\n";
    std::cout << "schema version: " << h->schema_version << " (this release: "
              << registry::kRegistrySchemaVersion << ")\n"
              << "entries:        " << h->entries << "\n"
              << "writable:       " << (h->writable ? "yes" : "NO") << "\n";
    if (h->schema_version != registry::kRegistrySchemaVersion) {
      std::cerr << "bud-registry db check: the schema is version " << h->schema_version
                << ", this release needs " << registry::kRegistrySchemaVersion
                << " (`bud-registry db init` or `db migrate`)\n";
      return 1;
    }
    if (!h->writable) {
      std::cerr << "bud-registry db check: the store takes no writes (read-only server or "
                   "standby, or no write permission)\n";
      return 1;
    }
    std::cout << "db check OK\n";
    return 0;
  }
  if (*run) {
    SetupLogging(config->log_level, config->log_file);
    InstallStopSignals();
    zmq::context_t ctx(1);
    registry::Server server(*config, ctx);
    Status s = server.Run();
    if (!s.ok()) {
      Logger("registry")->critical("{}", s.ToString());
      std::cerr << "bud-registry: " << s.ToString() << "\n";
      return 1;
    }
    return 0;
  }
  if (*add) {
    auto e = registry::AddEntry(*config, add_req);
    if (!e.ok()) {
      std::cerr << "bud-registry add: refused: " << e.status().ToString() << "\n";
      return 1;
    }
    std::cout << "registered " << e->orgnr() << " (" << e->name() << ")\n";
    return 0;
  }
  if (*set_brokers) {
    auto e = registry::SetBrokers(*config, brokers_org, brokers);
    if (!e.ok()) {
      std::cerr << "bud-registry set-brokers: " << e.status().ToString() << "\n";
      return 1;
    }
    std::cout << "broker endpoints of " << e->orgnr() << ": "
              << (e->broker_endpoints().empty() ? "none" : "");
    for (int i = 0; i < e->broker_endpoints_size(); ++i) {
      std::cout << (i ? ", " : "") << e->broker_endpoints(i);
    }
    std::cout << "\n";
    return 0;
  }
  if (*health) {
    zmq::context_t ctx(1);
    auto h = registry::AskHealth(ctx, *config, health_timeout_ms);
    std::cout << h.json << "\n";
    return h.healthy ? 0 : 1;
  }
  if (*remove) {
    Status s = registry::RemoveEntry(*config, remove_org);
    if (!s.ok()) {
      std::cerr << "bud-registry remove: " << s.ToString() << "\n";
      return 1;
    }
    std::cout << "removed " << remove_org << "\n";
    return 0;
  }
  if (*crl_urls) {
    auto urls = registry::ListCrlUrls(*config);
    if (!urls.ok()) {
      std::cerr << "bud-registry crl-urls: " << urls.status().ToString() << "\n";
      return 1;
    }
    for (const auto& n : urls->notes) std::cerr << "bud-registry crl-urls: " << n << "\n";
    for (const auto& u : urls->urls) std::cout << u << "\n";
    return 0;
  }
  auto out = registry::ListEntries(*config, json);
  if (!out.ok()) {
    std::cerr << "bud-registry list: " << out.status().ToString() << "\n";
    return 1;
  }
  std::cout << *out;
  return 0;
}
