// Certificate verification against a trust anchor. See certs.h.
#include "common/crypto/certs.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>

namespace bud::crypto {

std::string SubjectOf(X509* cert) {
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

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

Result<TrustStore> TrustStore::Load(const std::string& anchor_file) {
  BUD_ASSIGN_OR_RETURN(auto certs, LoadCertBundle(anchor_file));
  TrustStore ts;
  ts.store_.reset(X509_STORE_new(), X509_STORE_free);
  for (auto& c : certs) {
    if (X509_STORE_add_cert(ts.store_.get(), c.get()) != 1) {
      return Status(Code::kBadCertificate,
                    fmt::format("trust anchor '{}': {}", anchor_file, DrainErrors()));
    }
  }
  return ts;
}

Status TrustStore::Verify(X509* cert, KeyPurpose purpose, const std::optional<Orgnr>& expected_org,
                          std::optional<int64_t> at_unix_s) const {
  const std::string subject = SubjectOf(cert);
  X509StoreCtx ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store_.get(), cert, nullptr) != 1) {
    return Status(Code::kInternal, "cannot set up certificate verification: " + DrainErrors());
  }
  if (at_unix_s) X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(*at_unix_s));
  int ok = X509_verify_cert(ctx.get());
  if (ok != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
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

  uint32_t ku = X509_get_key_usage(cert);
  if (ku == UINT32_MAX) {
    return Status(Code::kCertWrongUsage,
                  fmt::format("certificate '{}' has no keyUsage extension", subject));
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
  return Status::Ok();
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
