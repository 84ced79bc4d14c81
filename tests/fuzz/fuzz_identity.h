// The fixed identities every fuzz target and the seed generator share: a CA, and a sender and a
// receiver organisation, each with an Ed25519 signing key and an EC P-256 encryption key, and a
// signing and an encryption certificate issued by the CA (serialNumber = orgnr, the key usages
// TrustStore::Verify wants, valid 2025-2050).
//
// Fixed, not random: the seed corpus holds envelopes sealed with these keys and registry replies
// carrying these certificates, so keys and certificates (whose SHA-256 an envelope names) must
// be byte-for-byte the same in every run and on every machine. Hence: the Ed25519 keys come from
// fixed 32-byte seeds, the EC keys from PEM constants, and every certificate is signed with the
// CA's Ed25519 key (deterministic signatures) over fixed serial numbers and validity dates.
// Built with the OpenSSL API on first use; nothing from tests/support is linked (that library
// pulls in Catch2).
//
// Ownership: the Identity owns every handle (RAII types of common/crypto/openssl.h) and lives
// until the process exits; callers borrow the raw pointers.
#pragma once

#include <string>
#include <string_view>

#include "common/crypto/certs.h"
#include "common/crypto/openssl.h"
#include "common/orgnr.h"
#include "proto/envelope.pb.h"

namespace bud::fuzz {

struct Party {
  Orgnr org;
  crypto::PKey signing_key;      // Ed25519
  crypto::Cert signing_cert;     // digitalSignature + nonRepudiation
  crypto::PKey encryption_key;   // EC P-256
  crypto::Cert encryption_cert;  // keyAgreement
  std::string signing_cert_pem;
  std::string encryption_cert_pem;
};

struct Identity {
  crypto::PKey ca_key;   // Ed25519
  crypto::Cert ca_cert;  // self-signed, CA:TRUE, keyCertSign
  std::string ca_cert_pem;
  Party sender;    // 0192:910076787
  Party receiver;  // 0192:910075918
};

// Built once, on first use; aborts with a message if OpenSSL cannot build it (a harness bug).
const Identity& FixedIdentity();

// A TrustStore whose only anchor is FixedIdentity().ca_cert (loaded through a temporary file,
// since TrustStore::Load reads one).
const crypto::TrustStore& FixedTrustStore();

// A streamed envelope (common/crypto/stream.h) from the sender to the receiver whose plaintext
// stream is `plaintext` (any bytes, at least one), in 4 KiB chunks: the serialised head and the
// chunk records back to back. The content key is random, so the bytes differ from call to call.
struct SealedStream {
  std::string head;
  std::string records;
};
SealedStream SealStreamFromSender(const wire::Header& header, std::string_view plaintext);

}  // namespace bud::fuzz
