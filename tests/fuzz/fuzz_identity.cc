// The fixed fuzz identities. See fuzz_identity.h.
#include "tests/fuzz/fuzz_identity.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>

#include "common/crypto/stream.h"
#include "common/fs.h"

namespace bud::fuzz {

namespace {

using BitString = std::unique_ptr<ASN1_BIT_STRING, crypto::Deleter<ASN1_BIT_STRING_free>>;
using BasicConstraints =
    std::unique_ptr<BASIC_CONSTRAINTS, crypto::Deleter<BASIC_CONSTRAINTS_free>>;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "fuzz identity: %s: %s\n", what, crypto::DrainErrors().c_str());
  std::abort();
}

// EC P-256 encryption keys, made once with `openssl genpkey` for these harnesses only.
constexpr const char* kSenderEncryptionKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgS9ocABPSlA+7eGx8\n"
    "KgwQxalE61kWZzJPntONb8fu2gGhRANCAAQf8OurroJh3c2euyPnGQor/Em5xD9Q\n"
    "OrbOKrgLyohYs4RNCdGZ1ie5wjD7IWgE8yFaB6iKOqc4dPW/nicGibPq\n"
    "-----END PRIVATE KEY-----\n";
constexpr const char* kReceiverEncryptionKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg23/T7tR4oJLrbnN/\n"
    "KpGXQlRwBZsGgX5yrtPflJSYtHqhRANCAARMdU1Y989dwmqETPISsCpYYa5/mTR/\n"
    "cNSpCqH/G22RmuvEa7aCC5C48R2Jh/O7JuOWydCKzbRuEaD9GRWvvmu0\n"
    "-----END PRIVATE KEY-----\n";

crypto::PKey Ed25519FromSeed(const char (&seed)[33]) {
  EVP_PKEY* k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                             reinterpret_cast<const unsigned char*>(seed), 32);
  if (k == nullptr) Fail("cannot make an Ed25519 key");
  return crypto::PKey(k);
}

crypto::PKey KeyFromPem(const char* pem) {
  auto k = crypto::PrivateKeyFromPem(pem);
  if (!k.ok()) Fail("cannot read an EC key");
  return std::move(*k);
}

void AddNameEntry(X509_NAME* name, int nid, const std::string& value) {
  if (X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(value.data()),
                                 static_cast<int>(value.size()), -1, 0) != 1) {
    Fail("cannot build a subject name");
  }
}

// A critical keyUsage with the given bit numbers (0 digitalSignature, 1 nonRepudiation,
// 4 keyAgreement, 5 keyCertSign, 6 cRLSign).
void AddKeyUsage(X509* x, std::initializer_list<int> bit_numbers) {
  BitString bits(ASN1_BIT_STRING_new());
  if (!bits) Fail("cannot allocate keyUsage");
  for (int n : bit_numbers) {
    if (ASN1_BIT_STRING_set_bit(bits.get(), n, 1) != 1) Fail("cannot set a keyUsage bit");
  }
  if (X509_add1_ext_i2d(x, NID_key_usage, bits.get(), 1, X509V3_ADD_DEFAULT) != 1) {
    Fail("cannot add keyUsage");
  }
}

void AddBasicConstraints(X509* x, bool ca) {
  BasicConstraints bc(BASIC_CONSTRAINTS_new());
  if (!bc) Fail("cannot allocate basicConstraints");
  bc->ca = ca ? 0xff : 0;
  if (X509_add1_ext_i2d(x, NID_basic_constraints, bc.get(), 1, X509V3_ADD_DEFAULT) != 1) {
    Fail("cannot add basicConstraints");
  }
}

// A certificate for `subject_key`, signed by `issuer_key` (Ed25519, so the DER is the same in
// every run). `issuer` is null for a self-signed one; `orgnr` empty leaves serialNumber out.
crypto::Cert MakeCert(EVP_PKEY* subject_key, const std::string& cn, const std::string& orgnr,
                      long serial, bool ca, std::initializer_list<int> key_usage, X509* issuer,
                      EVP_PKEY* issuer_key) {
  crypto::Cert cert(X509_new());
  X509* x = cert.get();
  if (x == nullptr || X509_set_version(x, X509_VERSION_3) != 1 ||
      ASN1_INTEGER_set(X509_get_serialNumber(x), serial) != 1 ||
      ASN1_TIME_set_string(X509_getm_notBefore(x), "20250101000000Z") != 1 ||
      ASN1_TIME_set_string(X509_getm_notAfter(x), "20500101000000Z") != 1) {
    Fail("cannot start a certificate");
  }
  X509_NAME* name = X509_get_subject_name(x);  // owned by x
  AddNameEntry(name, NID_countryName, "NO");
  AddNameEntry(name, NID_organizationName, "Budstikke fuzz");
  AddNameEntry(name, NID_commonName, cn);
  if (!orgnr.empty()) AddNameEntry(name, NID_serialNumber, orgnr);
  X509_NAME* issuer_name = issuer != nullptr ? X509_get_subject_name(issuer) : name;
  if (X509_set_issuer_name(x, issuer_name) != 1 || X509_set_pubkey(x, subject_key) != 1) {
    Fail("cannot fill in a certificate");
  }
  AddBasicConstraints(x, ca);
  AddKeyUsage(x, key_usage);
  if (X509_sign(x, issuer_key, nullptr) <= 0) Fail("cannot sign a certificate");
  return cert;
}

