// End-entity profile and revocation (common/crypto/certs.h): a CA certificate or one whose
// extended key usage does not fit is refused as an agency's certificate; with a CRL folder, a
// listed certificate is CERT_REVOKED, and a certificate no current CRL covers is
// CERT_REVOCATION_UNKNOWN (fail closed) whatever the reason: no CRL, an expired or not yet valid
// one, one not signed by a trust anchor, an unreadable file. The folder is reread when it changes.
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/crypto/certs.h"
#include "common/fs.h"
#include "tests/common/agencies.h"

namespace bud::test {
namespace {

using crypto::CrlOptions;
using crypto::KeyPurpose;
using crypto::TrustStore;

constexpr int64_t kDay = 24 * 3600;
const std::string kOrgA = "910076787";

// One trusted CA, a rogue CA and a namesake of the trusted CA with another key; one EC key
// reused by every leaf.
struct RevocationPki {
  RevocationPki()
      : rogue("Rogue CA"), impostor("Budstikke Test CA"), key(GenerateKey(KeyType::kEcP256)) {
    anchor = dir / "anchor.pem";
    ca.WriteCertFile(anchor);
  }

  LeafSpec Spec(Usage usage = Usage::kSigning) const {
    LeafSpec spec;
    spec.reuse_key = key.get();
    spec.usage = usage;
    spec.orgnr = kOrgA;
    spec.common_name = "Etat " + kOrgA;
    return spec;
  }
  Leaf Issue(Usage usage = Usage::kSigning) const { return ca.Issue(Spec(usage)); }

