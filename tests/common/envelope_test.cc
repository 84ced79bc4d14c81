// Envelope sealing and opening (common/crypto/envelope.h): the round trip for every key type,
// and the attacks the design names: signature stripping, re-signing by a third party, the wrong
// receiver, the wrong key, garbage and truncated input. Byte-flipping lives in
// envelope_tamper_test.cc.
#include "common/crypto/envelope.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/common/agencies.h"

namespace bud::test {
namespace {

using crypto::DecryptionKey;

Result<crypto::Opened> OpenAs(std::string_view envelope, const Orgnr& me, const Orgnr& sender,
                              std::vector<X509*> sender_certs, std::vector<DecryptionKey> my_keys) {
  return crypto::Open(envelope, me, sender, sender_certs, my_keys);
}

std::string SealOrDie(const Message& m, const Agency& from, KeyType sign, const Agency& to,
                      KeyType enc) {
  auto sealed = crypto::Seal(m.header, m.payload, from.Signer(sign), to.Encryption(enc).cert.get());
  INFO(sealed.status().ToString());
  REQUIRE(sealed.ok());
  return *sealed;
}

wire::Envelope ParseOrDie(const std::string& bytes) {
  auto env = crypto::ParseEnvelope(bytes);
  INFO(env.status().ToString());
  REQUIRE(env.ok());
  return *env;
}

std::string Serialise(const wire::Envelope& env) {
  std::string out;
  REQUIRE(env.SerializeToString(&out));
  return out;
}

TEST_CASE("Seal then Open round trips for every signing and encryption key type", "[envelope]") {
  const Agencies& pki = TestAgencies();
  const KeyType sign = GENERATE(KeyType::kRsa2048, KeyType::kEcP256, KeyType::kEd25519);
  const KeyType enc = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
  CAPTURE(sign, enc);

  const Message m = MakeMessage(pki.a.org, pki.b.org);
  const std::string sealed = SealOrDie(m, pki.a, sign, pki.b, enc);
  CHECK(sealed.find(kPlaintextMarker) == std::string::npos);  // the content is not in clear

  auto opened = OpenAs(sealed, pki.b.org, pki.a.org, {pki.a.Signing(sign).cert.get()},
                       {pki.b.Decryption(enc)});
  INFO(opened.status().ToString());
  REQUIRE(opened.ok());
  CheckSamePayload(opened->payload, m.payload);

  const wire::Header& h = opened->header;
  CHECK(h.version() == crypto::kEnvelopeVersion);
  CHECK(h.message_id() == m.header.message_id());
  CHECK(h.conversation_id() == m.header.conversation_id());
  CHECK(h.sender() == "0192:910076787");
  CHECK(h.receiver() == "0192:910075918");
  CHECK(h.process() == m.header.process());
  CHECK(h.document_type() == m.header.document_type());
  CHECK(h.created_unix_ms() == m.header.created_unix_ms());
  CHECK(h.expires_unix_ms() == m.header.expires_unix_ms());
  CHECK(h.recipient_cert_sha256() == crypto::CertFingerprint(pki.b.Encryption(enc).cert.get()));
  CHECK(opened->signer_fingerprint ==
        crypto::Hex(crypto::CertFingerprint(pki.a.Signing(sign).cert.get())));

  // The carried header states the payload's size and digest, and is signed as carried.
  const wire::Envelope env = ParseOrDie(sealed);
  auto carried = crypto::ParseHeaderUnverified(env);
  REQUIRE(carried.ok());
  CHECK(carried->payload_size() == env.payload().size());
  CHECK(carried->payload_sha256() == crypto::Sha256(env.payload()));
  CHECK(
      crypto::VerifySignature(env.header(), env.signature(), pki.a.Signing(sign).cert.get()).ok());
  CHECK(env.signer_cert_sha256() == crypto::CertFingerprint(pki.a.Signing(sign).cert.get()));
}

TEST_CASE("Open picks the matching certificate and key among current and next", "[envelope]") {
  const Agencies& pki = TestAgencies();
  const Message m = MakeMessage(pki.a.org, pki.b.org, 100);
  const std::string sealed = SealOrDie(m, pki.a, KeyType::kEd25519, pki.b, KeyType::kRsa2048);

  auto opened =
      OpenAs(sealed, pki.b.org, pki.a.org,
             {pki.a.sign_rsa.cert.get(), pki.a.sign_ed.cert.get(), pki.a.sign_ec.cert.get()},
             {pki.b.Decryption(KeyType::kEcP256), pki.b.Decryption(KeyType::kRsa2048)});
  INFO(opened.status().ToString());
  REQUIRE(opened.ok());
  CHECK(opened->signer_fingerprint ==
        crypto::Hex(crypto::CertFingerprint(pki.a.sign_ed.cert.get())));
  CheckSamePayload(opened->payload, m.payload);
}

TEST_CASE("A payload of several megabytes survives byte for byte", "[envelope]") {
  const Agencies& pki = TestAgencies();
  const Message m = MakeMessage(pki.a.org, pki.b.org, 3u << 20);
  const std::string sealed = SealOrDie(m, pki.a, KeyType::kEcP256, pki.b, KeyType::kEcP256);
  CHECK(sealed.size() > (3u << 20));
  auto opened = OpenAs(sealed, pki.b.org, pki.a.org, {pki.a.sign_ec.cert.get()},
                       {pki.b.Decryption(KeyType::kEcP256)});
  REQUIRE(opened.ok());
  CheckSamePayload(opened->payload, m.payload);
}

TEST_CASE("Seal refuses a payload whose ids differ from the header", "[envelope]") {
  const Agencies& pki = TestAgencies();
  Message m = MakeMessage(pki.a.org, pki.b.org, 10);
  SECTION("message id") { m.payload.set_message_id(NewUuid()); }
  SECTION("conversation id") { m.payload.set_conversation_id(NewUuid()); }
  SECTION("sender") { m.payload.set_sender(pki.c.org.wire()); }
  SECTION("receiver") { m.payload.set_receiver(pki.c.org.wire()); }
  auto sealed =
      crypto::Seal(m.header, m.payload, pki.a.Signer(KeyType::kEcP256), pki.b.enc_ec.cert.get());
  REQUIRE_FALSE(sealed.ok());
  CHECK(sealed.status().code() == Code::kInvalidArgument);
}

TEST_CASE("Signature stripping: C re-signs A's envelope to B as its own", "[envelope]") {
  const Agencies& pki = TestAgencies();
  const Message m = MakeMessage(pki.a.org, pki.b.org);
  const std::string from_a = SealOrDie(m, pki.a, KeyType::kRsa2048, pki.b, KeyType::kRsa2048);

  // C keeps the ciphertext and its digest, names itself the sender and signs with its own key.
  wire::Envelope env = ParseOrDie(from_a);
  auto header = crypto::ParseHeaderUnverified(env);
  REQUIRE(header.ok());
  header->set_sender(pki.c.org.wire());
  std::string header_bytes;
  REQUIRE(header->SerializeToString(&header_bytes));
  auto sig = crypto::Sign(header_bytes, pki.c.sign_ec.key.get());
  REQUIRE(sig.ok());
  env.set_header(header_bytes);
  env.set_signature(*sig);
  env.set_signer_cert_sha256(crypto::CertFingerprint(pki.c.sign_ec.cert.get()));
  const std::string from_c = Serialise(env);

  // Everything C signed checks out; only the sender sealed inside the payload gives it away.
  auto opened = OpenAs(from_c, pki.b.org, pki.c.org, {pki.c.sign_ec.cert.get()},
                       {pki.b.Decryption(KeyType::kRsa2048)});
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.status().code() == Code::kPayloadMismatch);
  CHECK_THAT(opened.status().message(), Catch::Contains(pki.a.org.wire()));
  CHECK_THAT(opened.status().message(), !Catch::Contains(std::string(kPlaintextMarker)));
}

TEST_CASE("A's header with someone else's signature is rejected", "[envelope]") {
  const Agencies& pki = TestAgencies();
  const Message m = MakeMessage(pki.a.org, pki.b.org, 200);
  const std::string from_a = SealOrDie(m, pki.a, KeyType::kEcP256, pki.b, KeyType::kEcP256);
  wire::Envelope env = ParseOrDie(from_a);
  auto c_sig = crypto::Sign(env.header(), pki.c.sign_ec.key.get());
  REQUIRE(c_sig.ok());

  SECTION("C's signature over the unchanged header, still claiming A's certificate") {
    env.set_signature(*c_sig);
    auto opened = OpenAs(Serialise(env), pki.b.org, pki.a.org, {pki.a.sign_ec.cert.get()},
                         {pki.b.Decryption(KeyType::kEcP256)});
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Code::kBadSignature);
  }
  SECTION("C's signature and C's certificate, opened against A's certificates") {
    env.set_signature(*c_sig);
    env.set_signer_cert_sha256(crypto::CertFingerprint(pki.c.sign_ec.cert.get()));
    auto opened = OpenAs(Serialise(env), pki.b.org, pki.a.org,
                         {pki.a.sign_ec.cert.get(), pki.a.sign_rsa.cert.get()},
                         {pki.b.Decryption(KeyType::kEcP256)});
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Code::kBadSignature);
  }
  SECTION("C signs A's unchanged header and presents it as its own") {
    env.set_signature(*c_sig);
    env.set_signer_cert_sha256(crypto::CertFingerprint(pki.c.sign_ec.cert.get()));
    auto opened = OpenAs(Serialise(env), pki.b.org, pki.c.org, {pki.c.sign_ec.cert.get()},
                         {pki.b.Decryption(KeyType::kEcP256)});
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Code::kBadSignature);  // the header names A, signed by C
  }
  SECTION("the signature is A's but from another of A's keys than the one claimed") {
    auto other = crypto::Sign(env.header(), pki.a.sign_rsa.key.get());
    REQUIRE(other.ok());
    env.set_signature(*other);
    auto opened = OpenAs(Serialise(env), pki.b.org, pki.a.org,
                         {pki.a.sign_ec.cert.get(), pki.a.sign_rsa.cert.get()},
                         {pki.b.Decryption(KeyType::kEcP256)});
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Code::kBadSignature);
  }
}

