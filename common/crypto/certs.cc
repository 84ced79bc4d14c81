// Certificate verification against a trust anchor. See certs.h.
#include "common/crypto/certs.h"

#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <mutex>

#include "common/fs.h"

namespace bud::crypto {

namespace {

// Frees the CRLs with the stack: a snapshot owns its CRLs.
void FreeCrlStack(STACK_OF(X509_CRL) * s) { sk_X509_CRL_pop_free(s, X509_CRL_free); }
using CrlStack = std::unique_ptr<STACK_OF(X509_CRL), Deleter<FreeCrlStack>>;
using Crl = std::unique_ptr<X509_CRL, Deleter<X509_CRL_free>>;

// A CRL file larger than this is skipped (national CAs' CRLs are a few MB).
constexpr off_t kMaxCrlFileBytes = 64 << 20;
// At most this many files in the folder are read.
constexpr size_t kMaxCrlFiles = 256;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string NameOneLine(X509_NAME* name) {
  char buf[512];
  X509_NAME_oneline(name, buf, sizeof buf);
  return buf;
}

}  // namespace

// The CRLs in use, loaded from CrlOptions::dir. See TrustStore.
class CrlSet {
 public:
  struct Snapshot {
    CrlStack crls;
    uint64_t generation = 0;
    std::vector<std::string> problems;  // files or CRLs skipped, and why
  };

  CrlSet(CrlOptions options, std::vector<Cert> anchors)
      : options_(std::move(options)), anchors_(std::move(anchors)) {}

  // The first load: the folder must be readable.
  Status LoadNow() {
    std::lock_guard lock(mu_);
    std::string listing;
    std::vector<std::string> files;
    BUD_RETURN_IF_ERROR(ScanLocked(&listing, &files));
    Install(listing, files);
    last_check_ms_ = SteadyMs();
    return Status::Ok();
  }

  // The current snapshot, after rereading the folder when the interval has passed and its
  // listing changed. A folder that has become unreadable counts as empty (fail closed).
  std::shared_ptr<const Snapshot> Current() {
    std::lock_guard lock(mu_);
    const int64_t now = SteadyMs();
    if (now - last_check_ms_ >= options_.reload_interval_ms || now < last_check_ms_) {
      last_check_ms_ = now;
      std::string listing;
      std::vector<std::string> files;
      Status s = ScanLocked(&listing, &files);
      if (!s.ok()) {
        listing = "unreadable: " + s.ToString();
        files.clear();
      }
      if (listing != listing_) Install(listing, files, s.ok() ? "" : s.ToString());
    }
    return current_;
  }

  const std::string& dir() const { return options_.dir; }

 private:
  // The regular, non-hidden files of the folder, sorted, and a listing (name, size, mtime) that
  // changes when any of them does.
  Status ScanLocked(std::string* listing, std::vector<std::string>* files) const {
    BUD_ASSIGN_OR_RETURN(auto names, ListDir(options_.dir));
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      if (name.empty() || name[0] == '.') continue;
      const std::string path = JoinPath(options_.dir, name);
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      files->push_back(path);
      *listing += fmt::format("{}\n{}\n{}.{}\n", name, static_cast<int64_t>(st.st_size),
                              static_cast<int64_t>(st.st_mtim.tv_sec),
                              static_cast<int64_t>(st.st_mtim.tv_nsec));
    }
    return Status::Ok();
  }

  // Parses every file and keeps the CRLs that a trust anchor signed.
  void Install(const std::string& listing, const std::vector<std::string>& files,
               const std::string& folder_problem = "") {
    auto snap = std::make_shared<Snapshot>();
    snap->crls.reset(sk_X509_CRL_new_null());
    snap->generation = ++generation_;
    if (!folder_problem.empty()) snap->problems.push_back(folder_problem);
    if (!snap->crls) {
      snap->problems.push_back("out of memory");
      current_ = std::move(snap);
      listing_ = listing;
      return;
    }
    size_t n = 0;
    for (const auto& path : files) {
      if (++n > kMaxCrlFiles) {
        snap->problems.push_back(
            fmt::format("more than {} files: the rest are not read", kMaxCrlFiles));
        break;
      }
      LoadFile(path, snap.get());
    }
    ERR_clear_error();
    listing_ = listing;
    current_ = std::move(snap);
  }