Party MakeParty(const std::string& digits, const char (&signing_seed)[33],
                const char* encryption_key_pem, long serial_base, X509* ca, EVP_PKEY* ca_key) {
  auto org = Orgnr::Parse(digits);
  if (!org.ok()) Fail("bad fixed orgnr");
  Party p{.org = *org,
          .signing_key = Ed25519FromSeed(signing_seed),
          .signing_cert = nullptr,
          .encryption_key = KeyFromPem(encryption_key_pem),
          .encryption_cert = nullptr,
          .signing_cert_pem = {},
          .encryption_cert_pem = {}};
  p.signing_cert = MakeCert(p.signing_key.get(), "Signing " + digits, digits, serial_base, false,
                            {0, 1}, ca, ca_key);
  p.encryption_cert = MakeCert(p.encryption_key.get(), "Encryption " + digits, digits,
                               serial_base + 1, false, {4}, ca, ca_key);
  p.signing_cert_pem = crypto::CertToPem(p.signing_cert.get());
  p.encryption_cert_pem = crypto::CertToPem(p.encryption_cert.get());
  return p;
}

Identity MakeIdentity() {
  // 32 bytes each (the terminating NUL is not part of the seed).
  static const char kCaSeed[33] = "budstikke fuzz: certificate auth";
  static const char kSenderSeed[33] = "budstikke fuzz: sender signing..";
  static const char kReceiverSeed[33] = "budstikke fuzz: receiver signing";
  crypto::PKey ca_key = Ed25519FromSeed(kCaSeed);
  crypto::Cert ca_cert =
      MakeCert(ca_key.get(), "Budstikke fuzz CA", "", 1, true, {5, 6}, nullptr, ca_key.get());
  Party sender = MakeParty("910076787", kSenderSeed, kSenderEncryptionKeyPem, 1000, ca_cert.get(),
                           ca_key.get());
  Party receiver = MakeParty("910075918", kReceiverSeed, kReceiverEncryptionKeyPem, 2000,
                             ca_cert.get(), ca_key.get());
  std::string ca_pem = crypto::CertToPem(ca_cert.get());
  return Identity{.ca_key = std::move(ca_key),
                  .ca_cert = std::move(ca_cert),
                  .ca_cert_pem = std::move(ca_pem),
                  .sender = std::move(sender),
                  .receiver = std::move(receiver)};
}

}  // namespace

const Identity& FixedIdentity() {
  static const Identity id = MakeIdentity();
  return id;
}

const crypto::TrustStore& FixedTrustStore() {
  static const crypto::TrustStore store = [] {
    const std::string path = "/tmp/bud-fuzz-ca-" + std::to_string(::getpid()) + ".pem";
    Status w = WriteFileSynced(path, FixedIdentity().ca_cert_pem, 0644);
    if (!w.ok()) Fail(w.ToString().c_str());
    auto ts = crypto::TrustStore::Load(path);
    std::remove(path.c_str());
    if (!ts.ok()) Fail(ts.status().ToString().c_str());
    return std::move(*ts);
  }();
  return store;
}

SealedStream SealStreamFromSender(const wire::Header& header, std::string_view plaintext) {
  const Identity& id = FixedIdentity();
  SealedStream out;
  size_t pos = 0;
  auto head = crypto::SealPlaintextStream(
      header, plaintext.size(),
      [&](size_t n, std::string* piece) {
        piece->assign(plaintext.substr(pos, n));
        pos += n;
        return Status::Ok();
      },
      {id.sender.signing_key.get(), id.sender.signing_cert.get()},
      id.receiver.encryption_cert.get(),
      [&](uint64_t, std::string_view record) {
        out.records.append(record);
        return Status::Ok();
      },
      crypto::kMinChunkSize);
  if (!head.ok()) Fail(head.status().ToString().c_str());
  out.head = std::move(*head);
  return out;
}

}  // namespace bud::fuzz