  TempDir dir;
  std::string anchor;
  TestCa ca;
  TestCa rogue;
  TestCa impostor;
  crypto::PKey key;
};

const RevocationPki& Pki() {
  static const RevocationPki pki;
  return pki;
}

TrustStore LoadTrust(const std::string& crl_dir = "", int64_t reload_ms = 0) {
  auto t =
      TrustStore::Load(Pki().anchor, CrlOptions{.dir = crl_dir, .reload_interval_ms = reload_ms});
  if (!t.ok()) throw std::runtime_error(t.status().ToString());
  return std::move(t).value();
}

Status VerifyWith(const TrustStore& trust, const Leaf& leaf,
                  KeyPurpose purpose = KeyPurpose::kSigning) {
  return trust.Verify(leaf.cert.get(), purpose, Org(kOrgA));
}

std::string Joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

TEST_CASE("A CA certificate is refused as an agency's certificate", "[certs][revocation]") {
  const RevocationPki& pki = Pki();
  const TrustStore trust = LoadTrust();
  SECTION("basicConstraints CA:TRUE with a signing keyUsage") {
    LeafSpec spec = pki.Spec();
    spec.basic_constraints = "critical,CA:TRUE";
    Leaf leaf = pki.ca.Issue(spec);
    Status s = VerifyWith(trust, leaf);
    INFO(s.ToString());
    CHECK(s.code() == Code::kCertWrongUsage);
    CHECK(s.message().find("CA certificate") != std::string::npos);
  }
  SECTION("CA:TRUE with an encryption keyUsage") {
    LeafSpec spec = pki.Spec(Usage::kEncryption);
    spec.basic_constraints = "CA:TRUE";
    CHECK(VerifyWith(trust, pki.ca.Issue(spec), KeyPurpose::kEncryption).code() ==
          Code::kCertWrongUsage);
  }
  SECTION("CA:FALSE but keyCertSign or cRLSign beside digitalSignature") {
    for (uint32_t extra :
         {static_cast<uint32_t>(KU_KEY_CERT_SIGN), static_cast<uint32_t>(KU_CRL_SIGN)}) {
      LeafSpec spec = pki.Spec(Usage::kCustom);
      spec.key_usage_bits = KU_DIGITAL_SIGNATURE | extra;
      CHECK(VerifyWith(trust, pki.ca.Issue(spec)).code() == Code::kCertWrongUsage);
    }
  }
  SECTION("the trust anchor itself") {
    CHECK(trust.Verify(pki.ca.cert(), KeyPurpose::kSigning, std::nullopt).code() ==
          Code::kCertWrongUsage);
  }
  SECTION("no basicConstraints at all is an end entity (RFC 5280 4.2.1.9)") {
    LeafSpec spec = pki.Spec();
    spec.basic_constraints.clear();
    Leaf leaf = pki.ca.Issue(spec);
    Status s = VerifyWith(trust, leaf);
    INFO(s.ToString());
    CHECK(s.ok());
  }
}

TEST_CASE("An extendedKeyUsage, when present, must allow S/MIME or client use",
          "[certs][revocation]") {
  const RevocationPki& pki = Pki();
  const TrustStore trust = LoadTrust();
  for (const char* refused : {"serverAuth", "codeSigning", "timeStamping", "OCSPSigning"}) {
    CAPTURE(refused);
    LeafSpec spec = pki.Spec();
    spec.extended_key_usage = refused;
    Status s = VerifyWith(trust, pki.ca.Issue(spec));
    INFO(s.ToString());
    CHECK(s.code() == Code::kCertWrongUsage);
  }
  for (const char* allowed :
       {"emailProtection", "clientAuth", "anyExtendedKeyUsage", "serverAuth,emailProtection", ""}) {
    CAPTURE(allowed);
    LeafSpec spec = pki.Spec(Usage::kEncryption);
    spec.extended_key_usage = allowed;
    Status s = VerifyWith(trust, pki.ca.Issue(spec), KeyPurpose::kEncryption);
    INFO(s.ToString());
    CHECK(s.ok());
  }
}

TEST_CASE("A certificate listed on its issuer's CRL is CERT_REVOKED", "[certs][revocation]") {
  const RevocationPki& pki = Pki();
  TempDir crls;
  Leaf revoked = pki.Issue();
  Leaf good = pki.Issue(Usage::kEncryption);
  pki.ca.WriteCrlFile(crls / "ca.crl", {revoked.cert.get()});
  const TrustStore trust = LoadTrust(crls.path());
  REQUIRE(trust.checks_revocation());
  CHECK(trust.CrlCount() == 1);

  Status s = VerifyWith(trust, revoked);
  INFO(s.ToString());
  CHECK(s.code() == Code::kCertRevoked);
  CHECK(s.message().find("revoked") != std::string::npos);
  CHECK(VerifyWith(trust, good, KeyPurpose::kEncryption).ok());
  // The same check on a certificate whose other problem comes first in Verify's order.
  LeafSpec ca_spec = pki.Spec();
  ca_spec.basic_constraints = "critical,CA:TRUE";
  Leaf revoked_ca = pki.ca.Issue(ca_spec);
  pki.ca.WriteCrlFile(crls / "ca.crl", {revoked.cert.get(), revoked_ca.cert.get()});
  CHECK(VerifyWith(trust, revoked_ca).code() == Code::kCertRevoked);
  // Without a CRL folder nothing is checked (today's behaviour, logged as such by the callers).
  CHECK(VerifyWith(LoadTrust(), revoked).ok());
  SECTION("a DER CRL is read too") {
    TempDir der_dir;
    std::string pem = pki.ca.MakeCrl({revoked.cert.get()});
    crypto::Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr);
    REQUIRE(crl != nullptr);
    unsigned char* der = nullptr;
    int n = i2d_X509_CRL(crl, &der);
    X509_CRL_free(crl);
    REQUIRE(n > 0);
    std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(n));
    OPENSSL_free(der);
    REQUIRE(WriteFileSynced(der_dir / "ca.der", bytes).ok());
    const TrustStore der_trust = LoadTrust(der_dir.path());
    CHECK(der_trust.CrlCount() == 1);
    CHECK(VerifyWith(der_trust, revoked).code() == Code::kCertRevoked);
    CHECK(VerifyWith(der_trust, good, KeyPurpose::kEncryption).ok());
  }
}