  void LoadFile(const std::string& path, Snapshot* snap) const {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || st.st_size > kMaxCrlFileBytes) {
      snap->problems.push_back(fmt::format("'{}': missing or larger than {} bytes; skipped", path,
                                           static_cast<int64_t>(kMaxCrlFileBytes)));
      return;
    }
    auto data = ReadFile(path);
    if (!data.ok()) {
      snap->problems.push_back(data.status().ToString());
      return;
    }
    std::vector<Crl> crls;
    if (data->find("-----BEGIN") != std::string::npos) {
      Bio bio(BIO_new_mem_buf(data->data(), static_cast<int>(data->size())));
      while (bio) {
        Crl crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
        if (!crl) break;
        crls.push_back(std::move(crl));
      }
    } else {
      const auto* p = reinterpret_cast<const unsigned char*>(data->data());
      Crl crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(data->size())));
      if (crl) crls.push_back(std::move(crl));
    }
    ERR_clear_error();
    if (crls.empty()) {
      snap->problems.push_back(fmt::format("'{}' holds no CRL (PEM or DER); skipped", path));
      return;
    }
    for (auto& crl : crls) {
      X509_NAME* issuer = X509_CRL_get_issuer(crl.get());
      bool signed_by_anchor = false;
      for (const auto& a : anchors_) {
        if (X509_NAME_cmp(X509_get_subject_name(a.get()), issuer) == 0 &&
            X509_CRL_verify(crl.get(), X509_get0_pubkey(a.get())) == 1) {
          signed_by_anchor = true;
          break;
        }
      }
      ERR_clear_error();
      if (!signed_by_anchor) {
        snap->problems.push_back(fmt::format("'{}': the CRL of '{}' is not signed by a trust "
                                             "anchor; skipped",
                                             path, NameOneLine(issuer)));
        continue;
      }
      if (sk_X509_CRL_push(snap->crls.get(), crl.get()) > 0) crl.release();
    }
  }

  const CrlOptions options_;
  const std::vector<Cert> anchors_;
  std::mutex mu_;
  int64_t last_check_ms_ = 0;
  uint64_t generation_ = 0;
  std::string listing_;
  std::shared_ptr<const Snapshot> current_;
};

std::string SubjectOf(X509* cert) {
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

namespace {

std::string SerialOf(X509* cert) {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  std::string hex;
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr)) {
    if (char* h = BN_bn2hex(bn)) {
      hex = h;
      OPENSSL_free(h);
    }
    BN_free(bn);
  }
  return hex.empty() ? "?" : hex;
}

}  // namespace

Result<Orgnr> OrgnrOfCert(X509* cert) {
  X509_NAME* name = X509_get_subject_name(cert);
  int idx = X509_NAME_get_index_by_NID(name, NID_serialNumber, -1);
  if (idx < 0) {
    return Status(Code::kCertOrgMismatch,
                  fmt::format("certificate '{}' has no serialNumber (organisation number) in "
                              "its subject",
                              SubjectOf(cert)));
  }
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                    static_cast<size_t>(ASN1_STRING_length(data)));
  auto org = Orgnr::Parse(value);
  if (!org.ok()) {
    return Status(Code::kCertOrgMismatch,
                  fmt::format("certificate '{}': serialNumber is not an organisation number: {}",
                              SubjectOf(cert), org.status().message()));
  }
  return org;
}

int DaysToExpiry(X509* cert) {
  int days = 0, secs = 0;
  ASN1_TIME_diff(&days, &secs, nullptr, X509_get0_notAfter(cert));
  return days;
}

