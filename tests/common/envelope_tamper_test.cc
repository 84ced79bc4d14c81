// Tampering with sealed envelopes, one byte at a time.
//
// Flipping any byte of the carried header, of the signature or of the CMS payload must be
// rejected by crypto::Open with its specific code, and never yield plaintext. The CMS layer is
// also attacked on its own (crypto::CmsDecrypt), in the regions that matter: the wrapped content
// key (and, for EC, the ephemeral public key), the GCM nonce, the GCM tag and the ciphertext.
// Those regions are found by walking the DER of the AuthEnvelopedData (RFC 5083) here, so that
// the test also pins down that the payload really is AES-256-GCM AuthEnvelopedData.
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/crypto/envelope.h"
#include "tests/common/agencies.h"

namespace bud::test {
namespace {

using crypto::DecryptionKey;

// --- a minimal DER walker ------------------------------------------------------------------

struct Tlv {
  uint8_t tag = 0;
  size_t begin = 0;    // offset of the tag byte
  size_t content = 0;  // offset of the first content byte
  size_t length = 0;   // content length
  size_t end() const { return content + length; }
  bool constructed() const { return (tag & 0x20) != 0; }
};

// One definite-length TLV at `pos` (DER only: single-byte tags, no indefinite lengths).
std::optional<Tlv> ReadTlv(std::string_view der, size_t pos) {
  if (pos + 2 > der.size()) return std::nullopt;
  Tlv t;
  t.begin = pos;
  t.tag = static_cast<uint8_t>(der[pos]);
  if ((t.tag & 0x1f) == 0x1f) return std::nullopt;  // multi-byte tag: not used by CMS here
  uint8_t first = static_cast<uint8_t>(der[pos + 1]);
  size_t p = pos + 2;
  if (first < 0x80) {
    t.length = first;
  } else {
    size_t n = first & 0x7f;
    if (n == 0 || n > 4 || p + n > der.size()) return std::nullopt;
    for (size_t i = 0; i < n; ++i) t.length = (t.length << 8) | static_cast<uint8_t>(der[p + i]);
    p += n;
  }
  t.content = p;
  if (t.end() > der.size()) return std::nullopt;
  return t;
}

std::vector<Tlv> Children(std::string_view der, const Tlv& parent) {
  std::vector<Tlv> out;
  size_t pos = parent.content;
  while (pos < parent.end()) {
    auto t = ReadTlv(der, pos);
    REQUIRE(t.has_value());
    REQUIRE(t->end() <= parent.end());
    out.push_back(*t);
    pos = t->end();
  }
  return out;
}

// Every primitive descendant of `parent` with the given tag, depth first.
void FindAll(std::string_view der, const Tlv& parent, uint8_t tag, std::vector<Tlv>& out) {
  for (const Tlv& c : Children(der, parent)) {
    if (c.tag == tag) out.push_back(c);
    if (c.constructed()) FindAll(der, c, tag, out);
  }
}

std::string_view Bytes(std::string_view der, const Tlv& t) {
  return der.substr(t.content, t.length);
}

// DER content of the OIDs we expect.
constexpr std::string_view kOidAuthEnvelopedData =
    "\x2a\x86\x48\x86\xf7\x0d\x01\x09\x10\x01\x17";  // 1.2.840.113549.1.9.16.1.23
constexpr std::string_view kOidAes256Gcm = "\x60\x86\x48\x01\x65\x03\x04\x01\x2e";  // ...1.46

struct Region {
  std::string name;
  size_t begin;
  size_t end;
};

// Names the security-relevant regions of a DER AuthEnvelopedData, checking its shape on the way.
std::vector<Region> CmsRegions(std::string_view der, size_t plaintext_size) {
  auto content_info = ReadTlv(der, 0);
  REQUIRE(content_info.has_value());
  REQUIRE(content_info->tag == 0x30);
  CHECK(content_info->end() == der.size());
  auto ci = Children(der, *content_info);
  REQUIRE(ci.size() == 2);
  REQUIRE(ci[0].tag == 0x06);
  CHECK(Bytes(der, ci[0]) == kOidAuthEnvelopedData);
  REQUIRE(ci[1].tag == 0xa0);
  auto wrapper = Children(der, ci[1]);
  REQUIRE(wrapper.size() == 1);
  // AuthEnvelopedData ::= SEQUENCE { version, originatorInfo [0] OPTIONAL, recipientInfos SET,
  //   authEncryptedContentInfo, authAttrs [1] OPTIONAL, mac OCTET STRING, unauthAttrs [2] OPT }
  auto aed = Children(der, wrapper[0]);
  REQUIRE(aed.size() > 3);
  REQUIRE(aed[0].tag == 0x02);  // version
  size_t i = 1;
  if (aed[i].tag == 0xa0) ++i;
  const Tlv recipient_infos = aed[i++];
  REQUIRE(recipient_infos.tag == 0x31);
  const Tlv encrypted_content_info = aed[i++];
  REQUIRE(encrypted_content_info.tag == 0x30);
  if (i < aed.size() && aed[i].tag == 0xa1) ++i;
  REQUIRE(i < aed.size());
  const Tlv mac = aed[i];
  REQUIRE(mac.tag == 0x04);

  std::vector<Region> regions;
  // The recipient info: ktri (RSA) holds the wrapped key as its last OCTET STRING; kari (EC)
  // holds the originator's ephemeral public key (BIT STRING) and the wrapped key (OCTET STRING).
  auto ris = Children(der, recipient_infos);
  REQUIRE(ris.size() == 1);
  std::vector<Tlv> octets, bits;
  FindAll(der, ris[0], 0x04, octets);
  FindAll(der, ris[0], 0x03, bits);
  REQUIRE_FALSE(octets.empty());
  const Tlv wrapped = octets.back();
  if (ris[0].tag == 0x30) {        // KeyTransRecipientInfo
    CHECK(wrapped.length == 256);  // RSA-2048
    regions.push_back({"wrapped content key (ktri encryptedKey)", wrapped.content, wrapped.end()});
  } else {
    REQUIRE(ris[0].tag == 0xa1);  // [1] KeyAgreeRecipientInfo
    CHECK(wrapped.length == 40);  // AES-256 key wrapped with AES key wrap (RFC 3394)
    regions.push_back({"wrapped content key (kari encryptedKey)", wrapped.content, wrapped.end()});
    REQUIRE(bits.size() == 1);
    regions.push_back({"ephemeral EC public key (kari originatorKey)", bits[0].content + 1,
                       bits[0].end()});  // skip the unused-bits byte
  }

  // EncryptedContentInfo ::= SEQUENCE { contentType, contentEncryptionAlgorithm
  //   { aes256-GCM, GCMParameters { aes-nonce OCTET STRING, aes-ICVlen INTEGER DEFAULT 12 } },
  //   encryptedContent [0] IMPLICIT OCTET STRING }
  auto eci = Children(der, encrypted_content_info);
  REQUIRE(eci.size() == 3);
  auto alg = Children(der, eci[1]);
  REQUIRE(alg.size() == 2);
  CHECK(Bytes(der, alg[0]) == kOidAes256Gcm);
  auto gcm = Children(der, alg[1]);
  REQUIRE_FALSE(gcm.empty());
  REQUIRE(gcm[0].tag == 0x04);
  CHECK(gcm[0].length == 12);
  regions.push_back({"GCM nonce (IV)", gcm[0].content, gcm[0].end()});
  CHECK(mac.length == 16);
  regions.push_back({"GCM tag (mac)", mac.content, mac.end()});
  REQUIRE(eci[2].tag == 0x80);             // primitive: CmsEncrypt does not stream
  CHECK(eci[2].length == plaintext_size);  // GCM adds no padding
  regions.push_back({"ciphertext (encryptedContent)", eci[2].content, eci[2].end()});
  return regions;
}

// All positions of short regions; for long ones the first 512 and 300 seeded random later ones.
std::vector<size_t> PositionsIn(const Region& r, std::mt19937& rng) {
  std::vector<size_t> out;
  const size_t n = r.end - r.begin;
  for (size_t k = 0; k < std::min<size_t>(n, 512); ++k) out.push_back(r.begin + k);
  if (n > 512) {
    std::uniform_int_distribution<size_t> pick(r.begin + 512, r.end - 1);
    for (int k = 0; k < 300; ++k) out.push_back(pick(rng));
  }
  return out;
}

std::string SealOrDie(const Message& m, const Agency& from, KeyType sign, const Agency& to,
                      KeyType enc) {
  auto sealed = crypto::Seal(m.header, m.payload, from.Signer(sign), to.Encryption(enc).cert.get());
  INFO(sealed.status().ToString());
  REQUIRE(sealed.ok());
  return *sealed;
}

// --- Open: header, signature and payload -----------------------------------------------------

enum class Part { kHeader, kSignature, kPayload };

// Flips every byte of one part of the envelope, with both masks, and expects `want` each time.
// Returns the number of variants tried.
size_t FlipEveryByte(const std::string& sealed, Part part, Code want, const Agencies& pki,
                     KeyType sign, KeyType enc) {
  auto parsed = crypto::ParseEnvelope(sealed);
  REQUIRE(parsed.ok());
  const wire::Envelope original = *parsed;
  const std::vector<X509*> certs = {pki.a.Signing(sign).cert.get()};
  const std::vector<DecryptionKey> keys = {pki.b.Decryption(enc)};

  // The untouched envelope opens: the failures below are the flips' doing.
  REQUIRE(crypto::Open(sealed, pki.b.org, pki.a.org, certs, keys).ok());

  const std::string& target = part == Part::kHeader      ? original.header()
                              : part == Part::kSignature ? original.signature()
                                                         : original.payload();
  size_t tried = 0;
  for (size_t pos = 0; pos < target.size(); ++pos) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0xff}}) {
      std::string bytes = target;
      bytes[pos] = static_cast<char>(bytes[pos] ^ mask);
      wire::Envelope env = original;
      if (part == Part::kHeader) env.set_header(bytes);
      if (part == Part::kSignature) env.set_signature(bytes);
      if (part == Part::kPayload) env.set_payload(bytes);
      auto opened = crypto::Open(env.SerializeAsString(), pki.b.org, pki.a.org, certs, keys);
      ++tried;
      if (opened.ok() || opened.status().code() != want ||
          opened.status().message().find(kPlaintextMarker) != std::string::npos) {
        INFO("byte " << pos << " of " << target.size() << " xor " << int{mask} << ": "
                     << opened.status().ToString());
        REQUIRE_FALSE(opened.ok());
        REQUIRE(opened.status().code() == want);
        REQUIRE_THAT(opened.status().message(), !Catch::Contains(std::string(kPlaintextMarker)));
      }
    }
  }
  return tried;
}