TEST_CASE("With a CRL folder, a certificate no current CRL covers is refused (fail closed)",
          "[certs][revocation]") {
  const RevocationPki& pki = Pki();
  Leaf leaf = pki.Issue();
  TempDir crls;
  auto unknown = [&](const TrustStore& trust) {
    Status s = VerifyWith(trust, leaf);
    INFO(s.ToString());
    CHECK(s.code() == Code::kCertRevocationUnknown);
    return s;
  };
  SECTION("no CRL from the issuer in the folder") {
    Status s = unknown(LoadTrust(crls.path()));
    CHECK(s.message().find("0 CRL(s) in use") != std::string::npos);
  }
  SECTION("the CRL has expired (nextUpdate passed)") {
    pki.ca.WriteCrlFile(crls / "ca.crl", {}, -10 * kDay, -kDay);
    (void)unknown(LoadTrust(crls.path()));
  }
  SECTION("the CRL is not yet valid") {
    pki.ca.WriteCrlFile(crls / "ca.crl", {}, kDay, 10 * kDay);
    (void)unknown(LoadTrust(crls.path()));
  }
  SECTION("an expired CRL beside a current one: the current one counts") {
    pki.ca.WriteCrlFile(crls / "old.crl", {}, -10 * kDay, -kDay);
    pki.ca.WriteCrlFile(crls / "new.crl", {});
    CHECK(VerifyWith(LoadTrust(crls.path()), leaf).ok());
  }
  SECTION("a CRL signed by another CA, or by a namesake of the issuer, is skipped") {
    pki.rogue.WriteCrlFile(crls / "rogue.crl", {});
    pki.impostor.WriteCrlFile(crls / "impostor.crl", {});
    const TrustStore trust = LoadTrust(crls.path());
    CHECK(trust.CrlCount() == 0);
    const std::string problems = Joined(trust.CrlProblems());
    INFO(problems);
    CHECK(problems.find("rogue.crl") != std::string::npos);
    CHECK(problems.find("impostor.crl") != std::string::npos);
    Status s = unknown(trust);
    CHECK(s.message().find("not signed by a trust anchor") != std::string::npos);
  }
  SECTION("a file that holds no CRL is skipped and named") {
    REQUIRE(WriteFileSynced(crls / "junk.crl", std::string(5000, '\x30')).ok());
    REQUIRE(WriteFileSynced(crls / "cert.pem", leaf.cert_pem).ok());
    const TrustStore trust = LoadTrust(crls.path());
    CHECK(Joined(trust.CrlProblems()).find("junk.crl") != std::string::npos);
    CHECK(Joined(trust.CrlProblems()).find("cert.pem") != std::string::npos);
    (void)unknown(trust);
  }
  SECTION("every other check still comes first") {
    LeafSpec spec = pki.Spec();
    spec.extended_key_usage = "serverAuth";
    CHECK(VerifyWith(LoadTrust(crls.path()), pki.ca.Issue(spec)).code() == Code::kCertWrongUsage);
    CHECK(LoadTrust(crls.path()).Verify(leaf.cert.get(), KeyPurpose::kSigning, Org("910075918"))
              .code() == Code::kCertOrgMismatch);
    Leaf foreign = pki.rogue.Issue(pki.Spec());
    CHECK(VerifyWith(LoadTrust(crls.path()), foreign).code() == Code::kCertUntrusted);
  }
  SECTION("a missing folder is a configuration error at load") {
    auto t = TrustStore::Load(pki.anchor, CrlOptions{.dir = crls / "nope"});
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == Code::kConfig);
    CHECK(t.status().message().find("nope") != std::string::npos);
  }
}

TEST_CASE("The CRL folder is reread when it changes, and cached verdicts are dropped",
          "[certs][revocation]") {
  const RevocationPki& pki = Pki();
  Leaf leaf = pki.Issue();
  TempDir crls;
  pki.ca.WriteCrlFile(crls / "ca.crl", {});
  const TrustStore trust = LoadTrust(crls.path(), 0);
  const TrustStore slow = LoadTrust(crls.path(), 3600'000);
  crypto::TrustedCertCache cache(trust, /*ttl_ms=*/3600'000);
  const uint64_t gen = trust.RefreshCrls();
  CHECK(VerifyWith(trust, leaf).ok());
  CHECK(cache.Get(leaf.cert_pem, "", KeyPurpose::kSigning, Org(kOrgA), 0).ok());

  // A new CRL listing the certificate replaces the file.
  pki.ca.WriteCrlFile(crls / "ca.crl", {leaf.cert.get()});
  CHECK(trust.RefreshCrls() != gen);
  CHECK(VerifyWith(trust, leaf).code() == Code::kCertRevoked);
  auto cached = cache.Get(leaf.cert_pem, "", KeyPurpose::kSigning, Org(kOrgA), 1);
  CHECK(cached.status().code() == Code::kCertRevoked);
  // A store that looks at the folder once an hour still uses what it loaded.
  CHECK(VerifyWith(slow, leaf).ok());

  // The CRL removed: nothing covers the certificate any more.
  REQUIRE(RemoveAll(crls / "ca.crl").ok());
  CHECK(VerifyWith(trust, leaf).code() == Code::kCertRevocationUnknown);
}

TEST_CASE("CrlUrlsOf reads the CRL Distribution Points", "[certs][revocation]") {
  const RevocationPki& pki = Pki();
  Leaf with = pki.Issue();
  CHECK(crypto::CrlUrlsOf(with.cert.get()) ==
        std::vector<std::string>{"http://crl.budstikke.invalid/test-ca.crl"});
  LeafSpec spec = pki.Spec();
  spec.crl_url.clear();
  CHECK(crypto::CrlUrlsOf(pki.ca.Issue(spec).cert.get()).empty());
}

}  // namespace
}  // namespace bud::test
