// Certificate checks (common/crypto/certs.h): chain to the trust anchor, validity period, key
// usage and the organisation number in the subject's serialNumber, each with its own code.
#include "common/crypto/certs.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <string>
#include <thread>

#include "common/fs.h"
#include "tests/common/agencies.h"

namespace bud::test {
namespace {

using crypto::KeyPurpose;

constexpr int64_t kDay = 24 * 3600;
const std::string kOrgA = "910076787";
const std::string kOrgB = "910075918";

// One trusted CA, two untrusted ones (one a namesake of the trusted CA with its own key), and one
// key of each type reused by every leaf (RSA generation is slow).
struct CertPki {
  CertPki()
      : rogue("Rogue CA"),
        impostor("Budstikke Test CA"),
        rsa(GenerateKey(KeyType::kRsa2048)),
        ec(GenerateKey(KeyType::kEcP256)),
        ed(GenerateKey(KeyType::kEd25519)) {
    anchor = dir / "anchor.pem";
    ca.WriteCertFile(anchor);
    auto loaded = crypto::TrustStore::Load(anchor);
    if (!loaded.ok()) throw std::runtime_error(loaded.status().ToString());
    trust = std::move(loaded).value();
  }

  EVP_PKEY* Key(KeyType t) const {
    return t == KeyType::kRsa2048 ? rsa.get() : t == KeyType::kEcP256 ? ec.get() : ed.get();
  }

  LeafSpec Spec(KeyType t, Usage usage, std::optional<std::string> org = kOrgA) const {
    LeafSpec spec;
    spec.reuse_key = Key(t);
    spec.usage = usage;
    spec.orgnr = std::move(org);
    spec.common_name = "Etat " + spec.orgnr.value_or("uten orgnr");
    return spec;
  }

  TempDir dir;
  std::string anchor;
  TestCa ca;
  TestCa rogue;
  TestCa impostor;
  crypto::PKey rsa, ec, ed;
  crypto::TrustStore trust;
};

const CertPki& Pki() {
  static const CertPki pki;
  return pki;
}

Status Verify(const Leaf& leaf, KeyPurpose purpose, const std::string& org = kOrgA) {
  return Pki().trust.Verify(leaf.cert.get(), purpose, Org(org));
}

TEST_CASE("Valid signing and encryption certificates pass", "[certs]") {
  const CertPki& pki = Pki();
  SECTION("signing: RSA, EC P-256, Ed25519") {
    const KeyType t = GENERATE(KeyType::kRsa2048, KeyType::kEcP256, KeyType::kEd25519);
    CAPTURE(t);
    Leaf leaf = pki.ca.Issue(pki.Spec(t, Usage::kSigning));
    Status s = Verify(leaf, KeyPurpose::kSigning);
    INFO(s.ToString());
    CHECK(s.ok());
    CHECK(pki.trust.Verify(leaf.cert.get(), KeyPurpose::kSigning, std::nullopt).ok());
  }
  SECTION("encryption: RSA keyEncipherment, EC keyAgreement") {
    const KeyType t = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
    CAPTURE(t);
    Leaf leaf = pki.ca.Issue(pki.Spec(t, Usage::kEncryption));
    Status s = Verify(leaf, KeyPurpose::kEncryption);
    INFO(s.ToString());
    CHECK(s.ok());
  }
  SECTION("nonRepudiation alone is enough for signing") {
    LeafSpec spec = pki.Spec(KeyType::kEcP256, Usage::kCustom);
    spec.key_usage_bits = KU_NON_REPUDIATION;
    CHECK(Verify(pki.ca.Issue(spec), KeyPurpose::kSigning).ok());
  }
  SECTION("one certificate may carry both usages") {
    LeafSpec spec = pki.Spec(KeyType::kRsa2048, Usage::kCustom);
    spec.key_usage_bits = KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT;
    Leaf leaf = pki.ca.Issue(spec);
    CHECK(Verify(leaf, KeyPurpose::kSigning).ok());
    CHECK(Verify(leaf, KeyPurpose::kEncryption).ok());
  }
}

TEST_CASE("A certificate from a CA that is not the trust anchor is untrusted", "[certs]") {
  const CertPki& pki = Pki();
  SECTION("a different CA") {
    Leaf leaf = pki.rogue.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning));
    Status s = Verify(leaf, KeyPurpose::kSigning);
    CHECK(s.code() == Code::kCertUntrusted);
    CHECK_THAT(s.message(), Catch::Contains("Etat 910076787"));
  }
  SECTION("a CA with the trusted CA's name but its own key") {
    Leaf leaf = pki.impostor.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning));
    CHECK(Verify(leaf, KeyPurpose::kSigning).code() == Code::kCertUntrusted);
  }
  SECTION("the untrusted CA's own certificate") {
    CHECK(pki.trust.Verify(pki.rogue.cert(), KeyPurpose::kSigning, std::nullopt).code() ==
          Code::kCertUntrusted);
  }
  SECTION("an untrusted chain is reported before an expiry") {
    LeafSpec spec = pki.Spec(KeyType::kEcP256, Usage::kSigning);
    spec.not_before_offset_s = -10 * kDay;
    spec.not_after_offset_s = -1 * kDay;
    CHECK(Verify(pki.rogue.Issue(spec), KeyPurpose::kSigning).code() == Code::kCertUntrusted);
  }
}

