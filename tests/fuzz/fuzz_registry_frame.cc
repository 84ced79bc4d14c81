// Fuzz target: one frame on the registry link, decoded as each side decodes it.
//
// As the registry (address-registry/server.cc, Handle): RegistryRequest via wire::ParseProto,
// the looked-up orgnr or CURVE key. As the integration point and the broker
// (common/registry_client.cc, integration-point/engine.cc): RegistryReply, then every
// certificate of the entry from PEM with the organisation number in its subject, and
// crypto::TrustedCerts over the current and next signing and encryption certificates against
// the fixed CA of fuzz_identity.h (what a sender and a receiver do with an entry).
#include <cstddef>
#include <cstdint>
#include <zmq.hpp>

#include "common/crypto/certs.h"
#include "common/wire/curve.h"
#include "common/wire/zmq.h"
#include "proto/registry.pb.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_identity.h"

namespace {

using namespace bud;

void DecodeCert(const std::string& pem) {
  auto cert = crypto::CertFromPem(pem);
  fuzz::CheckOpenSslQueueEmpty("CertFromPem");
  if (!cert.ok()) {
    BUD_FUZZ_CHECK(cert.status().code() == Code::kBadCertificate, "CertFromPem: wrong error code");
    return;
  }
  BUD_FUZZ_CHECK(cert->get() != nullptr, "CertFromPem returned ok without a certificate");
  auto org = crypto::OrgnrOfCert(cert->get());
  fuzz::CheckOpenSslQueueEmpty("OrgnrOfCert");
  if (org.ok()) {
    fuzz::CheckOrgnr(org->digits());
  } else {
    BUD_FUZZ_CHECK(org.status().code() == Code::kCertOrgMismatch, "OrgnrOfCert: wrong error code");
  }
  (void)crypto::SubjectOf(cert->get());
  (void)crypto::DaysToExpiry(cert->get());
  (void)crypto::CertFingerprint(cert->get());
  ERR_clear_error();  // DaysToExpiry/CertFingerprint make no promise about the queue
}

// TrustedCerts' contract: only certificates that pass Verify for `org`, newest first.
void Trusted(const std::string& current, const std::string& next, crypto::KeyPurpose purpose,
             const Orgnr& org) {
  const crypto::TrustStore& trust = fuzz::FixedTrustStore();
  auto certs = crypto::TrustedCerts(trust, current, next, purpose, org);
  ERR_clear_error();
  if (!certs.ok()) return;
  BUD_FUZZ_CHECK(!certs->empty() && certs->size() <= 2, "TrustedCerts: ok with 0 or >2 certs");
  for (size_t i = 0; i < certs->size(); ++i) {
    X509* c = (*certs)[i].get();
    BUD_FUZZ_CHECK(trust.Verify(c, purpose, org).ok(), "TrustedCerts returned an untrusted cert");
    auto o = crypto::OrgnrOfCert(c);
    BUD_FUZZ_CHECK(o.ok() && *o == org, "TrustedCerts returned another organisation's cert");
    if (i > 0) {
      BUD_FUZZ_CHECK(ASN1_TIME_compare(X509_get0_notBefore((*certs)[i - 1].get()),
                                       X509_get0_notBefore(c)) >= 0,
                     "TrustedCerts: not newest first");
    }
  }
  ERR_clear_error();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bud::fuzz::QuietProtobuf();
  (void)bud::fuzz::FixedTrustStore();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zmq::message_t frame(data, size);
  wire::RegistryRequest req;
  if (wire::ParseProto(frame, req, "RegistryRequest").ok()) {
    if (req.has_lookup()) fuzz::CheckOrgnr(req.lookup().orgnr());
    if (req.has_lookup_by_key()) (void)wire::IsZ85Key(req.lookup_by_key().curve_public_key());
  }
  wire::RegistryReply reply;
  if (wire::ParseProto(frame, reply, "RegistryReply").ok() && reply.has_entry()) {
    const wire::RegistryEntry& e = reply.entry();
    fuzz::CheckOrgnr(e.orgnr());
    (void)wire::IsZ85Key(e.curve_public_key());
    for (const std::string* pem : {&e.signing_cert_pem(), &e.encryption_cert_pem(),
                                   &e.next_signing_cert_pem(), &e.next_encryption_cert_pem()}) {
      DecodeCert(*pem);
    }
    auto org = Orgnr::Parse(e.orgnr());
    const Orgnr& who = org.ok() ? *org : fuzz::FixedIdentity().receiver.org;
    Trusted(e.signing_cert_pem(), e.next_signing_cert_pem(), crypto::KeyPurpose::kSigning, who);
    Trusted(e.encryption_cert_pem(), e.next_encryption_cert_pem(), crypto::KeyPurpose::kEncryption,
            who);
  }
  return 0;
}
