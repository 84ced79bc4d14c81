// Sealing and opening envelopes (see "The envelope" in ../shared/DESIGN.md, docs/protocol.md).
//
// Seal: serialise the Payload, encrypt it as CMS AuthEnvelopedData (AES-256-GCM) to the
// receiver's encryption certificate, put its size and SHA-256 in the Header, serialise the Header
// and sign those exact bytes with the sender's signing key (RSA PKCS#1 v1.5/SHA-256, ECDSA/SHA-256
// or Ed25519).
//
// Open, in this order, each failure with its own code and never any plaintext:
//   parse envelope (kMalformed) -> pick the signer's certificate by fingerprint and verify the
//   signature over the header bytes as carried (kBadSignature) -> parse the header (kMalformed)
//   -> the signer is the header's sender (kBadSignature) -> the header's receiver is us
//   (kWrongReceiver) -> payload size and digest (kDigestMismatch) -> decrypt (kDecryptFailed)
//   -> parse the payload (kMalformed) -> ids, sender and receiver inside equal the header's
//   (kPayloadMismatch).
// Certificate trust (chain, validity, usage) is the caller's job, with TrustStore, before Open.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "common/crypto/openssl.h"
#include "common/orgnr.h"
#include "common/status.h"
#include "proto/envelope.pb.h"

namespace bud::crypto {

inline constexpr uint32_t kEnvelopeVersion = 1;
// Upper bound for a whole serialised envelope accepted by the parsers (DoS limit).
inline constexpr size_t kMaxEnvelopeBytes = 512u << 20;

struct SignerKeys {
  EVP_PKEY* signing_key;  // borrowed
  X509* signing_cert;     // borrowed
};

struct DecryptionKey {
  EVP_PKEY* key;  // borrowed
  X509* cert;     // borrowed
};

// `header` supplies the routing fields; version, payload_size, payload_sha256 and
// recipient_cert_sha256 are filled in here. The payload's ids must equal the header's.
// Returns the serialised Envelope.
Result<std::string> Seal(wire::Header header, const wire::Payload& payload,
                         const SignerKeys& signer, X509* receiver_encryption_cert);

// Parses the envelope and its header WITHOUT verifying anything: for routing (broker) and for
// finding whose certificate to fetch. Never trust these fields for anything else.
Result<wire::Envelope> ParseEnvelope(std::string_view bytes);
Result<wire::Header> ParseHeaderUnverified(const wire::Envelope& envelope);

struct Opened {
  wire::Header header;
  wire::Payload payload;
  std::string signer_fingerprint;  // hex SHA-256 of the signing certificate used
};

// `sender_certs`: the sender's signing certificates (current and next), already checked against
// the trust store by the caller; `sender` is the organisation they belong to.
// `my_keys`: our decryption keys (current and next).
Result<Opened> Open(std::string_view envelope_bytes, const Orgnr& me, const Orgnr& sender,
                    std::span<X509* const> sender_certs,
                    std::span<const DecryptionKey> my_keys);

// Steps of Open, shared with the streamed envelopes (stream.h):
// the certificate among `sender_certs` whose SHA-256 the envelope names (kBadSignature if none);
Result<X509*> FindSignerCert(const wire::Envelope& envelope, const Orgnr& sender,
                             std::span<X509* const> sender_certs);
// the verified header's sender is `sender` (kBadSignature) and its receiver `me`
// (kWrongReceiver);
Status CheckAddressing(const wire::Header& header, const Orgnr& me, const Orgnr& sender);
// our key for the header's recipient_cert_sha256 (kDecryptFailed if none). Borrowed from my_keys.
Result<const DecryptionKey*> FindDecryptionKey(const wire::Header& header,
                                               std::span<const DecryptionKey> my_keys);

// The CMS part alone, for tests and tools: encrypt/decrypt bytes as AuthEnvelopedData (DER).
Result<std::string> CmsEncrypt(std::string_view plaintext, X509* recipient);
Result<std::string> CmsDecrypt(std::string_view der, EVP_PKEY* key, X509* cert);

Result<std::string> Sign(std::string_view data, EVP_PKEY* key);
Status VerifySignature(std::string_view data, std::string_view signature, X509* cert);

}  // namespace bud::crypto