TEST_CASE("Validity period: expired and not yet valid", "[certs]") {
  const CertPki& pki = Pki();
  const int64_t now = static_cast<int64_t>(std::time(nullptr));

  LeafSpec expired_spec = pki.Spec(KeyType::kRsa2048, Usage::kSigning);
  expired_spec.not_before_offset_s = -10 * kDay;
  expired_spec.not_after_offset_s = -1 * kDay;
  Leaf expired = pki.ca.Issue(expired_spec);

  LeafSpec future_spec = pki.Spec(KeyType::kEcP256, Usage::kEncryption);
  future_spec.not_before_offset_s = 1 * kDay;
  future_spec.not_after_offset_s = 10 * kDay;
  Leaf future = pki.ca.Issue(future_spec);

  Status s = Verify(expired, KeyPurpose::kSigning);
  CHECK(s.code() == Code::kCertExpired);
  CHECK_THAT(s.message(), Catch::Contains("expired"));
  CHECK(Verify(future, KeyPurpose::kEncryption).code() == Code::kCertNotYetValid);
  CHECK(crypto::DaysToExpiry(expired.cert.get()) < 0);

  // At a time inside their validity both are fine; `at_unix_s` is honoured.
  CHECK(
      pki.trust.Verify(expired.cert.get(), KeyPurpose::kSigning, Org(kOrgA), now - 5 * kDay).ok());
  CHECK(pki.trust.Verify(future.cert.get(), KeyPurpose::kEncryption, Org(kOrgA), now + 5 * kDay)
            .ok());
  // And a valid certificate checked after its notAfter is expired.
  Leaf valid = pki.ca.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning));
  const int days = crypto::DaysToExpiry(valid.cert.get());
  CHECK(days >= 364);
  CHECK(days <= 365);
  CHECK(pki.trust.Verify(valid.cert.get(), KeyPurpose::kSigning, Org(kOrgA), now + 400 * kDay)
            .code() == Code::kCertExpired);
  // Expiry is reported before a wrong usage.
  CHECK(Verify(expired, KeyPurpose::kEncryption).code() == Code::kCertExpired);
}