std::vector<std::string> CrlUrlsOf(X509* cert) {
  std::vector<std::string> out;
  auto* points = static_cast<CRL_DIST_POINTS*>(
      X509_get_ext_d2i(cert, NID_crl_distribution_points, nullptr, nullptr));
  if (points == nullptr) {
    ERR_clear_error();
    return out;
  }
  for (int i = 0; i < sk_DIST_POINT_num(points); ++i) {
    DIST_POINT* dp = sk_DIST_POINT_value(points, i);
    if (dp->distpoint == nullptr || dp->distpoint->type != 0) continue;  // 0: fullName
    GENERAL_NAMES* names = dp->distpoint->name.fullname;
    for (int j = 0; j < sk_GENERAL_NAME_num(names); ++j) {
      GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, j);
      if (gn->type != GEN_URI) continue;
      ASN1_IA5STRING* uri = gn->d.uniformResourceIdentifier;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                       static_cast<size_t>(ASN1_STRING_length(uri)));
    }
  }
  CRL_DIST_POINTS_free(points);
  return out;
}

Result<TrustStore> TrustStore::Load(const std::string& anchor_file) {
  return Load(anchor_file, CrlOptions{});
}

Result<TrustStore> TrustStore::Load(const std::string& anchor_file, const CrlOptions& crls) {
  BUD_ASSIGN_OR_RETURN(auto certs, LoadCertBundle(anchor_file));
  TrustStore ts;
  ts.store_.reset(X509_STORE_new(), X509_STORE_free);
  for (auto& c : certs) {
    if (X509_STORE_add_cert(ts.store_.get(), c.get()) != 1) {
      return Status(Code::kBadCertificate,
                    fmt::format("trust anchor '{}': {}", anchor_file, DrainErrors()));
    }
  }
  if (!crls.dir.empty()) {
    if (crls.reload_interval_ms < 0) {
      return Status(Code::kConfig, "the CRL reload interval must not be negative");
    }
    ts.crls_ = std::make_shared<CrlSet>(crls, std::move(certs));
    Status s = ts.crls_->LoadNow();
    if (!s.ok()) {
      return Status(Code::kConfig, fmt::format("CRL folder '{}': {}", crls.dir, s.ToString()));
    }
  }
  return ts;
}

uint64_t TrustStore::RefreshCrls() const { return crls_ ? crls_->Current()->generation : 0; }

size_t TrustStore::CrlCount() const {
  if (!crls_) return 0;
  return static_cast<size_t>(sk_X509_CRL_num(crls_->Current()->crls.get()));
}

std::vector<std::string> TrustStore::CrlProblems() const {
  return crls_ ? crls_->Current()->problems : std::vector<std::string>{};
}

namespace {

bool IsCrlTrouble(int err) {
  switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
      return true;
    default:
      return false;
  }
}

// What the revocation check found, set by RevocationCallback through the context's app data.
struct RevocationFindings {
  bool revoked = false;
  int trouble = 0;  // the first CRL error (IsCrlTrouble), 0 when none
};

// Lets verification go on past revocation findings, remembering them, so that the chain's
// signatures and validity are still checked (OpenSSL stops at the first error otherwise) and a
// certificate whose only problem is an unknown revocation state gets all its other checks too.
int RevocationCallback(int ok, X509_STORE_CTX* ctx) {
  if (ok == 1) return 1;
  int err = X509_STORE_CTX_get_error(ctx);
  auto* findings = static_cast<RevocationFindings*>(X509_STORE_CTX_get_app_data(ctx));
  if (findings == nullptr) return 0;
  if (err == X509_V_ERR_CERT_REVOKED) {
    findings->revoked = true;
    return 1;
  }
  if (IsCrlTrouble(err)) {
    if (findings->trouble == 0) findings->trouble = err;
    return 1;
  }
  return 0;
}

}  // namespace