TEST_CASE("A certificate not registered for the sender is rejected", "[envelope]") {
  const Agencies& pki = TestAgencies();
  const Message m = MakeMessage(pki.a.org, pki.b.org, 200);
  const std::string sealed = SealOrDie(m, pki.a, KeyType::kEd25519, pki.b, KeyType::kEcP256);
  auto opened = OpenAs(sealed, pki.b.org, pki.a.org, {pki.c.sign_ed.cert.get()},
                       {pki.b.Decryption(KeyType::kEcP256)});
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.status().code() == Code::kBadSignature);
  auto none = OpenAs(sealed, pki.b.org, pki.a.org, {}, {pki.b.Decryption(KeyType::kEcP256)});
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().code() == Code::kBadSignature);
}

TEST_CASE("An envelope for B is refused by anyone else and by keys that are not B's",
          "[envelope]") {
  const Agencies& pki = TestAgencies();
  const KeyType enc = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
  CAPTURE(enc);
  const Message m = MakeMessage(pki.a.org, pki.b.org, 300);
  const std::string sealed = SealOrDie(m, pki.a, KeyType::kEcP256, pki.b, enc);
  const std::vector<X509*> a_certs = {pki.a.sign_ec.cert.get()};

  SECTION("C opens it as itself") {
    auto opened = crypto::Open(
        sealed, pki.c.org, pki.a.org, a_certs,
        std::vector{pki.c.Decryption(KeyType::kRsa2048), pki.c.Decryption(KeyType::kEcP256)});
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Code::kWrongReceiver);
  }
  SECTION("B's name but C's keys") {
    auto opened = crypto::Open(
        sealed, pki.b.org, pki.a.org, a_certs,
        std::vector{pki.c.Decryption(KeyType::kRsa2048), pki.c.Decryption(KeyType::kEcP256)});
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Code::kDecryptFailed);
  }
  SECTION("B's certificate paired with C's private key") {
    const DecryptionKey wrong{pki.c.Encryption(enc).key.get(), pki.b.Encryption(enc).cert.get()};
    auto opened = crypto::Open(sealed, pki.b.org, pki.a.org, a_certs, std::vector{wrong});
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Code::kDecryptFailed);
    CHECK_THAT(opened.status().message(), !Catch::Contains(std::string(kPlaintextMarker)));
  }
  SECTION("B's other encryption key") {
    const KeyType other = enc == KeyType::kRsa2048 ? KeyType::kEcP256 : KeyType::kRsa2048;
    auto opened =
        crypto::Open(sealed, pki.b.org, pki.a.org, a_certs, std::vector{pki.b.Decryption(other)});
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Code::kDecryptFailed);
  }
}

