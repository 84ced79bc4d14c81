// OpenSSL RAII owners and loaders for keys and certificates.
//
// Every OpenSSL handle has exactly one owner: these unique_ptr aliases. Loaders return a
// Status naming the file and what OpenSSL said; they never leave errors on OpenSSL's queue.
#pragma once

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bud::crypto {

template <auto Fn>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Fn(p);
  }
};

using PKey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using CmsContent = std::unique_ptr<CMS_ContentInfo, Deleter<CMS_ContentInfo_free>>;
using X509Store = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using X509StoreCtx = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
// Frees the stack only, not the certificates it borrows.
inline void FreeCertStack(STACK_OF(X509) * s) { sk_X509_free(s); }
using CertStack = std::unique_ptr<STACK_OF(X509), Deleter<FreeCertStack>>;

// Drains OpenSSL's error queue into one readable string ("" when empty).
std::string DrainErrors();

Result<PKey> LoadPrivateKeyFile(const std::string& path);
Result<PKey> PrivateKeyFromPem(std::string_view pem);
Result<Cert> LoadCertFile(const std::string& path);
Result<Cert> CertFromPem(std::string_view pem);
// All certificates in a PEM file (a trust-anchor bundle).
Result<std::vector<Cert>> LoadCertBundle(const std::string& path);
std::string CertToPem(X509* cert);

// A new private key: "rsa" (2048 bits), "ec" (P-256) or "ed25519". kInvalidArgument for any
// other type.
Result<PKey> GenerateKey(std::string_view type);
// PEM (PKCS#8, unencrypted) of a private key.
Result<std::string> PrivateKeyToPem(EVP_PKEY* key);

// SHA-256 of the bytes (32 raw bytes).
std::string Sha256(std::string_view data);
// SHA-256 of the certificate's DER encoding (32 raw bytes).
std::string CertFingerprint(X509* cert);
std::string Hex(std::string_view bytes);

// Cryptographically random bytes.
std::string RandomBytes(size_t n);

}  // namespace bud::crypto
