// `--check-config` on all three binaries, run as real processes: a good config is reported
// "config OK" with exit 0 and leaves nothing behind (no store, no endpoint file, no folders);
// each broken config is refused with exit 1 and a message naming the key and the problem.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <functional>

#include "common/fs.h"
#include "common/http_auth.h"
#include "tests/ops/fixtures.h"

namespace bud::test {
namespace {

struct Broken {
  std::string what;
  std::function<void(OpsFolder&, TomlConfig&)> mutate;
  std::vector<std::string> phrases;  // all must appear on stderr
};

CommandResult CheckConfig(const char* binary, const std::string& config) {
  return RunCommand({binary, "run", "--check-config", "--config", config}, Millis(30000));
}

void ExpectRefused(const char* binary, const Broken& b, OpsFolder& folder, TomlConfig config) {
  INFO("case: " << b.what);
  b.mutate(folder, config);
  const std::string path = folder.Write("case.toml", config);
  auto r = CheckConfig(binary, path);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("config OK") == std::string::npos);
  for (const auto& p : b.phrases) CHECK_THAT(r.err, Catch::Matchers::Contains(p));
}

void Set(TomlConfig& c, const std::string& section, const std::string& key, const std::string& v) {
  c[section][key] = v;
}

TEST_CASE("bud-registry --check-config accepts a good config and creates nothing",
          "[ops][check-config]") {
  OpsFolder f;
  const std::string path = f.Write("registry.toml", f.RegistryConfig());
  auto r = CheckConfig(BUD_REGISTRY_BIN, path);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.starts_with("config OK: " + path + "\n"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("registry.db (will be created at start)"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("public key " + f.registry_key));
  CHECK_THAT(r.out, Catch::Matchers::Contains("1 certificate(s)"));
  CHECK_FALSE(PathExists(f.Path("registry.db")));
  CHECK_FALSE(PathExists(f.Path("registry.endpoint")));
}

TEST_CASE("bud-registry --check-config refuses broken configs, naming key and problem",
          "[ops][check-config]") {
  const std::vector<Broken> cases = {
      {"trust anchor missing",
       [](OpsFolder&, TomlConfig& c) { Set(c, "registry", "trust_anchor", Quoted("nope.pem")); },
       {"key 'registry.trust_anchor'", "nope.pem", "No such file"}},
      {"trust anchor not PEM",
       [](OpsFolder& f, TomlConfig& c) {
         WriteFileMode(f.Path("junk.pem"), "not a certificate\n", 0644);
         Set(c, "registry", "trust_anchor", Quoted("junk.pem"));
       },
       {"key 'registry.trust_anchor'", "holds no PEM certificate"}},
      {"CURVE key readable by others",
       [](OpsFolder& f, TomlConfig&) { ::chmod(f.Path("registry.key").c_str(), 0644); },
       {"key 'registry.curve_key_file'", "readable by group or others", "chmod 600"}},
      {"store in a missing folder",
       [](OpsFolder&, TomlConfig& c) { Set(c, "registry", "store", Quoted("no/such/dir/r.db")); },
       {"key 'registry.store'", "not a writable folder"}},
      {"store is a folder",
       [](OpsFolder& f, TomlConfig& c) {
         (void)MakeDirs(f.Path("adir"));
         Set(c, "registry", "store", Quoted("adir"));
       },
       {"key 'registry.store'", "is not a regular file"}},
      {"endpoint file in a missing folder",
       [](OpsFolder&, TomlConfig& c) { Set(c, "registry", "endpoint_file", Quoted("x/y/ep")); },
       {"key 'registry.endpoint_file'", "is not a writable folder"}},
      {"allowed client key not Z85",
       [](OpsFolder&, TomlConfig& c) { Set(c, "registry", "allowed_client_keys", "[\"abc\"]"); },
       {"registry.allowed_client_keys", "is not a Z85 CURVE public key"}},
      {"listen not an endpoint",
       [](OpsFolder&, TomlConfig& c) { Set(c, "registry", "listen", Quoted("localhost:7600")); },
       {"key 'registry.listen'", "is not a ZeroMQ endpoint"}},
      {"unknown log level",
       [](OpsFolder&, TomlConfig& c) { Set(c, "log", "level", Quoted("verbose")); },
       {"key 'log.level'", "'verbose' is not one of"}},
      {"misspelt key",
       [](OpsFolder&, TomlConfig& c) { Set(c, "registry", "lisen", Quoted("tcp://x:1")); },
       {"unknown key(s): registry.lisen"}},
      {"store missing",
       [](OpsFolder&, TomlConfig& c) { c["registry"].erase("store"); },
       {"key 'registry.store'", "is missing"}},
  };
  for (const auto& b : cases) {
    OpsFolder fresh;
    ExpectRefused(BUD_REGISTRY_BIN, b, fresh, fresh.RegistryConfig());
  }
}

TEST_CASE("bud-broker --check-config accepts a good config and refuses broken ones",
          "[ops][check-config]") {
  OpsFolder f;
  const std::string path = f.Write("broker.toml", f.BrokerConfig());
  auto r = CheckConfig(BUD_BROKER_BIN, path);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.starts_with("config OK: " + path + "\n"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("broker.db (will be created at start)"));
  CHECK_FALSE(PathExists(f.Path("broker.db")));
  CHECK_FALSE(PathExists(f.Path("broker.endpoint")));

  const std::vector<Broken> cases = {
      {"CURVE without the registry's server key",
       [](OpsFolder&, TomlConfig& c) { c["registry"].erase("server_key"); },
       {"key 'registry.server_key'", "Z85"}},
      {"CURVE without a registry endpoint",
       [](OpsFolder&, TomlConfig& c) { c["registry"].erase("endpoint"); },
       {"key 'registry.endpoint'", "is needed with broker.curve_key_file"}},
      {"CURVE key file missing",
       [](OpsFolder&, TomlConfig& c) { Set(c, "broker", "curve_key_file", Quoted("gone.key")); },
       {"key 'broker.curve_key_file'", "No such file"}},
      {"CURVE key file is not a key file",
       [](OpsFolder& f, TomlConfig& c) {
         WriteFileMode(f.Path("bad.key"), "public_key = \"short\"\nsecret_key = \"x\"\n", 0600);
         Set(c, "broker", "curve_key_file", Quoted("bad.key"));
       },
       {"key 'broker.curve_key_file'", "40 Z85 characters"}},
      {"a number out of range",
       [](OpsFolder&, TomlConfig& c) { Set(c, "broker", "max_credit", "0"); },
       {"key 'broker.max_credit'", "must be between 1 and 100000"}},
      {"a string where a number belongs",
       [](OpsFolder&, TomlConfig& c) { Set(c, "broker", "ack_timeout_ms", Quoted("30s")); },
       {"key 'broker.ack_timeout_ms'", "must be an integer"}},
      {"log file in a missing folder",
       [](OpsFolder&, TomlConfig& c) { Set(c, "log", "file", Quoted("/nonexistent/dir/b.log")); },
       {"key 'log.file'", "is not a writable folder"}},
  };
  for (const auto& b : cases) {
    OpsFolder fresh;
    ExpectRefused(BUD_BROKER_BIN, b, fresh, fresh.BrokerConfig());
  }
  // An existing store is checked, not opened.
  WriteFileMode(f.Path("broker.db"), "", 0600);
  r = CheckConfig(BUD_BROKER_BIN, path);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Matchers::Contains("broker.db (exists, 0 bytes)"));
}

TEST_CASE("bud-ip --check-config checks keys, certificates and folders and creates nothing",
          "[ops][check-config]") {
  OpsFolder f;
  const std::string path = f.Write("ip.toml", f.IpConfig());
  auto r = CheckConfig(BUD_IP_BIN, path);
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.starts_with("config OK: " + path + "\n"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("0192:" + f.orgnr()));
  CHECK_THAT(r.out, Catch::Matchers::Contains("more day(s)"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("public key " + f.ip_key));
  CHECK_THAT(r.out, Catch::Matchers::Contains("outbox (will be created at start)"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("takes the messages for no channel"));
  TomlConfig with_channel = f.IpConfig();
  with_channel["next_move"]["message_channel"] = Quoted("arkiv2");
  auto channel = CheckConfig(BUD_IP_BIN, f.Write("ip-channel.toml", with_channel));
  INFO(channel.out << channel.err);
  REQUIRE(channel.exit_code == 0);
  CHECK_THAT(channel.out, Catch::Matchers::Contains("'arkiv2': this point takes only the messages "
                                                    "of that channel"));
  CHECK_FALSE(PathExists(f.Path("ip.db")));
  CHECK_FALSE(PathExists(f.Path("outbox")));
  CHECK_FALSE(PathExists(f.Path("inbox")));

  // With HTTP Basic: the file is read and parsed, its user noted, its hash not.
  REQUIRE(WriteBasicAuthFile(f.Path("api.auth"), "arkiv", "a long password", 10).ok());
  TomlConfig with_auth = f.IpConfig();
  with_auth["http"]["basic_auth_file"] = Quoted("api.auth");
  auto auth = CheckConfig(BUD_IP_BIN, f.Write("ip-auth.toml", with_auth));
  INFO(auth.out << auth.err);
  REQUIRE(auth.exit_code == 0);
  CHECK_THAT(auth.out, Catch::Matchers::Contains("HTTP Basic for user 'arkiv' (scrypt, N = 2^10)"));
  const std::string line = ReadFile(f.Path("api.auth"));
  REQUIRE(line.rfind(':') != std::string::npos);
  CHECK(auth.out.find(line.substr(line.rfind(':') + 1, 64)) == std::string::npos);
}

TEST_CASE("bud-ip --check-config refuses broken keys, certificates and paths",
          "[ops][check-config]") {
  const std::vector<Broken> cases = {
      {"signing key readable by others",
       [](OpsFolder& f, TomlConfig&) { ::chmod(f.Path("keys/signing.key").c_str(), 0640); },
       {"keys.signing_key", "readable by group or others", "chmod 600"}},
      {"signing certificate missing",
       [](OpsFolder& f, TomlConfig&) { ::unlink(f.Path("keys/signing.pem").c_str()); },
       {"key 'keys.signing_cert'", "No such file"}},
      {"certificate of another organisation",
       [](OpsFolder& f, TomlConfig&) {
         f.ca()
             .IssueSigning(KeyType::kEcP256, kAgencyB)
             .WriteFiles(f.Path("keys/signing.key"), f.Path("keys/signing.pem"));
       },
       {"keys.signing_cert", "belongs to organisation " + std::string(kAgencyB)}},
      {"encryption key of another certificate",
       [](OpsFolder&, TomlConfig& c) {
         Set(c, "keys", "encryption_key", Quoted("keys/signing.key"));
       },
       {"keys.encryption_key", "does not belong to the certificate in keys.encryption_cert"}},
      {"signing certificate used for encryption",
       [](OpsFolder&, TomlConfig& c) {
         Set(c, "keys", "encryption_key", Quoted("keys/signing.key"));
         Set(c, "keys", "encryption_cert", Quoted("keys/signing.pem"));
       },
       {"keys.encryption_cert", "is not for encryption"}},
      {"expired signing certificate",
       [](OpsFolder& f, TomlConfig&) {
         LeafSpec spec;
         spec.orgnr = f.orgnr();
         spec.not_before_offset_s = -10 * 86400;
         spec.not_after_offset_s = -86400;
         f.ca().Issue(spec).WriteFiles(f.Path("keys/signing.key"), f.Path("keys/signing.pem"));
       },
       {"keys.signing_cert", "has expired"}},
      {"certificates from a CA the trust anchor does not hold",
       [](OpsFolder& f, TomlConfig&) { TestCa("Another CA").WriteCertFile(f.Path("ca.pem")); },
       {"keys.signing_cert", "does not chain to the trust anchor"}},
      {"next encryption key without its certificate",
       [](OpsFolder&, TomlConfig& c) {
         Set(c, "keys", "next_encryption_key", Quoted("keys/encryption.key"));
       },
       {"keys.next_encryption_key", "go together"}},
      {"basic auth file missing",
       [](OpsFolder&, TomlConfig& c) { Set(c, "http", "basic_auth_file", Quoted("gone.auth")); },
       {"key 'http.basic_auth_file'", "gone.auth", "No such file"}},
      {"basic auth file readable by others",
       [](OpsFolder& f, TomlConfig& c) {
         REQUIRE(WriteBasicAuthFile(f.Path("api.auth"), "arkiv", "a long password", 10).ok());
         ::chmod(f.Path("api.auth").c_str(), 0644);
         Set(c, "http", "basic_auth_file", Quoted("api.auth"));
       },
       {"key 'http.basic_auth_file'", "readable by group or others", "chmod 600"}},
      {"basic auth file that does not parse",
       [](OpsFolder& f, TomlConfig& c) {
         WriteFileMode(f.Path("api.auth"), "arkiv:md5:abc\n", 0600);
         Set(c, "http", "basic_auth_file", Quoted("api.auth"));
       },
       {"key 'http.basic_auth_file'", "api.auth"}},
      {"basic auth file is a folder",
       [](OpsFolder& f, TomlConfig& c) {
         ::mkdir(f.Path("auth.d").c_str(), 0700);
         Set(c, "http", "basic_auth_file", Quoted("auth.d"));
       },
       {"key 'http.basic_auth_file'", "is not a regular file"}},
      {"outbox is a file",
       [](OpsFolder& f, TomlConfig&) { WriteFileMode(f.Path("outbox"), "x", 0644); },
       {"key 'paths.outbox'", "is not a folder"}},
      {"broker server key is a placeholder",
       [](OpsFolder&, TomlConfig& c) {
         Set(c, "broker", "server_key", Quoted("<broker CURVE public key>"));
       },
       {"key 'broker.server_key'", "40-character Z85 CURVE public key"}},
      {"registry endpoint is a placeholder",
       [](OpsFolder&, TomlConfig& c) {
         Set(c, "registry", "endpoint", Quoted("<registry endpoint from the registry operator>"));
       },
       {"key 'registry.endpoint'", "is not a ZeroMQ endpoint"}},
      {"orgnr with a wrong check digit",
       [](OpsFolder&, TomlConfig& c) { Set(c, "agency", "orgnr", Quoted("910076788")); },
       {"key 'agency.orgnr'", "check digit"}},
      {"message channel that is no channel name",
       [](OpsFolder&, TomlConfig& c) { Set(c, "next_move", "message_channel", Quoted("arkiv/2")); },
       {"key 'next_move.message_channel'", "not a message channel name"}},
  };
  for (const auto& b : cases) {
    OpsFolder fresh;
    ExpectRefused(BUD_IP_BIN, b, fresh, fresh.IpConfig());
  }
}

TEST_CASE("a missing or unparsable config file is refused with exit 1", "[ops][check-config]") {
  OpsFolder f;
  for (const char* bin : {BUD_REGISTRY_BIN, BUD_BROKER_BIN, BUD_IP_BIN}) {
    INFO(bin);
    auto r = CheckConfig(bin, f.Path("absent.toml"));
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Matchers::Contains("cannot read config"));
    WriteFileMode(f.Path("bad.toml"), "[registry\nlisten = 1\n", 0644);
    r = CheckConfig(bin, f.Path("bad.toml"));
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Matchers::Contains("line 1"));
  }
}

TEST_CASE("every binary answers --version and --help", "[ops]") {
  for (const char* bin : {BUD_REGISTRY_BIN, BUD_BROKER_BIN, BUD_IP_BIN}) {
    INFO(bin);
    auto v = RunCommand({bin, "--version"});
    CHECK(v.exit_code == 0);
    CHECK_THAT(v.out, Catch::Matchers::Contains(BUD_VERSION));
    auto h = RunCommand({bin, "--help"});
    CHECK(h.exit_code == 0);
    CHECK_THAT(h.out, Catch::Matchers::Contains("run"));
    CHECK_THAT(h.out, Catch::Matchers::Contains("backup"));
  }
}

}  // namespace
}  // namespace bud::test
