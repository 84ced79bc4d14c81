// The in-process test CA. See test_pki.h.
#include "tests/support/test_pki.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <memory>
#include <stdexcept>

#include "common/fs.h"

namespace bud::test {

namespace {

using crypto::Deleter;
using Asn1Time = std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME_free>>;
using BitString = std::unique_ptr<ASN1_BIT_STRING, Deleter<ASN1_BIT_STRING_free>>;
using BigNum = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using Extension = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;

[[noreturn]] void Fail(const std::string& what) {
  throw std::runtime_error("test PKI: " + what + ": " + crypto::DrainErrors());
}

const EVP_MD* DigestFor(EVP_PKEY* signing_key) {
  // Ed25519 signs the message itself; OpenSSL wants no digest for it.
  return EVP_PKEY_get_base_id(signing_key) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
}

void SetRandomSerial(X509* x) {
  BigNum bn(BN_new());
  if (!bn || BN_rand(bn.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x)) == nullptr) {
    Fail("cannot set a serial number");
  }
}

void SetValidity(X509* x, int64_t not_before_offset_s, int64_t not_after_offset_s) {
  Asn1Time nb(X509_time_adj_ex(nullptr, 0, static_cast<long>(not_before_offset_s), nullptr));
  Asn1Time na(X509_time_adj_ex(nullptr, 0, static_cast<long>(not_after_offset_s), nullptr));
  if (!nb || !na || X509_set1_notBefore(x, nb.get()) != 1 || X509_set1_notAfter(x, na.get()) != 1) {
    Fail("cannot set the validity period");
  }
}

void AddNameEntry(X509_NAME* name, int nid, const std::string& value) {
  if (X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(value.data()),
                                 static_cast<int>(value.size()), -1, 0) != 1) {
    Fail("cannot add '" + value + "' to a subject name");
  }
}

// Adds an extension given in openssl.cnf syntax ("critical,CA:TRUE", "hash", "keyid:always").
void AddConfExtension(X509* x, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  Extension ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(x, ext.get(), -1) != 1) {  // X509_add_ext copies
    Fail(std::string("cannot add extension ") + OBJ_nid2sn(nid) + "=" + value);
  }
}

// A critical keyUsage holding exactly `ku` (KU_* flags as X509_get_key_usage reports them).
// Built as a bit string so that any combination, including none, can be expressed.
void AddKeyUsage(X509* x, uint32_t ku) {
  BitString bits(ASN1_BIT_STRING_new());
  if (!bits) Fail("cannot allocate keyUsage");
  // Bits 0..7 are the first byte, most significant first (KU_DIGITAL_SIGNATURE = 0x80 is
  // bit 0); decipherOnly (bit 8) is KU_DECIPHER_ONLY = 0x8000.
  for (int n = 0; n < 8; ++n) {
    if ((ku & (0x80u >> n)) != 0 && ASN1_BIT_STRING_set_bit(bits.get(), n, 1) != 1) {
      Fail("cannot set a keyUsage bit");
    }
  }
  if ((ku & KU_DECIPHER_ONLY) != 0 && ASN1_BIT_STRING_set_bit(bits.get(), 8, 1) != 1) {
    Fail("cannot set decipherOnly");
  }
  if (X509_add1_ext_i2d(x, NID_key_usage, bits.get(), 1, X509V3_ADD_DEFAULT) != 1) {
    Fail("cannot add keyUsage");
  }
}

void Sign(X509* x, EVP_PKEY* issuer_key) {
  if (X509_sign(x, issuer_key, DigestFor(issuer_key)) <= 0) Fail("cannot sign a certificate");
}

}  // namespace

crypto::PKey GenerateKey(KeyType type) {
  EVP_PKEY* key = nullptr;
  switch (type) {
    case KeyType::kRsa2048:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
      break;
    case KeyType::kEcP256:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case KeyType::kEd25519:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
      break;
  }
  if (key == nullptr) Fail("cannot generate a key");
  return crypto::PKey(key);
}

