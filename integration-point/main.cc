// bud-ip: the integration point an agency runs on premise. Thin main over the IP library.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "common/clock.h"
#include "common/crypto/certs.h"
#include "common/fs.h"
#include "common/http_auth.h"
#include "common/log.h"
#include "common/runtime.h"
#include "common/wire/curve.h"
#include "integration-point/config.h"
#include "integration-point/engine.h"
#include "integration-point/enroll.h"
#include "integration-point/http_api.h"
#include "integration-point/status_view.h"

namespace {

using namespace bud;

CLI::App* AddEnrollCommand(CLI::App& app, ip::EnrollRequest& enroll_req) {
  auto* enroll = app.add_subcommand(
      "enroll", "make this agency's keys, certificate requests, CURVE keys and ip.toml");
  enroll->add_option("--orgnr", enroll_req.orgnr, "organisation number (9 digits)")->required();
  enroll->add_option("--out", enroll_req.out_dir, "folder to write into (created when missing)")
      ->required();
  enroll->add_option("--name", enroll_req.name, "organisation name, in the certificate subject");
  enroll->add_option("--state-dir", enroll_req.state_dir,
                     "where the store, outbox and inbox go (default: the --out folder)");
  enroll->add_option("--signing-key-type", enroll_req.signing_key_type, "rsa, ec or ed25519")
      ->capture_default_str();
  enroll->add_option("--encryption-key-type", enroll_req.encryption_key_type, "rsa or ec")
      ->capture_default_str();
  enroll->add_option("--registry", enroll_req.registry_endpoint, "registry endpoint, when known");
  enroll->add_option("--registry-key", enroll_req.registry_server_key,
                     "registry CURVE public key, when known");
  enroll->add_option("--broker", enroll_req.broker_endpoint, "broker endpoint, when known");
  enroll->add_option("--broker-key", enroll_req.broker_server_key,
                     "broker CURVE public key, when known");
  return enroll;
}

struct StatusOptions {
  std::string direction, since, lang;
  bool json = false;
  bool failed = false;  // the refused intake instead of the messages
  bool all = false;     // with --failed: the resolved refusals too
  int64_t dismiss = 0;  // a refusal's number: taken off the open list
};

// `bud-ip status --dismiss N`: an admin takes refusal N off the open list (e.g. a folder deleted
// from .failed instead of fixed, or an API request the archive system will not send again). The
// store is opened for writing beside a running point (SQLite WAL).
int DismissCommand(const ip::Config& config, int64_t id) {
  auto store = ip::PointStore::Open(config.store);
  Status st = store.ok() ? (*store)->refusals.Dismiss(id, NowMs()) : store.status();
  if (!st.ok()) {
    std::cerr << "bud-ip status --dismiss: " << st.ToString() << "\n";
    return 1;
  }
  std::cout << "refusal " << id << " dismissed\n";
  return 0;
}

int StatusCommand(const ip::Config& config, ip::ListFilter filter, const StatusOptions& o) {
  const std::string& direction = o.direction;
  const std::string& since = o.since;
  const bool json = o.json;
  ip::Lang lang = ip::LangFromEnvironment();
  if (!o.lang.empty()) {
    auto parsed = ip::ParseLang(o.lang);
    if (!parsed) {
      std::cerr << "bud-ip status: --lang '" << o.lang << "' is not nb or en\n";
      return 1;
    }
    lang = *parsed;
  }
  if (!direction.empty()) filter.direction = ip::ParseDirection(direction);  // checked by CLI11
  if (!since.empty()) {
    auto t = ParseTime(since);
    if (!t) {
      std::cerr << "bud-ip status: --since '" << since << "' is not an ISO 8601 time\n";
      return 1;
    }
    filter.since_ms = *t;
  }
  // Certificates close to expiry are the most common cause of sudden FEIL; say so here too.
  for (const auto& path : {config.keys.signing_cert, config.keys.encryption_cert}) {
    if (auto cert = crypto::LoadCertFile(path); cert.ok()) {
      int days = crypto::DaysToExpiry(cert->get());
      if (days < 30) {
        std::cerr << "warning: certificate " << path << " (" << crypto::SubjectOf(cert->get())
                  << ") expires in " << days << " day(s)\n";
      }
    }
  }
  if (!Exists(config.store)) {
    // Never create (and migrate) a store from the status command.
    std::cout << (json ? "[]\n"
                       : "0 message(s) (no store yet at " + config.store +
                             "; start `bud-ip run`)\n");
    return 0;
  }
  auto store = ip::PointStore::OpenReadOnly(config.store);
  if (!store.ok()) {
    std::cerr << "bud-ip status: " << store.status().ToString() << "\n";
    return 1;
  }
  auto out = o.failed ? ip::RenderRefusals((*store)->refusals, o.all, json, lang)
                      : ip::RenderStatus((*store)->history, filter, json, lang);
  if (!out.ok()) {
    std::cerr << "bud-ip status: " << out.status().ToString() << "\n";
    return 1;
  }
  std::cout << *out;
  return 0;
}

// The password is read from standard input (its first line), never from the command line,
// where other users could see it.
int HttpUserCommand(const std::string& file, const std::string& user, int cost) {
  std::string password;
  std::getline(std::cin, password);
  if (!password.empty() && password.back() == '\r') password.pop_back();
  Status st = WriteBasicAuthFile(file, user, password, cost);
  if (!st.ok()) {
    std::cerr << "bud-ip http-user: " << st.message() << "\n";
    return 1;
  }
  std::cout << "wrote " << file << " for user '" << user
            << "'; set [http] basic_auth_file to it and restart bud-ip\n";
  return 0;
}

int RunCommand(const ip::Config& config) {
  // Freed heap is kept for the next turn instead of being handed back to the kernel at once: a
  // turn's savepoint journals (in memory, point_db.cc) take a few MiB and are freed at its
  // commit, and with glibc's default 128 KiB trim threshold every turn paid page faults and the
  // zeroing of fresh pages for them again.
  ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
  SetupLogging(config.log_level, config.log_file);
  InstallStopSignals();
  zmq::context_t ctx(1);
  ip::Engine engine(config, ctx);
  Status s = engine.Start();
  std::unique_ptr<ip::HttpApi> api;
  if (s.ok() && !config.http.listen.empty()) {
    api = std::make_unique<ip::HttpApi>(
        config, engine.metrics(), ctx, [&engine] { engine.Wake(); },
        [&engine](ip::MessageRow row) { return engine.TakeIn(std::move(row), 30'000); });
    s = api->Start();
  }
  if (s.ok()) s = engine.Run();
  api.reset();
  if (!s.ok()) {
    Logger("ip")->critical("{}", s.ToString());
    std::cerr << "bud-ip: " << s.ToString() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace bud;
  CLI::App app{"bud-ip: Budstikke integration point"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "bud-ip " BUD_VERSION);
  std::string config_path;
  bool check_config = false;
  auto* run = app.add_subcommand("run", "watch the outbox, send and receive");
  run->add_option("-c,--config", config_path, "config file (TOML)")->required();
  run->add_flag(
      "--check-config", check_config,
      "check the config and every file it names, then exit 0 (OK) or 1; binds and creates nothing");

  ip::ListFilter filter;
  StatusOptions so;
  auto* status = app.add_subcommand("status", "list messages and their status history");
  status->add_option("-c,--config", config_path, "config file (TOML)")->required();
  status->add_option("--message", filter.message_id, "only this message id");
  status->add_option("--conversation", filter.conversation_id, "only this conversation id");
  status->add_option("--direction", so.direction, "OUT or IN")
      ->check(CLI::IsMember(
          std::vector<std::string>{ip::Text(ip::Direction::kOut), ip::Text(ip::Direction::kIn)}));
  status->add_option("--status", filter.status, "only messages whose current status is this");
  status->add_option("--since", so.since, "only messages updated since this ISO 8601 time");
  status->add_flag("--json", so.json, "JSON instead of a table");
  status->add_flag("--failed", so.failed,
                   "the refused intake (outbox folders moved to .failed, API requests refused) "
                   "that is not fixed yet, instead of the messages");
  status->add_flag("--all", so.all, "with --failed: the fixed (resolved) refusals too");
  status
      ->add_option("--dismiss", so.dismiss,
                   "take refusal NO. (from --failed) off the open list, e.g. a folder deleted "
                   "instead of fixed")
      ->check(CLI::PositiveNumber);
  status->add_option("--lang", so.lang,
                     "nb (Norwegian bokmål) or en; default from LC_ALL / LC_MESSAGES / LANG");
  std::string keygen_out;
  auto* keygen =
      app.add_subcommand("keygen", "make a CURVE key pair file and print its public key");
  keygen->add_option("--out", keygen_out, "key file to create (mode 0600)")->required();

  ip::EnrollRequest enroll_req;
  auto* enroll = AddEnrollCommand(app, enroll_req);

  std::string backup_out;
  auto* backup = app.add_subcommand(
      "backup", "consistent online copy of the store (while bud-ip runs), integrity-checked");
  backup->add_option("-c,--config", config_path, "config file (TOML)")->required();
  backup->add_option("--out", backup_out, "the copy to create (never overwritten)")->required();
  std::string auth_file, auth_user;
  int auth_cost = 15;
  auto* http_user = app.add_subcommand(
      "http-user",
      "write the HTTP API's basic auth file: a user and a scrypt hash of the password, which is "
      "read from standard input");
  http_user->add_option("--file", auth_file, "the file to write (mode 0600)")->required();
  http_user->add_option("--user", auth_user, "the user name")->required();
  http_user->add_option("--cost", auth_cost, "log2 of scrypt's N (10..20)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (*http_user) return HttpUserCommand(auth_file, auth_user, auth_cost);
  if (*keygen) return wire::KeygenCommand(keygen_out, "bud-ip");
  if (*enroll) return PrintResult(ip::Enroll(enroll_req), "bud-ip enroll");

  auto config = ip::Config::Load(config_path);
  if (!config.ok()) {
    std::cerr << "bud-ip: " << config.status().message() << "\n";
    return 1;
  }
  if (check_config) return PrintResult(ip::CheckConfig(*config, config_path), "bud-ip");
  if (*backup) return BackupCommand(config->store, backup_out, "bud-ip");
  if (*status)
    return so.dismiss > 0 ? DismissCommand(*config, so.dismiss)
                          : StatusCommand(*config, filter, so);
  return RunCommand(*config);
}