Status TrustStore::Verify(X509* cert, KeyPurpose purpose, const std::optional<Orgnr>& expected_org,
                          std::optional<int64_t> at_unix_s) const {
  const std::string subject = SubjectOf(cert);
  X509StoreCtx ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store_.get(), cert, nullptr) != 1) {
    return Status(Code::kInternal, "cannot set up certificate verification: " + DrainErrors());
  }
  if (at_unix_s) X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(*at_unix_s));
  // Held until the end of this call: the context borrows its CRLs.
  std::shared_ptr<const CrlSet::Snapshot> crls;
  RevocationFindings findings;
  if (crls_) {
    crls = crls_->Current();
    X509_STORE_CTX_set0_crls(ctx.get(), crls->crls.get());
    X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_CRL_CHECK);
    X509_STORE_CTX_set_app_data(ctx.get(), &findings);
    X509_STORE_CTX_set_verify_cb(ctx.get(), RevocationCallback);
  }
  int ok = X509_verify_cert(ctx.get());
  ERR_clear_error();
  if (ok != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    const char* why = X509_verify_cert_error_string(err);
    switch (err) {
      case X509_V_ERR_CERT_HAS_EXPIRED:
        return Status(Code::kCertExpired,
                      fmt::format("certificate '{}' has expired", subject));
      case X509_V_ERR_CERT_NOT_YET_VALID:
        return Status(Code::kCertNotYetValid,
                      fmt::format("certificate '{}' is not yet valid", subject));
      default:
        return Status(Code::kCertUntrusted,
                      fmt::format("certificate '{}' does not chain to the trust anchor: {}",
                                  subject, why));
    }
  }
  if (findings.revoked) {
    return Status(Code::kCertRevoked,
                  fmt::format("certificate '{}' (serial {}) is revoked by its issuer '{}'",
                              subject, SerialOf(cert), NameOneLine(X509_get_issuer_name(cert))));
  }
  // Checked last, so that this code means "fine but for revocation" (see LoadIdentity).
  Status revocation_unknown;
  if (findings.trouble != 0) {
    std::string in_use = fmt::format("; {} CRL(s) in use from '{}'",
                                     sk_X509_CRL_num(crls->crls.get()), crls_->dir());
    for (const auto& p : crls->problems) in_use += "; " + p;
    revocation_unknown = Status(
        Code::kCertRevocationUnknown,
        fmt::format("certificate '{}': revocation cannot be checked: {} (issuer '{}'{})", subject,
                    X509_verify_cert_error_string(findings.trouble),
                    NameOneLine(X509_get_issuer_name(cert)), in_use));
  }

  // RFC 5280 4.2.1.9: without basicConstraints a certificate is no CA, so its absence is
  // accepted; CA:TRUE (or keyCertSign without basicConstraints, or a v1 self-signed certificate)
  // is refused: an agency's key must not be able to issue certificates the anchors would accept.
  // EXFLAG_CA is basicConstraints CA:TRUE as written; X509_check_ca alone would let CA:TRUE pass
  // when the keyUsage lacks keyCertSign.
  if ((X509_get_extension_flags(cert) & EXFLAG_CA) != 0 || X509_check_ca(cert) != 0) {
    return Status(Code::kCertWrongUsage,
                  fmt::format("certificate '{}' is a CA certificate (basicConstraints CA:TRUE), "
                              "not an end-entity certificate",
                              subject));
  }
  uint32_t ku = X509_get_key_usage(cert);
  if (ku == UINT32_MAX) {
    return Status(Code::kCertWrongUsage,
                  fmt::format("certificate '{}' has no keyUsage extension", subject));
  }
  if ((ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) != 0) {
    return Status(Code::kCertWrongUsage,
                  fmt::format("certificate '{}' allows keyCertSign or cRLSign, which an "
                              "end-entity certificate must not",
                              subject));
  }
  // Absent: the keyUsage decides. Present: CMS is S/MIME's format (emailProtection); Norwegian
  // enterprise certificates carry clientAuth and emailProtection. A TLS server, code signing,
  // time stamping or OCSP certificate is refused.
  uint32_t xku = X509_get_extended_key_usage(cert);
  if (xku != UINT32_MAX && (xku & (XKU_SMIME | XKU_SSL_CLIENT | XKU_ANYEKU)) == 0) {
    return Status(Code::kCertWrongUsage,
                  fmt::format("certificate '{}' has an extendedKeyUsage without "
                              "emailProtection, clientAuth or anyExtendedKeyUsage",
                              subject));
  }
  if (purpose == KeyPurpose::kSigning) {
    if ((ku & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)) == 0) {
      return Status(Code::kCertWrongUsage,
                    fmt::format("certificate '{}' is not for signing (keyUsage lacks "
                                "digitalSignature and nonRepudiation)",
                                subject));
    }
  } else {
    EVP_PKEY* pub = X509_get0_pubkey(cert);
    int type = pub ? EVP_PKEY_get_base_id(pub) : 0;
    uint32_t need = type == EVP_PKEY_EC ? KU_KEY_AGREEMENT : KU_KEY_ENCIPHERMENT;
    if (type != EVP_PKEY_EC && type != EVP_PKEY_RSA) {
      return Status(Code::kCertWrongUsage,
                    fmt::format("certificate '{}' has a key type that cannot be encrypted to "
                                "(use RSA or EC P-256)",
                                subject));
    }
    if ((ku & need) == 0) {
      return Status(Code::kCertWrongUsage,
                    fmt::format("certificate '{}' is not for encryption (keyUsage lacks {})",
                                subject, type == EVP_PKEY_EC ? "keyAgreement" : "keyEncipherment"));
    }
  }

  if (expected_org) {
    BUD_ASSIGN_OR_RETURN(Orgnr org, OrgnrOfCert(cert));
    if (org != *expected_org) {
      return Status(Code::kCertOrgMismatch,
                    fmt::format("certificate '{}' belongs to organisation {}, not {}", subject,
                                org.digits(), expected_org->digits()));
    }
  }
  return revocation_unknown;
}

