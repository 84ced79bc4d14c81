// Revoked certificates against a whole exchange: real bud-registry, bud-broker and bud-ip
// processes on 127.0.0.1 (see harness.h), certificates and CRLs from scripts/dev-ca.
//
// The attacker is a registered agency whose certificate the CA has revoked (its key was stolen,
// or it left the exchange) and that keeps using it: its own integration point checks nothing.
// Once the operator has put the CA's new CRL into the CRL folders: the registry refuses to
// register the revoked certificate, an integration point refuses to seal for a receiver whose
// encryption certificate is revoked, and one that is running picks the CRL up and refuses, as
// FEIL with the reason CERT_REVOKED, a message signed with a revoked signing certificate, while
// messages from agencies in good standing keep arriving. Without any current CRL the registry
// refuses too (fail closed: CERT_REVOCATION_UNKNOWN), and an integration point neither seals nor
// accepts, but loses nothing: once a current CRL is installed both messages arrive.
//
// Every wait has a deadline (the harness's WaitUntil and wait helpers).
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "common/orgnr.h"
#include "common/uuid.h"
#include "tests/integration/harness.h"
#include "tests/support/test_pki.h"

namespace bud::test {
namespace {

namespace fs = std::filesystem;
using Strings = std::vector<std::string>;

// A third agency with a valid check digit.
constexpr const char* kAgencyC = "991825827";

std::string LastDescription(const nlohmann::json& entry) {
  const auto& h = entry.value("history", nlohmann::json::array());
  return h.empty() ? "" : h.back().value("description", "");
}

// Drops a one-attachment message from `from` to `to` and returns its id.
std::string Send(Exchange& ex, const std::string& from, const std::string& to,
                 const std::string& title) {
  const std::string id = NewUuid();
  nlohmann::json meta = Exchange::Metadata(to);
  meta["messageId"] = id;
  meta["title"] = title;
  ex.DropFolder(from, "til-" + to + "-" + id.substr(0, 8), meta.dump(2), {{"brev.txt", title}});
  return id;
}

void RunOk(const std::vector<std::string>& argv) {
  const CommandResult r = RunCommand(argv);
  INFO("stdout: " << r.out << "stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
}

TEST_CASE("revoked certificates are refused at registration, sealing and opening",
          "[integration][hostile][certs]") {
  REQUIRE(Orgnr::Parse(kAgencyC).ok());
  ExchangeOptions options;
  options.agencies = {kAgencyA, kAgencyB, kAgencyC};
  options.sign_key = "ec";
  options.enc_key = "ec";
  options.start_ips = false;
  // A checks revocation (its folder is <root>/crl, relative to its own folder); B and C, the
  // agencies whose certificates will be revoked, check nothing, as an attacker's point would.
  options.agency_settings[kAgencyA] = {{"keys.crl_dir", "\"../../crl\""},
                                       {"keys.crl_reload_ms", "100"}};
  Exchange ex(options);
  const std::string ca = ex.root() + "/ca";
  const std::string crl_dir = ex.root() + "/crl";
  const std::string dev_ca = BUD_SOURCE_DIR "/scripts/dev-ca";
  auto keys = [&](const std::string& org, const std::string& file) {
    return ex.AgencyDir(org) + "/keys/" + file;
  };
  auto install_crl = [&] {
    // Written beside, then renamed in: the point never reads a half-copied file.
    fs::copy_file(ca + "/ca.crl", crl_dir + "/.ca.crl.tmp", fs::copy_options::overwrite_existing);
    fs::rename(crl_dir + "/.ca.crl.tmp", crl_dir + "/ca.crl");
  };

  // The CA's first CRL (dev-ca init wrote it; nothing revoked yet).
  fs::create_directories(crl_dir);
  REQUIRE(fs::exists(ca + "/ca.crl"));
  install_crl();
  ex.StartIp(kAgencyA);
  ex.StartIp(kAgencyB);
  ex.StartIp(kAgencyC);
  ex.ip(kAgencyA).WaitForLog("revocation checked against 1 CRL(s)");

  // Before the revocation B's messages arrive at A.
  {
    const std::string id = Send(ex, kAgencyB, kAgencyA, "Før tilbakekallingen");
    ex.WaitForInbox(kAgencyA, id);
    ex.WaitForStatus(kAgencyB, id, "MOTTATT");
  }

  // The CA revokes B's signing and C's encryption certificate; the operator installs the CRL.
  RunOk({dev_ca, "revoke", ca, keys(kAgencyB, "signing.pem"), keys(kAgencyC, "encryption.pem")});
  install_crl();

  {  // registration
    const std::string registry_dir = ex.root() + "/registry";
    const std::string base = ReadFile(registry_dir + "/registry.toml");
    // registry.crl_dir goes into the [registry] table, which the harness writes first.
    auto config_with = [&](const std::string& name, const std::string& dir) {
      std::string text = base;
      text.insert(text.find('\n') + 1, "crl_dir = \"" + dir + "\"\n");
      WriteFile(registry_dir + "/" + name, text);
      return registry_dir + "/" + name;
    };
    const std::string with_crl = config_with("registry-crl.toml", crl_dir);
    fs::create_directories(ex.root() + "/no-crls");
    const std::string without_crl = config_with("registry-nocrl.toml", ex.root() + "/no-crls");
    auto add = [&](const std::string& config, const std::string& org) {
      // The whole entry as the harness registered it (a replaced entry keeps its CURVE key).
      const std::string curve = ReadFile(ex.CurveKeyFile(org));
      const size_t at = curve.find("public_key = \"");
      REQUIRE(at != std::string::npos);
      const std::string public_key = curve.substr(at + 14, 40);
      return RunCommand({BUD_REGISTRY_BIN, "add", "--config", config, "--orgnr", org, "--name",
                         "Test agency " + org, "--signing-cert", keys(org, "signing.pem"),
                         "--encryption-cert", keys(org, "encryption.pem"), "--broker",
                         ex.broker_endpoint(), "--curve-public-key", public_key, "--process",
                         kProcess, "--document-type", kDocumentType});
    };
    for (const char* org : {kAgencyB, kAgencyC}) {
      const CommandResult r = add(with_crl, org);
      INFO(org << ": exit " << r.exit_code << ", stderr: " << r.err);
      CHECK(r.exit_code != 0);
      CHECK_THAT(r.err, Catch::Contains("CERT_REVOKED"));
    }
    {
      const CommandResult r = add(without_crl, kAgencyA);
      INFO("exit " << r.exit_code << ", stderr: " << r.err);
      CHECK(r.exit_code != 0);
      CHECK_THAT(r.err, Catch::Contains("CERT_REVOCATION_UNKNOWN"));
    }
    {
      const CommandResult r = add(with_crl, kAgencyA);  // in good standing
      INFO("stderr: " << r.err);
      CHECK(r.exit_code == 0);
    }
    // What the operator's fetch tool is told to download.
    const CommandResult urls =
        RunCommand({BUD_REGISTRY_BIN, "crl-urls", "--config", registry_dir + "/registry.toml"});
    INFO("stderr: " << urls.err);
    CHECK(urls.exit_code == 0);
    CHECK(urls.out == "http://crl.budstikke.invalid/dev-ca.crl\n");
  }

  {  // sealing for a receiver whose encryption certificate is revoked
    // A waits for the CRL it loads every 100 ms (and drops its cached verdicts with it).
    const std::string id = Send(ex, kAgencyA, kAgencyC, "Til C");
    const nlohmann::json e = ex.WaitForStatus(kAgencyA, id, "FEIL");
    INFO("A's entry: " << e.dump(2));
    CHECK_THAT(LastDescription(e), Catch::Contains("CERT_REVOKED"));
    CHECK(Exchange::History(e) == Strings{"OPPRETTET", "FEIL"});  // never sent
    CHECK(ListDir(ex.Inbox(kAgencyC)).empty());
  }

  {  // opening a message signed with a revoked signing certificate
    const std::string id = Send(ex, kAgencyB, kAgencyA, "Etter tilbakekallingen");
    const nlohmann::json got = ex.WaitForStatus(kAgencyA, id, "FEIL");
    INFO("A's entry: " << got.dump(2));
    CHECK(got.value("direction", "") == "INCOMING");
    CHECK_THAT(LastDescription(got), Catch::Contains("CERT_REVOKED"));
    CHECK_FALSE(PathExists(ex.Inbox(kAgencyA) + "/" + id));
    const nlohmann::json sent = ex.WaitForStatus(kAgencyB, id, "FEIL");
    INFO("B's entry: " << sent.dump(2));
    CHECK_THAT(LastDescription(sent), Catch::Contains("CERT_REVOKED"));

    // C signs with a certificate in good standing: its message still arrives, A is serving.
    const std::string ok = Send(ex, kAgencyC, kAgencyA, "Fra C");
    ex.WaitForInbox(kAgencyA, ok);
    ex.WaitForStatus(kAgencyC, ok, "MOTTATT");
  }
  ex.CheckAlive();
}

TEST_CASE("without a current CRL nothing is sealed or accepted, and nothing is lost",
          "[integration][hostile][certs]") {
  ExchangeOptions options;
  options.sign_key = "ec";
  options.enc_key = "ec";
  options.start_ips = false;
  options.agency_settings[kAgencyA] = {{"keys.crl_dir", "\"../../crl\""},
                                       {"keys.crl_reload_ms", "100"}};
  Exchange ex(options);
  const std::string ca = ex.root() + "/ca";
  const std::string crl_dir = ex.root() + "/crl";
  fs::create_directories(crl_dir);
  // The CA's CRL as the fetch job last got it: its nextUpdate passed yesterday.
  constexpr int64_t kDay = 24 * 3600;
  TestCa::FromPemFiles(ca + "/ca.key", ca + "/ca.pem")
      .WriteCrlFile(crl_dir + "/ca.crl", {}, -10 * kDay, -kDay);
  ex.StartIp(kAgencyA);  // starts: its own certificates are only warned about
  ex.StartIp(kAgencyB);
  ex.ip(kAgencyA).WaitForLog("CERT_REVOCATION_UNKNOWN: keys.signing_cert: own signing certificate");

  const std::string out = Send(ex, kAgencyA, kAgencyB, "Til B");
  const std::string in = Send(ex, kAgencyB, kAgencyA, "Til A");
  ex.ip(kAgencyA).WaitForLog("not sealed until revocation can be checked");
  ex.ip(kAgencyA).WaitForLog("not accepted until revocation can be checked");
  {
    const auto a = Exchange::Find(ex.Status(kAgencyA), out);
    REQUIRE(a.size() == 1);
    INFO("A's entry: " << a[0].dump(2));
    CHECK(Exchange::History(a[0]) == Strings{"OPPRETTET"});
    CHECK_FALSE(PathExists(ex.Inbox(kAgencyA) + "/" + in));
    for (const auto& e : Exchange::Find(ex.Status(kAgencyB), in)) {
      const Strings h = Exchange::History(e);
      CHECK(std::find(h.begin(), h.end(), "FEIL") == h.end());
    }
  }

  // A current CRL arrives: the waiting message is sealed, the redelivered one accepted.
  const CommandResult r = RunCommand({BUD_SOURCE_DIR "/scripts/dev-ca", "crl", ca});
  INFO("dev-ca crl: " << r.out << r.err);
  REQUIRE(r.exit_code == 0);
  fs::copy_file(ca + "/ca.crl", crl_dir + "/.ca.crl.tmp", fs::copy_options::overwrite_existing);
  fs::rename(crl_dir + "/.ca.crl.tmp", crl_dir + "/ca.crl");
  ex.WaitForInbox(kAgencyB, out);
  ex.WaitForStatus(kAgencyA, out, "MOTTATT");
  ex.WaitForInbox(kAgencyA, in);  // the broker's next delivery (ack_timeout_ms 5 s here)
  ex.WaitForStatus(kAgencyB, in, "MOTTATT");
  ex.CheckAlive();
}

}  // namespace
}  // namespace bud::test