TEST_CASE("Flipping any byte of the signed header is rejected as a bad signature",
          "[envelope][tamper]") {
  const Agencies& pki = TestAgencies();
  const KeyType sign = GENERATE(KeyType::kRsa2048, KeyType::kEcP256, KeyType::kEd25519);
  CAPTURE(sign);
  const Message m = MakeMessage(pki.a.org, pki.b.org, 300);
  const std::string sealed = SealOrDie(m, pki.a, sign, pki.b, KeyType::kEcP256);
  const size_t tried =
      FlipEveryByte(sealed, Part::kHeader, Code::kBadSignature, pki, sign, KeyType::kEcP256);
  CHECK(tried > 2 * 150);  // ids, orgnrs, urns, two digests: the header is not trivially small
}

TEST_CASE("Flipping any byte of the signature is rejected as a bad signature",
          "[envelope][tamper]") {
  const Agencies& pki = TestAgencies();
  const KeyType sign = GENERATE(KeyType::kRsa2048, KeyType::kEcP256, KeyType::kEd25519);
  CAPTURE(sign);
  const Message m = MakeMessage(pki.a.org, pki.b.org, 300);
  const std::string sealed = SealOrDie(m, pki.a, sign, pki.b, KeyType::kEcP256);
  const size_t tried =
      FlipEveryByte(sealed, Part::kSignature, Code::kBadSignature, pki, sign, KeyType::kEcP256);
  CHECK(tried >= 2 * 64);  // Ed25519: 64 bytes; ECDSA ~70; RSA 256
}