Result<std::vector<Cert>> TrustedCerts(const TrustStore& trust, const std::string& current_pem,
                                       const std::string& next_pem, KeyPurpose purpose,
                                       const Orgnr& org) {
  std::vector<Cert> out;
  Status first_failure;
  for (const std::string* pem : {&current_pem, &next_pem}) {
    if (pem->empty()) continue;
    auto cert = CertFromPem(*pem);
    Status s = cert.ok() ? trust.Verify(cert->get(), purpose, org) : cert.status();
    if (s.ok()) {
      out.push_back(std::move(cert).value());
    } else if (first_failure.ok()) {
      first_failure = s;
    }
  }
  if (out.empty()) {
    if (first_failure.ok()) {
      return Status(Code::kBadCertificate,
                    fmt::format("organisation {} has no certificate", org.wire()));
    }
    return first_failure;
  }
  std::stable_sort(out.begin(), out.end(), [](const Cert& a, const Cert& b) {
    return ASN1_TIME_compare(X509_get0_notBefore(a.get()), X509_get0_notBefore(b.get())) > 0;
  });
  return out;
}

Result<std::vector<Cert>> TrustedCertCache::Get(const std::string& current_pem,
                                                const std::string& next_pem, KeyPurpose purpose,
                                                const Orgnr& org, int64_t now_ms) {
  std::string key;
  key.reserve(current_pem.size() + next_pem.size() + 32);
  key.append(org.wire()).push_back(purpose == KeyPurpose::kSigning ? 's' : 'e');
  key.append(current_pem).push_back('\0');
  key.append(next_pem);
  if (uint64_t gen = trust_.RefreshCrls(); gen != crl_generation_) {
    entries_.clear();
    crl_generation_ = gen;
  }
  auto it = entries_.find(key);
  if (it == entries_.end() || now_ms - it->second.checked_ms >= ttl_ms_ ||
      now_ms < it->second.checked_ms) {
    if (it == entries_.end() && entries_.size() >= max_entries_) entries_.clear();
    auto fresh = TrustedCerts(trust_, current_pem, next_pem, purpose, org);
    Entry e{now_ms, fresh.ok() ? Status::Ok() : fresh.status(), {}};
    if (fresh.ok()) e.certs = std::move(fresh).value();
    it = entries_.insert_or_assign(std::move(key), std::move(e)).first;
  }
  if (!it->second.status.ok()) return it->second.status;
  std::vector<Cert> out;
  for (const Cert& c : it->second.certs) {
    X509_up_ref(c.get());
    out.emplace_back(c.get());
  }
  return out;
}

}  // namespace bud::crypto