TEST_CASE("Key usage must allow what the certificate is used for", "[certs]") {
  const CertPki& pki = Pki();
  SECTION("an encryption-only certificate used for signing") {
    const KeyType t = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
    CAPTURE(t);
    Leaf leaf = pki.ca.Issue(pki.Spec(t, Usage::kEncryption));
    REQUIRE(Verify(leaf, KeyPurpose::kEncryption).ok());
    Status s = Verify(leaf, KeyPurpose::kSigning);
    CHECK(s.code() == Code::kCertWrongUsage);
    CHECK_THAT(s.message(), Catch::Contains("not for signing"));
  }
  SECTION("a signing-only certificate used for encryption") {
    const KeyType t = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
    CAPTURE(t);
    Leaf leaf = pki.ca.Issue(pki.Spec(t, Usage::kSigning));
    REQUIRE(Verify(leaf, KeyPurpose::kSigning).ok());
    Status s = Verify(leaf, KeyPurpose::kEncryption);
    CHECK(s.code() == Code::kCertWrongUsage);
    CHECK_THAT(s.message(), Catch::Contains("not for encryption"));
  }
  SECTION("no keyUsage extension at all") {
    const KeyType t = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
    CAPTURE(t);
    Leaf leaf = pki.ca.Issue(pki.Spec(t, Usage::kNone));
    REQUIRE(X509_get_key_usage(leaf.cert.get()) == UINT32_MAX);  // the factory left it out
    CHECK(Verify(leaf, KeyPurpose::kSigning).code() == Code::kCertWrongUsage);
    CHECK(Verify(leaf, KeyPurpose::kEncryption).code() == Code::kCertWrongUsage);
  }
  SECTION("an empty keyUsage") {
    LeafSpec spec = pki.Spec(KeyType::kRsa2048, Usage::kCustom);
    spec.key_usage_bits = 0;
    Leaf leaf = pki.ca.Issue(spec);
    // RFC 5280 forbids an empty keyUsage; OpenSSL marks such a certificate invalid and then
    // cannot match it to its issuer, so it is refused before the usage check is reached.
    for (KeyPurpose purpose : {KeyPurpose::kSigning, KeyPurpose::kEncryption}) {
      Status s = Verify(leaf, purpose);
      INFO(s.ToString());
      REQUIRE_FALSE(s.ok());
      CHECK((s.code() == Code::kCertUntrusted || s.code() == Code::kCertWrongUsage));
    }
  }
  SECTION("the encryption usage must fit the key type") {
    LeafSpec ec_spec = pki.Spec(KeyType::kEcP256, Usage::kCustom);
    ec_spec.key_usage_bits = KU_KEY_ENCIPHERMENT;  // RSA's usage on an EC key
    CHECK(Verify(pki.ca.Issue(ec_spec), KeyPurpose::kEncryption).code() == Code::kCertWrongUsage);
    LeafSpec rsa_spec = pki.Spec(KeyType::kRsa2048, Usage::kCustom);
    rsa_spec.key_usage_bits = KU_KEY_AGREEMENT;  // EC's usage on an RSA key
    CHECK(Verify(pki.ca.Issue(rsa_spec), KeyPurpose::kEncryption).code() == Code::kCertWrongUsage);
    LeafSpec ed_spec = pki.Spec(KeyType::kEd25519, Usage::kCustom);
    ed_spec.key_usage_bits = KU_KEY_AGREEMENT | KU_KEY_ENCIPHERMENT;  // Ed25519 cannot encrypt
    CHECK(Verify(pki.ca.Issue(ed_spec), KeyPurpose::kEncryption).code() == Code::kCertWrongUsage);
  }
  SECTION("keyCertSign or dataEncipherment do not make a signing or encryption key") {
    LeafSpec spec = pki.Spec(KeyType::kRsa2048, Usage::kCustom);
    spec.key_usage_bits = KU_KEY_CERT_SIGN | KU_DATA_ENCIPHERMENT | KU_CRL_SIGN;
    Leaf leaf = pki.ca.Issue(spec);
    CHECK(Verify(leaf, KeyPurpose::kSigning).code() == Code::kCertWrongUsage);
    CHECK(Verify(leaf, KeyPurpose::kEncryption).code() == Code::kCertWrongUsage);
  }
}

