// Fuzz target: opening an envelope (common/crypto/envelope.h) with the fixed identities of
// fuzz_identity.h: we are the receiver, the envelope claims to come from the sender. As during a
// certificate rotation, Open gets two signing certificates for the sender (the receiver's own
// signing certificate stands in for a stale one) and two decryption keys (the sender's encryption
// key stands in for our next one).
//
// Each input is used three ways:
//  1. Open(bytes) as received: must fail with an envelope error code, or, when it succeeds, hold
//     up to an independent check (the signature over the header bytes as carried verifies with
//     the sender's certificate, the payload matches the signed digest, the header names us and
//     the sender, the payload repeats the header's ids). Random bytes never open.
//  2. CmsDecrypt(bytes) with our encryption key: the CMS layer alone.
//  3. When the bytes parse as an Envelope: the same envelope re-signed with the sender's real key
//     (and, in a second variant, with the header's digest fields set to match the payload), then
//     Open. A fuzzer cannot forge signatures, so without this nothing after the signature check
//     (header parsing, receiver check, digest, decryption, payload checks) would ever see
//     mutated input.
// ASan's leak check runs with every input: every path through Open must free what it made.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/crypto/envelope.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_identity.h"

namespace {

using namespace bud;

// What a successful Open promises, checked without Open's own code paths where possible.
void CheckOpened(std::string_view bytes, const crypto::Opened& o, const fuzz::Identity& id) {
  wire::Envelope env;
  BUD_FUZZ_CHECK(env.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())),
                 "Open succeeded on bytes that are not an Envelope");
  BUD_FUZZ_CHECK(
      crypto::VerifySignature(env.header(), env.signature(), id.sender.signing_cert.get()).ok(),
      "Open succeeded but the signature does not verify with the sender's certificate");
  wire::Header signed_header;
  BUD_FUZZ_CHECK(signed_header.ParseFromString(env.header()),
                 "Open succeeded on a header that does not parse");
  BUD_FUZZ_CHECK(signed_header.SerializeAsString() == o.header.SerializeAsString(),
                 "Open returned a header other than the one signed");
  BUD_FUZZ_CHECK(o.header.sender() == id.sender.org.wire(),
                 "Open: header sender is not the sender");
  BUD_FUZZ_CHECK(o.header.receiver() == id.receiver.org.wire(), "Open: header receiver is not us");
  BUD_FUZZ_CHECK(o.header.payload_size() == env.payload().size() &&
                     o.header.payload_sha256() == crypto::Sha256(env.payload()),
                 "Open succeeded although the payload does not match the signed digest");
  const wire::Payload& p = o.payload;
  BUD_FUZZ_CHECK(p.message_id() == o.header.message_id() && p.sender() == o.header.sender() &&
                     p.receiver() == o.header.receiver() &&
                     p.conversation_id() == o.header.conversation_id(),
                 "Open succeeded although the payload's ids differ from the signed header's");
  BUD_FUZZ_CHECK(
      o.signer_fingerprint == crypto::Hex(crypto::CertFingerprint(id.sender.signing_cert.get())),
      "Open reports another signer");
}

void OpenAndCheck(std::string_view bytes, const fuzz::Identity& id) {
  X509* sender_certs[] = {id.receiver.signing_cert.get(), id.sender.signing_cert.get()};
  const crypto::DecryptionKey keys[] = {
      {id.receiver.encryption_key.get(), id.receiver.encryption_cert.get()},
      {id.sender.encryption_key.get(), id.sender.encryption_cert.get()}};
  auto opened = crypto::Open(bytes, id.receiver.org, id.sender.org, sender_certs, keys);
  ERR_clear_error();  // Open makes no promise about the queue; CmsDecrypt is checked below
  if (!opened.ok()) {
    BUD_FUZZ_CHECK(fuzz::IsEnvelopeError(opened.status().code()),
                   "Open: not an envelope error code");
    return;
  }
  CheckOpened(bytes, *opened, id);
}

void Resign(wire::Envelope env, bool fix_digest, const fuzz::Identity& id) {
  if (fix_digest) {
    wire::Header h;
    if (!h.ParseFromString(env.header())) return;
    h.set_payload_size(env.payload().size());
    h.set_payload_sha256(crypto::Sha256(env.payload()));
    if (h.recipient_cert_sha256() != crypto::CertFingerprint(id.sender.encryption_cert.get())) {
      h.set_recipient_cert_sha256(crypto::CertFingerprint(id.receiver.encryption_cert.get()));
    }
    env.set_header(h.SerializeAsString());
  }
  auto sig = crypto::Sign(env.header(), id.sender.signing_key.get());
  BUD_FUZZ_CHECK(sig.ok(), "cannot sign with the fixed sender key (harness bug)");
  env.set_signature(*sig);
  env.set_signer_cert_sha256(crypto::CertFingerprint(id.sender.signing_cert.get()));
  OpenAndCheck(env.SerializeAsString(), id);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bud::fuzz::QuietProtobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::Identity& id = fuzz::FixedIdentity();
  std::string_view bytes(reinterpret_cast<const char*>(data), size);

  OpenAndCheck(bytes, id);

  auto plain = crypto::CmsDecrypt(bytes, id.receiver.encryption_key.get(),
                                  id.receiver.encryption_cert.get());
  fuzz::CheckOpenSslQueueEmpty("CmsDecrypt");
  if (!plain.ok()) {
    BUD_FUZZ_CHECK(
        plain.status().code() == Code::kDecryptFailed || plain.status().code() == Code::kMalformed,
        "CmsDecrypt: wrong error code");
  }

  wire::Envelope env;
  if (env.ParseFromArray(data, static_cast<int>(size)) && !env.header().empty() &&
      !env.payload().empty()) {
    Resign(env, false, id);
    Resign(env, true, id);
  }
  return 0;
}
