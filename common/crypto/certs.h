// Certificate checks: chain to the deployment's trust anchor, validity period, key usage, and the
// organisation number in the subject's serialNumber (as in Norwegian enterprise certificates).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/crypto/openssl.h"
#include "common/orgnr.h"
#include "common/status.h"

namespace bud::crypto {

enum class KeyPurpose {
  kSigning,     // digitalSignature or nonRepudiation
  kEncryption,  // keyEncipherment (RSA) or keyAgreement (EC)
};

// The organisation number in the subject's serialNumber. kCertOrgMismatch when absent or invalid.
Result<Orgnr> OrgnrOfCert(X509* cert);
// Whole days until notAfter (negative once expired).
int DaysToExpiry(X509* cert);
std::string SubjectOf(X509* cert);

// The certificates a deployment trusts as issuers. Immutable after Load; safe to share.
class TrustStore {
 public:
  static Result<TrustStore> Load(const std::string& anchor_file);

  // Checks, in this order, each with its own code: chain (kCertUntrusted), validity at `at_unix_s`
  // or now (kCertExpired / kCertNotYetValid), key usage for `purpose` (kCertWrongUsage), and,
  // when given, the organisation number (kCertOrgMismatch).
  Status Verify(X509* cert, KeyPurpose purpose, const std::optional<Orgnr>& expected_org,
                std::optional<int64_t> at_unix_s = std::nullopt) const;

 private:
  std::shared_ptr<X509_STORE> store_;
};

// Of an organisation's current and (during a rotation) next certificate for `purpose`, those
// that pass TrustStore::Verify, newest (latest notBefore) first. When none passes: the current
// certificate's failure. An empty `next_pem` means no rotation.
Result<std::vector<Cert>> TrustedCerts(const TrustStore& trust, const std::string& current_pem,
                                       const std::string& next_pem, KeyPurpose purpose,
                                       const Orgnr& org);

// TrustedCerts with its verdicts remembered, keyed by the PEM texts, purpose and organisation.
// Parsing a certificate costs OpenSSL 3 a provider decoder for its public key (about 0.1 ms), and
// a busy integration point asks for the same few registry certificates with every message.
// Operation: a verdict (certificates or failure) is reused for `ttl_ms`, then checked again, so
// validity periods still end on time within that margin; a registry answer with other PEM text
// is another key. At `max_entries` the whole cache is dropped (a new registry's worth of
// certificates is parsed again). Concurrency: not thread-safe; one per thread.
class TrustedCertCache {
 public:
  explicit TrustedCertCache(const TrustStore& trust, int64_t ttl_ms = 60'000,
                            size_t max_entries = 4096)
      : trust_(trust), ttl_ms_(ttl_ms), max_entries_(max_entries) {}
  TrustedCertCache(const TrustedCertCache&) = delete;
  TrustedCertCache& operator=(const TrustedCertCache&) = delete;

  // As TrustedCerts; `now_ms` is any monotonic clock in milliseconds.
  Result<std::vector<Cert>> Get(const std::string& current_pem, const std::string& next_pem,
                                KeyPurpose purpose, const Orgnr& org, int64_t now_ms);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    int64_t checked_ms;
    Status status;            // when no certificate passed
    std::vector<Cert> certs;  // newest first
  };
  const TrustStore& trust_;
  int64_t ttl_ms_;
  size_t max_entries_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace bud::crypto