TEST_CASE("Flipping any byte of the CMS payload is rejected as a digest mismatch",
          "[envelope][tamper]") {
  const Agencies& pki = TestAgencies();
  const KeyType enc = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
  CAPTURE(enc);
  const Message m = MakeMessage(pki.a.org, pki.b.org, 2000);
  const std::string sealed = SealOrDie(m, pki.a, KeyType::kEd25519, pki.b, enc);
  const size_t tried =
      FlipEveryByte(sealed, Part::kPayload, Code::kDigestMismatch, pki, KeyType::kEd25519, enc);
  CHECK(tried > 2 * 2000);
}

TEST_CASE("A payload that is longer or shorter than signed is rejected", "[envelope][tamper]") {
  const Agencies& pki = TestAgencies();
  const Message m = MakeMessage(pki.a.org, pki.b.org, 300);
  auto env = crypto::ParseEnvelope(SealOrDie(m, pki.a, KeyType::kEcP256, pki.b, KeyType::kEcP256));
  REQUIRE(env.ok());
  const std::string payload = env->payload();
  SECTION("one byte appended") { env->set_payload(payload + '\0'); }
  SECTION("last byte removed") { env->set_payload(payload.substr(0, payload.size() - 1)); }
  SECTION("replaced by another envelope's payload") {
    auto other =
        crypto::ParseEnvelope(SealOrDie(m, pki.a, KeyType::kEcP256, pki.b, KeyType::kEcP256));
    REQUIRE(other.ok());
    REQUIRE(other->payload() != payload);
    env->set_payload(other->payload());
  }
  auto opened = crypto::Open(env->SerializeAsString(), pki.b.org, pki.a.org,
                             std::vector<X509*>{pki.a.sign_ec.cert.get()},
                             std::vector{pki.b.Decryption(KeyType::kEcP256)});
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.status().code() == Code::kDigestMismatch);
}