std::string PrivateKeyToPem(EVP_PKEY* key) {
  crypto::Bio bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    Fail("cannot write a private key as PEM");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

void Leaf::WriteFiles(const std::string& key_path, const std::string& cert_path) const {
  Status s = WriteFileSynced(key_path, key_pem, 0600);
  if (s.ok()) s = WriteFileSynced(cert_path, cert_pem, 0644);
  if (!s.ok()) throw std::runtime_error("test PKI: " + s.ToString());
}

TestCa::TestCa(std::string common_name, KeyType key_type) : key_(GenerateKey(key_type)) {
  cert_.reset(X509_new());
  X509* x = cert_.get();
  if (x == nullptr || X509_set_version(x, X509_VERSION_3) != 1) Fail("cannot create the CA");
  SetRandomSerial(x);
  SetValidity(x, -30LL * 24 * 3600, 10LL * 365 * 24 * 3600);
  X509_NAME* name = X509_get_subject_name(x);  // owned by x
  AddNameEntry(name, NID_countryName, "NO");
  AddNameEntry(name, NID_organizationName, "Budstikke test");
  AddNameEntry(name, NID_commonName, common_name);
  if (X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, key_.get()) != 1) {
    Fail("cannot fill in the CA certificate");
  }
  AddConfExtension(x, x, NID_basic_constraints, "critical,CA:TRUE");
  AddKeyUsage(x, KU_KEY_CERT_SIGN | KU_CRL_SIGN);
  AddConfExtension(x, x, NID_subject_key_identifier, "hash");
  AddConfExtension(x, x, NID_authority_key_identifier, "keyid:always");
  Sign(x, key_.get());
}

TestCa TestCa::FromPemFiles(const std::string& key_path, const std::string& cert_path) {
  auto key = crypto::LoadPrivateKeyFile(key_path);
  if (!key.ok()) throw std::runtime_error("test PKI: CA key: " + key.status().ToString());
  auto cert = crypto::LoadCertFile(cert_path);
  if (!cert.ok()) throw std::runtime_error("test PKI: CA certificate: " + cert.status().ToString());
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    Fail("the key '" + key_path + "' does not belong to the CA certificate '" + cert_path + "'");
  }
  return TestCa(std::move(key).value(), std::move(cert).value());
}

void TestCa::WriteCertFile(const std::string& path) const {
  Status s = WriteFileSynced(path, cert_pem(), 0644);
  if (!s.ok()) throw std::runtime_error("test PKI: " + s.ToString());
}

Leaf TestCa::Issue(const LeafSpec& spec) const {
  Leaf leaf;
  if (spec.reuse_key != nullptr) {
    leaf.key.reset(EVP_PKEY_dup(spec.reuse_key));
    if (!leaf.key) Fail("cannot duplicate a key");
  } else {
    leaf.key = GenerateKey(spec.key_type);
  }
  leaf.cert.reset(X509_new());
  X509* x = leaf.cert.get();
  if (x == nullptr || X509_set_version(x, X509_VERSION_3) != 1) Fail("cannot create a leaf");
  SetRandomSerial(x);
  SetValidity(x, spec.not_before_offset_s, spec.not_after_offset_s);
  X509_NAME* name = X509_get_subject_name(x);  // owned by x
  AddNameEntry(name, NID_countryName, "NO");
  AddNameEntry(name, NID_organizationName, "Budstikke test agency");
  AddNameEntry(name, NID_commonName, spec.common_name);
  if (spec.orgnr) AddNameEntry(name, NID_serialNumber, *spec.orgnr);
  if (X509_set_issuer_name(x, X509_get_subject_name(cert_.get())) != 1 ||
      X509_set_pubkey(x, leaf.key.get()) != 1) {
    Fail("cannot fill in a leaf certificate");
  }
  if (!spec.basic_constraints.empty()) {
    AddConfExtension(x, cert_.get(), NID_basic_constraints, spec.basic_constraints.c_str());
  }
  if (!spec.extended_key_usage.empty()) {
    AddConfExtension(x, cert_.get(), NID_ext_key_usage, spec.extended_key_usage.c_str());
  }
  if (!spec.crl_url.empty()) {
    AddConfExtension(x, cert_.get(), NID_crl_distribution_points,
                     ("URI:" + spec.crl_url).c_str());
  }
  AddConfExtension(x, cert_.get(), NID_subject_key_identifier, "hash");
  AddConfExtension(x, cert_.get(), NID_authority_key_identifier, "keyid");
  switch (spec.usage) {
    case Usage::kSigning:
      AddKeyUsage(x, KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION);
      break;
    case Usage::kEncryption:
      AddKeyUsage(x, EVP_PKEY_get_base_id(leaf.key.get()) == EVP_PKEY_EC ? KU_KEY_AGREEMENT
                                                                         : KU_KEY_ENCIPHERMENT);
      break;
    case Usage::kCustom:
      AddKeyUsage(x, spec.key_usage_bits);
      break;
    case Usage::kNone:
      break;
  }
  Sign(x, key_.get());
  leaf.key_pem = PrivateKeyToPem(leaf.key.get());
  leaf.cert_pem = crypto::CertToPem(x);
  return leaf;
}

