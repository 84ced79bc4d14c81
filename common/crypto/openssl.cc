// OpenSSL loaders and helpers. See openssl.h.
#include "common/crypto/openssl.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "common/fs.h"

namespace bud::crypto {

std::string DrainErrors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

Result<PKey> PrivateKeyFromPem(std::string_view pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) {
    return Status(Code::kBadKey, fmt::format("not a PEM private key ({})", DrainErrors()));
  }
  return PKey(key);
}

Result<PKey> LoadPrivateKeyFile(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  auto key = PrivateKeyFromPem(pem);
  if (!key.ok()) return key.status().Context(fmt::format("private key '{}'", path));
  return key;
}

Result<Cert> CertFromPem(std::string_view pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (cert == nullptr) {
    return Status(Code::kBadCertificate,
                  fmt::format("not a PEM X.509 certificate ({})", DrainErrors()));
  }
  return Cert(cert);
}

Result<Cert> LoadCertFile(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  auto cert = CertFromPem(pem);
  if (!cert.ok()) return cert.status().Context(fmt::format("certificate '{}'", path));
  return cert;
}

Result<std::vector<Cert>> LoadCertBundle(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<Cert> certs;
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(c);
  ERR_clear_error();  // the loop ends on a "no start line" error
  if (certs.empty()) {
    return Status(Code::kBadCertificate,
                  fmt::format("trust anchor file '{}' holds no PEM certificate", path));
  }
  return certs;
}

std::string CertToPem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<PKey> GenerateKey(std::string_view type) {
  EVP_PKEY* key = nullptr;
  if (type == "rsa") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
  } else if (type == "ec") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  } else if (type == "ed25519") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  } else {
    return Status(Code::kInvalidArgument,
                  fmt::format("unknown key type '{}' (rsa, ec or ed25519)", type));
  }
  if (key == nullptr) {
    return Status(Code::kInternal,
                  fmt::format("cannot generate a {} key: {}", type, DrainErrors()));
  }
  return PKey(key);
}

Result<std::string> PrivateKeyToPem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Status(Code::kInternal, "cannot write a private key as PEM: " + DrainErrors());
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string Sha256(std::string_view data) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string CertFingerprint(X509* cert) {
  unsigned char md[32];
  unsigned int len = 0;
  X509_digest(cert, EVP_sha256(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    std::abort();  // no randomness: nothing safe can follow
  }
  return out;
}

}  // namespace bud::crypto
