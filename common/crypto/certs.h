// Certificate checks: chain to the deployment's trust anchor, validity period, key usage, and the
// organisation number in the subject's serialNumber (as in Norwegian enterprise certificates).
#pragma once

#include <optional>
#include <string>

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

}  // namespace bud::crypto