TEST_CASE("Garbage and truncated envelopes are refused, never a crash", "[envelope]") {
  const Agencies& pki = TestAgencies();
  const Message m = MakeMessage(pki.a.org, pki.b.org, 100);
  const std::string sealed = SealOrDie(m, pki.a, KeyType::kEd25519, pki.b, KeyType::kEcP256);
  const std::vector<X509*> certs = {pki.a.sign_ed.cert.get()};
  const std::vector<DecryptionKey> keys = {pki.b.Decryption(KeyType::kEcP256)};

  for (std::string_view junk : {std::string_view(""), std::string_view("\x0a\x05hello"),
                                std::string_view("\xff\xff\xff\xff\xff\xff")}) {
    auto opened = crypto::Open(junk, pki.b.org, pki.a.org, certs, keys);
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Code::kMalformed);
  }
  for (size_t len = 0; len < sealed.size(); ++len) {
    auto opened =
        crypto::Open(std::string_view(sealed).substr(0, len), pki.b.org, pki.a.org, certs, keys);
    INFO("truncated to " << len << " of " << sealed.size() << " bytes");
    REQUIRE_FALSE(opened.ok());
  }
  wire::Envelope env = ParseOrDie(sealed);
  env.clear_signature();
  auto unsigned_env = crypto::ParseEnvelope(Serialise(env));
  REQUIRE_FALSE(unsigned_env.ok());
  CHECK(unsigned_env.status().code() == Code::kMalformed);
}

