// `bud-ip enroll` and `scripts/dev-ca sign`, as an agency and a registry operator use them: the
// agency enrols, the operator signs both requests with the development CA and registers the
// agency with `bud-registry add`, and the agency's generated config passes --check-config.
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <catch2/catch.hpp>

#include "common/crypto/certs.h"
#include "common/crypto/openssl.h"
#include "common/fs.h"
#include "tests/ops/fixtures.h"

namespace bud::test {
namespace {

using Req = std::unique_ptr<X509_REQ, crypto::Deleter<X509_REQ_free>>;

Req LoadCsr(const std::string& path) {
  std::string pem = ReadFile(path);
  crypto::Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return Req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
}

std::string SubjectEntry(X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return "";
  ASN1_STRING* d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(d)),
                     static_cast<size_t>(ASN1_STRING_length(d)));
}

CommandResult Enroll(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BUD_IP_BIN, "enroll"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, Millis(60000));
}

TEST_CASE("enroll makes private keys, CSRs with our subject, a CURVE key and a config",
          "[ops][enroll]") {
  TempDir t;
  const std::string dir = t / "agency";
  auto r = Enroll({"--orgnr", kAgencyB, "--out", dir, "--name", "Ærlig Etat", "--signing-key-type",
                   "ec", "--encryption-key-type", "ec"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  for (const char* key : {"keys/signing.key", "keys/encryption.key", "keys/curve.key"}) {
    INFO(key);
    CHECK(ModeOf(dir + "/" + key) == 0600);
  }
  CHECK(ModeOf(dir + "/keys") == 0700);

  // What to send, and what to do next.
  const std::string curve_pub = [&] {
    std::string text = ReadFile(dir + "/keys/curve.key");
    auto at = text.find("public_key = \"");
    return text.substr(at + 14, 40);
  }();
  CHECK_THAT(r.out, Catch::Matchers::Contains("Send to the registry operator"));
  CHECK_THAT(r.out, Catch::Matchers::Contains(dir + "/keys/signing.csr"));
  CHECK_THAT(r.out, Catch::Matchers::Contains(dir + "/keys/encryption.csr"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("CURVE public key     " + curve_pub));
  CHECK_THAT(r.out, Catch::Matchers::Contains(
                        crypto::Hex(crypto::Sha256(ReadFile(dir + "/keys/signing.csr")))));
  CHECK_THAT(r.out, Catch::Matchers::Contains("Next steps"));
  CHECK_THAT(r.out, Catch::Matchers::Contains("Fill in [registry] and [broker]"));

  for (const auto& [file, use] :
       {std::pair{"signing", "signing"}, std::pair{"encryption", "encryption"}}) {
    INFO(file);
    Req req = LoadCsr(dir + "/keys/" + file + ".csr");
    REQUIRE(req);
    EVP_PKEY* pub = X509_REQ_get0_pubkey(req.get());
    CHECK(X509_REQ_verify(req.get(), pub) == 1);  // self-signed by the key in the file
    auto key = crypto::LoadPrivateKeyFile(dir + "/keys/" + file + ".key");
    REQUIRE(key.ok());
    CHECK(EVP_PKEY_eq(pub, key->get()) == 1);
    X509_NAME* subject = X509_REQ_get_subject_name(req.get());
    CHECK(SubjectEntry(subject, NID_serialNumber) == kAgencyB);
    CHECK(SubjectEntry(subject, NID_organizationName) == "Ærlig Etat");
    CHECK(SubjectEntry(subject, NID_commonName) == std::string("Ærlig Etat ") + use);
    CHECK(SubjectEntry(subject, NID_countryName) == "NO");
  }

  // The config names the files; with placeholders for what the operator gives, it is refused
  // until filled in.
  const std::string config = ReadFile(dir + "/ip.toml");
  CHECK_THAT(config, Catch::Matchers::Contains("orgnr = \"" + std::string(kAgencyB) + "\""));
  CHECK_THAT(config, Catch::Matchers::Contains("<registry CURVE public key from the registry"));
  auto check = RunCommand({BUD_IP_BIN, "run", "--check-config", "--config", dir + "/ip.toml"});
  CHECK(check.exit_code == 1);
  CHECK_THAT(check.err, Catch::Matchers::Contains("registry.endpoint"));
}

TEST_CASE("enroll refuses to overwrite keys and refuses bad input without writing",
          "[ops][enroll]") {
  TempDir t;
  const std::string dir = t / "agency";
  REQUIRE(Enroll({"--orgnr", kAgencyA, "--out", dir, "--signing-key-type", "ec",
                  "--encryption-key-type", "ec"})
              .exit_code == 0);
  const std::string key_before = ReadFile(dir + "/keys/signing.key");
  const std::string curve_before = ReadFile(dir + "/keys/curve.key");
  auto again = Enroll({"--orgnr", kAgencyA, "--out", dir});
  CHECK(again.exit_code == 1);
  CHECK_THAT(again.err, Catch::Matchers::Contains("refusing to overwrite"));
  CHECK_THAT(again.err, Catch::Matchers::Contains(dir + "/keys/signing.key"));
  CHECK(ReadFile(dir + "/keys/signing.key") == key_before);
  CHECK(ReadFile(dir + "/keys/curve.key") == curve_before);

  struct Case {
    std::vector<std::string> args;
    std::string phrase;
  } cases[] = {
      {{"--orgnr", "910076788"}, "check digit"},
      {{"--orgnr", "12345"}, "9 digits"},
      {{"--orgnr", kAgencyA, "--encryption-key-type", "ed25519"}, "Ed25519 cannot encrypt"},
      {{"--orgnr", kAgencyA, "--signing-key-type", "dsa"}, "use rsa, ec or ed25519"},
      {{"--orgnr", kAgencyA, "--broker-key", "short"}, "--broker-key must be"},
      {{"--orgnr", kAgencyA, "--registry", "registry.example:7600"}, "not a ZeroMQ endpoint"},
      {{"--orgnr", kAgencyA, "--name", std::string(60, 'x')}, "--name is 60 bytes"},
  };
  for (const auto& c : cases) {
    INFO(c.phrase);
    std::vector<std::string> args = c.args;
    args.insert(args.end(), {"--out", t / "other"});
    auto r = Enroll(args);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Matchers::Contains(c.phrase));
    CHECK_FALSE(PathExists(t / "other"));
  }
}

TEST_CASE(
    "the operator signs enrolled CSRs with dev-ca sign; the registry accepts them and "
    "the generated config passes --check-config",
    "[ops][enroll]") {
  TempDir t;
  const std::string dir = t / "agency";
  const std::string ca = t / "ca";
  const std::string dev_ca = BUD_SOURCE_DIR "/scripts/dev-ca";
  REQUIRE(RunCommand({dev_ca, "init", ca}).exit_code == 0);
  const std::string registry_key = NewCurveKey(t / "registry.key");
  const std::string broker_key = NewCurveKey(t / "broker.key");
  // RSA for encryption (keyEncipherment), EC for signing: both paths of dev-ca sign.
  auto r = Enroll({"--orgnr", kAgencyA, "--out", dir, "--name", "Ny etat", "--signing-key-type",
                   "ec", "--encryption-key-type", "rsa", "--registry", "tcp://127.0.0.1:7600",
                   "--registry-key", registry_key, "--broker", "tcp://127.0.0.1:7700",
                   "--broker-key", broker_key});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, !Catch::Matchers::Contains("Fill in [registry]"));

  auto sign = RunCommand({dev_ca, "sign", ca, dir + "/keys/signing.csr", dir + "/keys/signing.pem",
                          "--usage", "sign"});
  INFO(sign.out << sign.err);
  REQUIRE(sign.exit_code == 0);
  auto enc = RunCommand({dev_ca, "sign", ca, dir + "/keys/encryption.csr",
                         dir + "/keys/encryption.pem", "--usage", "enc"});
  INFO(enc.out << enc.err);
  REQUIRE(enc.exit_code == 0);
  // Never over an existing certificate.
  auto over = RunCommand({dev_ca, "sign", ca, dir + "/keys/signing.csr", dir + "/keys/signing.pem",
                          "--usage", "sign"});
  CHECK(over.exit_code == 2);
  CHECK_THAT(over.err, Catch::Matchers::Contains("never overwritten"));

  // The certificates pass the checks the exchange makes, for this organisation.
  auto trust = crypto::TrustStore::Load(ca + "/ca.pem");
  REQUIRE(trust.ok());
  const Orgnr org = *Orgnr::Parse(kAgencyA);
  auto sc = crypto::LoadCertFile(dir + "/keys/signing.pem");
  auto ec = crypto::LoadCertFile(dir + "/keys/encryption.pem");
  REQUIRE(sc.ok());
  REQUIRE(ec.ok());
  CHECK(trust->Verify(sc->get(), crypto::KeyPurpose::kSigning, org).ok());
  CHECK(trust->Verify(ec->get(), crypto::KeyPurpose::kEncryption, org).ok());
  CHECK_FALSE(trust->Verify(sc->get(), crypto::KeyPurpose::kEncryption, org).ok());

  // The registry operator registers it with its CURVE key.
  OpsFolder registry_side;  // only for a registry config; its CA is replaced by the dev CA
  TomlConfig rc = registry_side.RegistryConfig();
  rc["registry"]["trust_anchor"] = Quoted(ca + "/ca.pem");
  const std::string registry_config = registry_side.Write("registry.toml", rc);
  const std::string curve_pub =
      ReadFile(dir + "/keys/curve.key")
          .substr(ReadFile(dir + "/keys/curve.key").find("public_key = \"") + 14, 40);
  auto add = RunCommand({BUD_REGISTRY_BIN, "add", "--config", registry_config, "--orgnr", kAgencyA,
                         "--name", "Ny etat", "--signing-cert", dir + "/keys/signing.pem",
                         "--encryption-cert", dir + "/keys/encryption.pem", "--curve-public-key",
                         curve_pub, "--broker", "tcp://127.0.0.1:7700", "--process", kProcess});
  INFO(add.out << add.err);
  CHECK(add.exit_code == 0);

  // The agency puts the CA certificate in place; its config is then complete.
  WriteFileMode(dir + "/ca.pem", ReadFile(ca + "/ca.pem"), 0644);
  auto check = RunCommand({BUD_IP_BIN, "run", "--check-config", "--config", dir + "/ip.toml"});
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
  CHECK_THAT(check.out, Catch::Matchers::Contains("O=Ny etat"));
}

TEST_CASE("dev-ca sign refuses requests it must not sign", "[ops][enroll]") {
  TempDir t;
  const std::string ca = t / "ca";
  const std::string dev_ca = BUD_SOURCE_DIR "/scripts/dev-ca";
  REQUIRE(RunCommand({dev_ca, "init", ca}).exit_code == 0);
  auto key = crypto::GenerateKey("ed25519");
  REQUIRE(key.ok());
  WriteFileMode(t / "e.key", *crypto::PrivateKeyToPem(key->get()), 0600);
  REQUIRE(RunCommand({"/usr/bin/openssl", "req", "-new", "-key", t / "e.key", "-out",
                      t / "noorg.csr", "-subj", "/CN=no organisation number"})
              .exit_code == 0);
  REQUIRE(RunCommand({"/usr/bin/openssl", "req", "-new", "-key", t / "e.key", "-out", t / "ed.csr",
                      "-subj", "/C=NO/O=X/serialNumber=910076787/CN=X"})
              .exit_code == 0);
  WriteFileMode(t / "junk.csr", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", 0644);
  struct Case {
    std::vector<std::string> args;
    std::string phrase;
  } cases[] = {
      {{"sign", ca, t / "noorg.csr", t / "o1.pem", "--usage", "sign"}, "no 9-digit serialNumber"},
      {{"sign", ca, t / "ed.csr", t / "o2.pem", "--usage", "enc"}, "Ed25519 key cannot encrypt"},
      {{"sign", ca, t / "junk.csr", t / "o3.pem", "--usage", "sign"}, "valid self-signature"},
      {{"sign", ca, t / "ed.csr", t / "o4.pem"}, "give --usage sign"},
      {{"sign", t / "no-ca", t / "ed.csr", t / "o5.pem", "--usage", "sign"}, "no CA in"},
  };
  for (const auto& c : cases) {
    INFO(c.phrase);
    std::vector<std::string> argv = {dev_ca};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = RunCommand(argv);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Matchers::Contains(c.phrase));
  }
  for (const char* out : {"o1.pem", "o2.pem", "o3.pem", "o4.pem", "o5.pem"}) {
    CHECK_FALSE(PathExists(t / out));
  }
  auto ok = RunCommand({dev_ca, "sign", ca, t / "ed.csr", t / "ed.pem", "--usage", "sign"});
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
}

}  // namespace
}  // namespace bud::test