TEST_CASE("The organisation number in the certificate must be the expected one", "[certs]") {
  const CertPki& pki = Pki();
  SECTION("another organisation's certificate") {
    Leaf leaf = pki.ca.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning, kOrgB));
    Status s = Verify(leaf, KeyPurpose::kSigning, kOrgA);
    CHECK(s.code() == Code::kCertOrgMismatch);
    CHECK_THAT(s.message(), Catch::Contains(kOrgA) && Catch::Contains(kOrgB));
    CHECK(Verify(leaf, KeyPurpose::kSigning, kOrgB).ok());
  }
  SECTION("no serialNumber in the subject") {
    Leaf leaf = pki.ca.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning, std::nullopt));
    CHECK(Verify(leaf, KeyPurpose::kSigning).code() == Code::kCertOrgMismatch);
    // Without an expected organisation the number is not needed.
    CHECK(pki.trust.Verify(leaf.cert.get(), KeyPurpose::kSigning, std::nullopt).ok());
  }
  SECTION("a serialNumber that is not an organisation number") {
    const std::string bad =
        GENERATE(as<std::string>{}, "910076788", "12345", "ABCDEFGHI", "9100767870");
    CAPTURE(bad);
    Leaf leaf = pki.ca.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning, bad));
    CHECK(Verify(leaf, KeyPurpose::kSigning).code() == Code::kCertOrgMismatch);
  }
  SECTION("organisation is checked after chain, validity and usage") {
    LeafSpec spec = pki.Spec(KeyType::kEcP256, Usage::kSigning, kOrgB);
    CHECK(Verify(pki.ca.Issue(pki.Spec(KeyType::kEcP256, Usage::kEncryption, kOrgB)),
                 KeyPurpose::kSigning, kOrgA)
              .code() == Code::kCertWrongUsage);
    spec.not_after_offset_s = -kDay;
    spec.not_before_offset_s = -2 * kDay;
    CHECK(Verify(pki.ca.Issue(spec), KeyPurpose::kSigning, kOrgA).code() == Code::kCertExpired);
  }
}

TEST_CASE("OrgnrOfCert reads the organisation number from serialNumber", "[certs]") {
  const CertPki& pki = Pki();
  auto plain = crypto::OrgnrOfCert(
      pki.ca.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning, kOrgB)).cert.get());
  REQUIRE(plain.ok());
  CHECK(plain->digits() == kOrgB);

  auto missing = crypto::OrgnrOfCert(
      pki.ca.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning, std::nullopt)).cert.get());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == Code::kCertOrgMismatch);
  CHECK_THAT(missing.status().message(), Catch::Contains("serialNumber"));

  auto invalid = crypto::OrgnrOfCert(
      pki.ca.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning, "910076788")).cert.get());
  REQUIRE_FALSE(invalid.ok());
  CHECK(invalid.status().code() == Code::kCertOrgMismatch);
}

TEST_CASE("TrustStore::Load reads a bundle and refuses files without certificates", "[certs]") {
  const CertPki& pki = Pki();
  TempDir dir;
  SECTION("a bundle of two anchors trusts both") {
    REQUIRE(WriteFileSynced(dir / "bundle.pem", pki.ca.cert_pem() + pki.rogue.cert_pem()).ok());
    auto both = crypto::TrustStore::Load(dir / "bundle.pem");
    REQUIRE(both.ok());
    Leaf from_rogue = pki.rogue.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning));
    Leaf from_ca = pki.ca.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning));
    CHECK(both->Verify(from_rogue.cert.get(), KeyPurpose::kSigning, Org(kOrgA)).ok());
    CHECK(both->Verify(from_ca.cert.get(), KeyPurpose::kSigning, Org(kOrgA)).ok());
  }
  SECTION("a missing file") {
    auto missing = crypto::TrustStore::Load(dir / "nope.pem");
    REQUIRE_FALSE(missing.ok());
    CHECK_THAT(missing.status().message(), Catch::Contains("nope.pem"));
  }
  SECTION("a file with no certificate") {
    REQUIRE(WriteFileSynced(dir / "empty.pem", "not a certificate\n").ok());
    auto empty = crypto::TrustStore::Load(dir / "empty.pem");
    REQUIRE_FALSE(empty.ok());
    CHECK(empty.status().code() == Code::kBadCertificate);
  }
}

