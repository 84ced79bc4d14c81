// bud-broker: the central store-and-forward broker. Thin main over the broker library.
#include <CLI/CLI.hpp>
#include <iostream>

#include "broker/config.h"
#include "broker/metrics.h"
#include "broker/server.h"
#include "common/log.h"
#include "common/runtime.h"
#include "common/wire/curve.h"

int main(int argc, char** argv) {
  using namespace bud;
  CLI::App app{"bud-broker: Budstikke broker"};
  app.require_subcommand(1);
  std::string config_path;
  bool check_config = false;
  auto* run = app.add_subcommand("run", "serve integration points");
  run->add_option("--config", config_path, "config file (TOML)")->required();
  run->add_flag("--check-config", check_config, "validate the config and exit 0 or 1");
  std::string keygen_out;
  auto* keygen = app.add_subcommand("keygen", "make a CURVE key pair file and print its public key");
  keygen->add_option("--out", keygen_out, "key file to create (mode 0600)")->required();
  CLI11_PARSE(app, argc, argv);
  if (*keygen) return wire::KeygenCommand(keygen_out, "bud-broker");

  auto config = broker::Config::Load(config_path);
  if (!config.ok()) {
    std::cerr << "bud-broker: " << config.status().message() << "\n";
    return 1;
  }
  if (check_config) {
    std::cout << "config '" << config_path << "' is valid\n";
    return 0;
  }
  SetupLogging(config->log_level, config->log_file);
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
