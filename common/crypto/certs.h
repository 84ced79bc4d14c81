// Certificate checks: chain to the deployment's trust anchor, validity period, end-entity
// profile (not a CA; key usage and extended key usage fit the role), revocation through CRLs
// loaded from a folder, and the organisation number in the subject's serialNumber (as in
// Norwegian enterprise certificates).
#pragma once

#include <cstdint>
#include <memory>
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
// The URIs in the certificate's CRL Distribution Points extension (empty when it has none).
std::vector<std::string> CrlUrlsOf(X509* cert);

// Where revocation lists come from. These machines have no network: an operator tool fetches the
// CRLs (`bud-registry crl-urls` lists the URLs) and drops them into `dir`.
struct CrlOptions {
  // A folder of CRL files (PEM, possibly several per file, or DER; any names; hidden files
  // ignored). Empty: revocation is not checked.
  std::string dir;
  // How often Verify looks at the folder again (names, sizes and modification times) and reloads
  // it when anything changed. 0: on every call.
  int64_t reload_interval_ms = 60'000;
};

class CrlSet;  // certs.cc

// The certificates a deployment trusts as issuers, and optionally the CRLs of those issuers.
// The anchors are immutable after Load. Concurrency: Verify and RefreshCrls may be called from
// any thread; the CRL set is swapped whole under a mutex, a verification uses one snapshot.
//
// Revocation (when CrlOptions::dir is set) fails closed: every certificate Verify checks must be
// covered by a CRL from its issuer that is in the folder, signed by that issuer (an anchor with
// cRLSign) and current (thisUpdate <= now < nextUpdate). A CRL that is missing, expired, not yet
// valid or badly signed gives kCertRevocationUnknown; a listed serial gives kCertRevoked.
// Limitations: end-entity certificates only (X509_V_FLAG_CRL_CHECK, not _ALL: the anchors are the
// issuers), no delta CRLs, no OCSP.
class TrustStore {
 public:
  static Result<TrustStore> Load(const std::string& anchor_file);
  // As Load, with revocation checking from `crls.dir` when it is not empty. The folder must
  // exist and be readable (kConfig otherwise); CRL files in it that cannot be used are reported
  // by CrlProblems() and by the kCertRevocationUnknown messages, not here.
  static Result<TrustStore> Load(const std::string& anchor_file, const CrlOptions& crls);

  // Checks, in this order, each with its own code: chain (kCertUntrusted), validity at `at_unix_s`
  // or now (kCertExpired / kCertNotYetValid), when revocation is checked whether a CRL lists it
  // (kCertRevoked), the end-entity profile (kCertWrongUsage: not a CA, no keyCertSign or
  // cRLSign, keyUsage for `purpose`, extendedKeyUsage when present allows emailProtection,
  // clientAuth or anyExtendedKeyUsage), when given the organisation number (kCertOrgMismatch),
  // and last whether a current CRL covers it (kCertRevocationUnknown, so that code means every
  // other check passed). CRLs are checked at the same time as the certificate.
  Status Verify(X509* cert, KeyPurpose purpose, const std::optional<Orgnr>& expected_org,
                std::optional<int64_t> at_unix_s = std::nullopt) const;

  bool checks_revocation() const { return crls_ != nullptr; }
  // Rereads the CRL folder if the reload interval has passed and it changed. Returns a number
  // that changes whenever the CRLs in use change (0 without revocation checking), so caches of
  // verdicts know when to forget them. Verify calls it itself.
  uint64_t RefreshCrls() const;
  // How many CRLs are in use, and why files in the folder were skipped (one line each).
  size_t CrlCount() const;
  std::vector<std::string> CrlProblems() const;

 private:
  std::shared_ptr<X509_STORE> store_;
  std::shared_ptr<CrlSet> crls_;  // null: no revocation checking
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
// certificates is parsed again). When the trust store's CRLs change, every verdict is dropped, so
// a newly installed CRL counts from the next call. Concurrency: not thread-safe; one per thread.
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
  uint64_t crl_generation_ = 0;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace bud::crypto