TEST_CASE("The test CA's PEM output loads back through the library", "[certs][pki]") {
  const CertPki& pki = Pki();
  Leaf leaf = pki.ca.Issue(pki.Spec(KeyType::kEd25519, Usage::kSigning));
  auto cert = crypto::CertFromPem(leaf.cert_pem);
  REQUIRE(cert.ok());
  CHECK(crypto::CertFingerprint(cert->get()) == crypto::CertFingerprint(leaf.cert.get()));
  auto key = crypto::PrivateKeyFromPem(leaf.key_pem);
  REQUIRE(key.ok());
  CHECK(EVP_PKEY_eq(key->get(), leaf.key.get()) == 1);
  // Reused keys are duplicates, not shared handles, and every certificate has its own serial.
  Leaf again = pki.ca.Issue(pki.Spec(KeyType::kEd25519, Usage::kSigning));
  CHECK(again.key.get() != leaf.key.get());
  CHECK(EVP_PKEY_eq(again.key.get(), leaf.key.get()) == 1);
  CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(again.cert.get()),
                         X509_get0_serialNumber(leaf.cert.get())) != 0);
  CHECK_FALSE(crypto::PrivateKeyFromPem("garbage").ok());
  CHECK(crypto::CertFromPem("garbage").status().code() == Code::kBadCertificate);
}

TEST_CASE("TrustedCertCache reuses a verdict for its time to live, then checks again", "[certs]") {
  const CertPki& pki = Pki();
  LeafSpec spec = pki.Spec(KeyType::kEcP256, Usage::kSigning);
  spec.not_after_offset_s = 2;  // expires while the test runs
  const Leaf short_lived = pki.ca.Issue(spec);
  const std::string pem = crypto::CertToPem(short_lived.cert.get());

  crypto::TrustedCertCache cache(pki.trust, /*ttl_ms=*/10'000);
  auto first = cache.Get(pem, "", KeyPurpose::kSigning, Org(kOrgA), 0);
  REQUIRE(first.ok());
  REQUIRE(first->size() == 1);
  CHECK(X509_cmp(first->front().get(), short_lived.cert.get()) == 0);
  // Another purpose or organisation is another verdict, not the cached one.
  CHECK(cache.Get(pem, "", KeyPurpose::kEncryption, Org(kOrgA), 0).status().code() ==
        Code::kCertWrongUsage);
  CHECK(cache.Get(pem, "", KeyPurpose::kSigning, Org(kOrgB), 0).status().code() ==
        Code::kCertOrgMismatch);

  std::this_thread::sleep_for(std::chrono::milliseconds(3100));
  REQUIRE(Verify(short_lived, KeyPurpose::kSigning).code() == Code::kCertExpired);
  // Within the time to live the verdict stands; from its end on, the expiry is seen.
  auto cached = cache.Get(pem, "", KeyPurpose::kSigning, Org(kOrgA), 9'999);
  REQUIRE(cached.ok());
  CHECK(X509_cmp(cached->front().get(), short_lived.cert.get()) == 0);
  CHECK(cache.Get(pem, "", KeyPurpose::kSigning, Org(kOrgA), 10'000).status().code() ==
        Code::kCertExpired);
  // A clock that went backwards does not keep a verdict either.
  CHECK(cache.Get(pem, "", KeyPurpose::kSigning, Org(kOrgA), 5).status().code() ==
        Code::kCertExpired);
  CHECK(cache.size() == 3);
}

TEST_CASE("TrustedCertCache stays within its size and caches failures", "[certs]") {
  const CertPki& pki = Pki();
  crypto::TrustedCertCache cache(pki.trust, /*ttl_ms=*/60'000, /*max_entries=*/2);
  std::vector<std::string> pems;
  for (int i = 0; i < 3; ++i) {
    Leaf leaf = pki.ca.Issue(pki.Spec(KeyType::kEcP256, Usage::kSigning));
    pems.push_back(crypto::CertToPem(leaf.cert.get()));
  }
  for (const auto& pem : pems) {
    CHECK(cache.Get(pem, "", KeyPurpose::kSigning, Org(kOrgA), 0).ok());
    CHECK(cache.size() <= 2);
  }
  CHECK(cache.Get("garbage", "", KeyPurpose::kSigning, Org(kOrgA), 0).status().code() ==
        Code::kBadCertificate);
  CHECK(cache.Get("garbage", "", KeyPurpose::kSigning, Org(kOrgA), 1).status().code() ==
        Code::kBadCertificate);
  // Current and next: both trusted, newest first, as TrustedCerts gives them.
  auto both = cache.Get(pems[0], pems[1], KeyPurpose::kSigning, Org(kOrgA), 0);
  REQUIRE(both.ok());
  CHECK(both->size() == 2);
}

}  // namespace
}  // namespace bud::test
