// An in-process test certificate authority, built with the OpenSSL 3.0 C API.
//
// Tests need certificates that a real deployment should never have: expired ones, ones that are
// not yet valid, ones with the wrong key usage or none, ones without an organisation number, and
// ones issued by a CA nobody trusts. TestCa makes all of them in memory, in milliseconds (except
// RSA key generation, which is slow: generate RSA keys once per test file and reuse them through
// LeafSpec::reuse_key).
//
// Ownership: every OpenSSL handle has exactly one owner, the RAII types of
// common/crypto/openssl.h. A TestCa owns its key and certificate; an issued Leaf owns its own key
// (generated, or a duplicate of LeafSpec::reuse_key, never a second reference to it) and its
// certificate. Borrowed pointers returned by accessors live as long as their owner.
//
// Failures inside this factory are bugs in the test set-up, not expected outcomes, so they throw
// std::runtime_error (Catch2 reports the message) instead of returning a Status.
#pragma once

#include <openssl/x509v3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/crypto/openssl.h"

namespace bud::test {

enum class KeyType { kRsa2048, kEcP256, kEd25519 };

// A new private key of the given type.
crypto::PKey GenerateKey(KeyType type);

// PEM (PKCS#8, unencrypted) of a private key.
std::string PrivateKeyToPem(EVP_PKEY* key);

// What the keyUsage extension of a leaf says.
enum class Usage {
  kSigning,     // critical, digitalSignature + nonRepudiation
  kEncryption,  // critical, keyEncipherment (RSA) or keyAgreement (EC)
  kCustom,      // exactly LeafSpec::key_usage_bits (KU_* from openssl/x509v3.h)
  kNone,        // no keyUsage extension at all
};

struct LeafSpec {
  KeyType key_type = KeyType::kEcP256;
  // When set, the leaf gets a duplicate of this key instead of a newly generated one; its type
  // wins over key_type. Borrowed for the duration of Issue() only.
  EVP_PKEY* reuse_key = nullptr;
  std::string common_name = "Budstikke test leaf";
  // Digits put in the subject's serialNumber (any string, so invalid ones can be tested too);
  // nullopt leaves serialNumber out.
  std::optional<std::string> orgnr;
  Usage usage = Usage::kSigning;
  uint32_t key_usage_bits = 0;  // for Usage::kCustom
  // basicConstraints in openssl.cnf syntax ("critical,CA:TRUE" makes a CA posing as a leaf);
  // empty leaves the extension out.
  std::string basic_constraints = "critical,CA:FALSE";
  // extendedKeyUsage in openssl.cnf syntax ("serverAuth", "emailProtection,clientAuth"); empty
  // leaves the extension out.
  std::string extended_key_usage = "emailProtection,clientAuth";
  // The URI in crlDistributionPoints; empty leaves the extension out.
  std::string crl_url = "http://crl.budstikke.invalid/test-ca.crl";
  // Validity relative to now, in seconds.
  int64_t not_before_offset_s = -3600;
  int64_t not_after_offset_s = 365LL * 24 * 3600;
};

// An issued certificate with its private key, as owners and as PEM.
struct Leaf {
  crypto::PKey key;
  crypto::Cert cert;
  std::string key_pem;
  std::string cert_pem;

  // Writes key_pem and cert_pem to the two files (mode 0600 / 0644). Throws on failure.
  void WriteFiles(const std::string& key_path, const std::string& cert_path) const;
};

class TestCa {
 public:
  // A self-signed CA (basicConstraints CA:TRUE, keyUsage keyCertSign + cRLSign) valid from 30
  // days ago for ten years, so that leaves can be checked at times in the recent past. The key is
  // EC P-256 unless told otherwise.
  explicit TestCa(std::string common_name = "Budstikke Test CA",
                  KeyType key_type = KeyType::kEcP256);
  TestCa(const TestCa&) = delete;
  TestCa& operator=(const TestCa&) = delete;
  TestCa(TestCa&&) = default;
  TestCa& operator=(TestCa&&) = default;

  // A CA from an existing private key and certificate in PEM files (e.g. scripts/dev-ca's
  // ca.key and ca.pem), to issue more leaves under a CA made elsewhere. Throws when a file cannot
  // be read or the key does not belong to the certificate.
  static TestCa FromPemFiles(const std::string& key_path, const std::string& cert_path);

  X509* cert() const { return cert_.get(); }
  EVP_PKEY* key() const { return key_.get(); }
  std::string cert_pem() const { return crypto::CertToPem(cert_.get()); }
  std::string key_pem() const { return PrivateKeyToPem(key_.get()); }
  // Writes the CA certificate as PEM, for crypto::TrustStore::Load. Throws on failure.
  void WriteCertFile(const std::string& path) const;

  // Issues a leaf signed by this CA. Each leaf gets a fresh random serial number.
  Leaf Issue(const LeafSpec& spec) const;

  // A CRL (v2, PEM) signed by this CA that lists `revoked` (borrowed for the call), valid from
  // now + this_update_offset_s to now + next_update_offset_s.
  std::string MakeCrl(const std::vector<X509*>& revoked, int64_t this_update_offset_s = -60,
                      int64_t next_update_offset_s = 7LL * 24 * 3600) const;
  // MakeCrl written to `path` (0644). Throws on failure.
  void WriteCrlFile(const std::string& path, const std::vector<X509*>& revoked,
                    int64_t this_update_offset_s = -60,
                    int64_t next_update_offset_s = 7LL * 24 * 3600) const;

  // Shorthands for the common cases: a valid signing or encryption certificate for `orgnr`.
  Leaf IssueSigning(KeyType type, const std::string& orgnr, EVP_PKEY* reuse_key = nullptr) const;
  Leaf IssueEncryption(KeyType type, const std::string& orgnr, EVP_PKEY* reuse_key = nullptr) const;

 private:
  TestCa(crypto::PKey key, crypto::Cert cert) : key_(std::move(key)), cert_(std::move(cert)) {}

  crypto::PKey key_;
  crypto::Cert cert_;
};

}  // namespace bud::test