std::string TestCa::MakeCrl(const std::vector<X509*>& revoked, int64_t this_update_offset_s,
                            int64_t next_update_offset_s) const {
  using CrlPtr = std::unique_ptr<X509_CRL, Deleter<X509_CRL_free>>;
  using Revoked = std::unique_ptr<X509_REVOKED, Deleter<X509_REVOKED_free>>;
  CrlPtr crl(X509_CRL_new());
  if (!crl || X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(cert_.get())) != 1) {
    Fail("cannot create a CRL");
  }
  Asn1Time this_update(
      X509_time_adj_ex(nullptr, 0, static_cast<long>(this_update_offset_s), nullptr));
  Asn1Time next_update(
      X509_time_adj_ex(nullptr, 0, static_cast<long>(next_update_offset_s), nullptr));
  if (!this_update || !next_update || X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next_update.get()) != 1) {
    Fail("cannot set the CRL's update times");
  }
  for (X509* c : revoked) {
    Revoked r(X509_REVOKED_new());
    if (!r || X509_REVOKED_set_serialNumber(r.get(), X509_get_serialNumber(c)) != 1 ||
        X509_REVOKED_set_revocationDate(r.get(), this_update.get()) != 1 ||
        X509_CRL_add0_revoked(crl.get(), r.get()) != 1) {
      Fail("cannot list a certificate on the CRL");
    }
    r.release();  // owned by the CRL now
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert_.get(), nullptr, nullptr, crl.get(), 0);
  Extension aki(X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always"));
  if (!aki || X509_CRL_add_ext(crl.get(), aki.get(), -1) != 1) Fail("cannot add the CRL's AKI");
  if (X509_CRL_sort(crl.get()) != 1 ||
      X509_CRL_sign(crl.get(), key_.get(), DigestFor(key_.get())) <= 0) {
    Fail("cannot sign a CRL");
  }
  crypto::Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), crl.get()) != 1) Fail("cannot write a CRL as PEM");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

void TestCa::WriteCrlFile(const std::string& path, const std::vector<X509*>& revoked,
                          int64_t this_update_offset_s, int64_t next_update_offset_s) const {
  Status s =
      WriteFileSynced(path, MakeCrl(revoked, this_update_offset_s, next_update_offset_s), 0644);
  if (!s.ok()) throw std::runtime_error("test PKI: " + s.ToString());
}

Leaf TestCa::IssueSigning(KeyType type, const std::string& orgnr, EVP_PKEY* reuse_key) const {
  LeafSpec spec;
  spec.key_type = type;
  spec.reuse_key = reuse_key;
  spec.common_name = "Signing " + orgnr;
  spec.orgnr = orgnr;
  spec.usage = Usage::kSigning;
  return Issue(spec);
}

Leaf TestCa::IssueEncryption(KeyType type, const std::string& orgnr, EVP_PKEY* reuse_key) const {
  LeafSpec spec;
  spec.key_type = type;
  spec.reuse_key = reuse_key;
  spec.common_name = "Encryption " + orgnr;
  spec.orgnr = orgnr;
  spec.usage = Usage::kEncryption;
  return Issue(spec);
}

}  // namespace bud::test