// --- the CMS layer alone ---------------------------------------------------------------------

TEST_CASE("CmsDecrypt rejects a flipped wrapped key, nonce, tag or ciphertext",
          "[envelope][tamper][cms]") {
  const Agencies& pki = TestAgencies();
  const KeyType enc = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
  CAPTURE(enc);
  const Leaf& recipient = pki.b.Encryption(enc);

  std::string plaintext = std::string(kPlaintextMarker) + ": ";
  std::mt19937 fill(4711);
  while (plaintext.size() < 2000) plaintext += static_cast<char>(fill() & 0xff);

  auto der = crypto::CmsEncrypt(plaintext, recipient.cert.get());
  INFO(der.status().ToString());
  REQUIRE(der.ok());
  CHECK(der->find(kPlaintextMarker) == std::string::npos);
  auto control = crypto::CmsDecrypt(*der, recipient.key.get(), recipient.cert.get());
  REQUIRE(control.ok());
  REQUIRE(*control == plaintext);

  const std::vector<Region> regions = CmsRegions(*der, plaintext.size());
  REQUIRE(regions.size() >= 4);
  std::mt19937 rng(20261129);
  for (const Region& region : regions) {
    INFO("region: " << region.name << " [" << region.begin << ", " << region.end << ")");
    REQUIRE(region.begin < region.end);
    REQUIRE(region.end <= der->size());
    size_t tried = 0;
    for (size_t pos : PositionsIn(region, rng)) {
      std::string flipped = *der;
      flipped[pos] = static_cast<char>(flipped[pos] ^ 0x01);
      auto out = crypto::CmsDecrypt(flipped, recipient.key.get(), recipient.cert.get());
      ++tried;
      if (out.ok() || out.status().code() != Code::kDecryptFailed) {
        INFO("byte " << pos << ": " << (out.ok() ? "decrypted!" : out.status().ToString()));
        REQUIRE_FALSE(out.ok());
        REQUIRE(out.status().code() == Code::kDecryptFailed);
      }
    }
    CHECK(tried == std::min<size_t>(region.end - region.begin, 512) +
                       (region.end - region.begin > 512 ? 300 : 0));
  }
}

TEST_CASE("CmsDecrypt refuses the wrong key and input that is not AuthEnvelopedData",
          "[envelope][cms]") {
  const Agencies& pki = TestAgencies();
  const std::string plaintext = "kort melding";
  auto der = crypto::CmsEncrypt(plaintext, pki.b.enc_rsa.cert.get());
  REQUIRE(der.ok());

  auto wrong_key = crypto::CmsDecrypt(*der, pki.c.enc_rsa.key.get(), pki.b.enc_rsa.cert.get());
  REQUIRE_FALSE(wrong_key.ok());
  CHECK(wrong_key.status().code() == Code::kDecryptFailed);
  auto wrong_cert = crypto::CmsDecrypt(*der, pki.c.enc_rsa.key.get(), pki.c.enc_rsa.cert.get());
  REQUIRE_FALSE(wrong_cert.ok());
  CHECK(wrong_cert.status().code() == Code::kDecryptFailed);
  for (std::string_view junk : {std::string_view(""), std::string_view("\x30\x03\x02\x01\x00"),
                                std::string_view(*der).substr(0, der->size() / 2)}) {
    auto out = crypto::CmsDecrypt(junk, pki.b.enc_rsa.key.get(), pki.b.enc_rsa.cert.get());
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == Code::kDecryptFailed);
  }
}

}  // namespace
}  // namespace bud::test