TEST_CASE("A correctly signed header of an unknown version is refused", "[envelope]") {
  const Agencies& pki = TestAgencies();
  const Message m = MakeMessage(pki.a.org, pki.b.org, 100);
  wire::Envelope env = ParseOrDie(SealOrDie(m, pki.a, KeyType::kEcP256, pki.b, KeyType::kEcP256));
  auto header = crypto::ParseHeaderUnverified(env);
  REQUIRE(header.ok());
  header->set_version(crypto::kEnvelopeVersion + 1);
  env.set_header(header->SerializeAsString());
  auto sig = crypto::Sign(env.header(), pki.a.sign_ec.key.get());
  REQUIRE(sig.ok());
  env.set_signature(*sig);
  auto opened = crypto::Open(Serialise(env), pki.b.org, pki.a.org,
                             std::vector<X509*>{pki.a.sign_ec.cert.get()},
                             std::vector{pki.b.Decryption(KeyType::kEcP256)});
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.status().code() == Code::kUnsupported);
}

TEST_CASE("Sign and VerifySignature agree for every key type", "[envelope]") {
  const Agencies& pki = TestAgencies();
  const KeyType sign = GENERATE(KeyType::kRsa2048, KeyType::kEcP256, KeyType::kEd25519);
  CAPTURE(sign);
  const std::string data = "header bytes as carried";
  auto sig = crypto::Sign(data, pki.a.Signing(sign).key.get());
  REQUIRE(sig.ok());
  CHECK(crypto::VerifySignature(data, *sig, pki.a.Signing(sign).cert.get()).ok());
  CHECK(crypto::VerifySignature(data + " ", *sig, pki.a.Signing(sign).cert.get()).code() ==
        Code::kBadSignature);
  CHECK(crypto::VerifySignature(data, *sig, pki.b.Signing(sign).cert.get()).code() ==
        Code::kBadSignature);
  CHECK(crypto::VerifySignature(data, "", pki.a.Signing(sign).cert.get()).code() ==
        Code::kBadSignature);
}

}  // namespace
}  // namespace bud::test
