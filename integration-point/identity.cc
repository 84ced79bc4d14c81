// Loading and checking the integration point's keys and certificates. See identity.h.
#include "integration-point/identity.h"

#include <fmt/format.h>

#include <tuple>

#include "common/fs.h"

namespace bud::ip {

namespace {

// Private keys that others can read are refused (a leaked key signs as the agency).
Result<crypto::PKey> LoadPrivateKey(std::string_view key, const std::string& path) {
  Status mode = CheckPrivateFileMode(path, "private key");
  if (!mode.ok()) return mode.Context(key);
  auto pkey = crypto::LoadPrivateKeyFile(path);
  if (!pkey.ok()) return pkey.status().Context(key);
  return pkey;
}

Result<crypto::Cert> LoadCert(std::string_view key, const std::string& path) {
  auto cert = crypto::LoadCertFile(path);
  if (!cert.ok()) return cert.status().Context(key);
  return cert;
}

Status CheckPair(X509* cert, EVP_PKEY* pkey, std::string_view key_key, std::string_view cert_key) {
  if (X509_check_private_key(cert, pkey) == 1) return Status::Ok();
  (void)crypto::DrainErrors();
  return Status(Code::kBadKey, fmt::format("{}: the private key does not belong to the "
                                           "certificate in {}",
                                           key_key, cert_key));
}

}  // namespace

Result<Identity> LoadIdentity(const Config& config) {
  Identity id;
  BUD_ASSIGN_OR_RETURN(id.signing_key, LoadPrivateKey("keys.signing_key", config.keys.signing_key));
  BUD_ASSIGN_OR_RETURN(id.encryption_key,
                       LoadPrivateKey("keys.encryption_key", config.keys.encryption_key));
  BUD_ASSIGN_OR_RETURN(id.signing_cert, LoadCert("keys.signing_cert", config.keys.signing_cert));
  BUD_ASSIGN_OR_RETURN(id.encryption_cert,
                       LoadCert("keys.encryption_cert", config.keys.encryption_cert));
  auto trust = crypto::TrustStore::Load(
      config.keys.trust_anchor, {.dir = config.keys.crl_dir, .reload_interval_ms = config.keys.crl_reload_ms});
  if (!trust.ok()) {
    return trust.status().Context(trust.status().code() == Code::kConfig ? "keys.crl_dir"
                                                                         : "keys.trust_anchor");
  }
  id.trust = std::make_unique<crypto::TrustStore>(std::move(trust).value());
  BUD_RETURN_IF_ERROR(CheckPair(id.signing_cert.get(), id.signing_key.get(), "keys.signing_key",
                                "keys.signing_cert"));
  BUD_RETURN_IF_ERROR(CheckPair(id.encryption_cert.get(), id.encryption_key.get(),
                                "keys.encryption_key", "keys.encryption_cert"));
  if (!config.keys.next_encryption_key.empty()) {
    BUD_ASSIGN_OR_RETURN(id.next_encryption_key,
                         LoadPrivateKey("keys.next_encryption_key", config.keys.next_encryption_key));
    BUD_ASSIGN_OR_RETURN(id.next_encryption_cert,
                         LoadCert("keys.next_encryption_cert", config.keys.next_encryption_cert));
    BUD_RETURN_IF_ERROR(CheckPair(id.next_encryption_cert.get(), id.next_encryption_key.get(),
                                  "keys.next_encryption_key", "keys.next_encryption_cert"));
  }
  const Orgnr me = config.me();
  // A stale CRL must not keep the point from starting (it would stop receiving too); the
  // others' certificates are still checked, fail closed, with every message.
  for (auto [cert, purpose, what] :
       {std::tuple{id.signing_cert.get(), crypto::KeyPurpose::kSigning,
                   "keys.signing_cert: own signing certificate"},
        std::tuple{id.encryption_cert.get(), crypto::KeyPurpose::kEncryption,
                   "keys.encryption_cert: own encryption certificate"}}) {
    Status s = id.trust->Verify(cert, purpose, me).Context(what);
    if (s.code() == Code::kCertRevocationUnknown) {
      id.warnings.push_back(s.ToString());
    } else if (!s.ok()) {
      return s;
    }
  }
  return id;
}

}  // namespace bud::ip
