// Shared fixture for the envelope tests: three agencies A, B and C, each with signing keys of
// every supported type and RSA and EC P-256 encryption keys, all issued by one trusted TestCa.
//
// RSA key generation is slow, so the fixture is built once per test executable, on first use
// (inside a test case, so a failure is reported by Catch2), and shared read-only afterwards.
#pragma once

#include <catch2/catch.hpp>
#include <memory>
#include <ostream>
#include <string>

#include "common/crypto/certs.h"
#include "common/crypto/envelope.h"
#include "common/orgnr.h"
#include "common/uuid.h"
#include "proto/envelope.pb.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace bud::test {

inline std::ostream& operator<<(std::ostream& os, KeyType t) {
  switch (t) {
    case KeyType::kRsa2048:
      return os << "RSA-2048";
    case KeyType::kEcP256:
      return os << "EC P-256";
    case KeyType::kEd25519:
      return os << "Ed25519";
  }
  return os << "?";
}

inline Orgnr Org(const std::string& digits) {
  auto org = Orgnr::Parse(digits);
  if (!org.ok()) throw std::runtime_error(org.status().ToString());
  return *org;
}

struct Agency {
  Agency(const TestCa& ca, const std::string& digits)
      : org(Org(digits)),
        sign_rsa(ca.IssueSigning(KeyType::kRsa2048, digits)),
        sign_ec(ca.IssueSigning(KeyType::kEcP256, digits)),
        sign_ed(ca.IssueSigning(KeyType::kEd25519, digits)),
        enc_rsa(ca.IssueEncryption(KeyType::kRsa2048, digits)),
        enc_ec(ca.IssueEncryption(KeyType::kEcP256, digits)) {}

  const Leaf& Signing(KeyType t) const {
    return t == KeyType::kRsa2048 ? sign_rsa : t == KeyType::kEcP256 ? sign_ec : sign_ed;
  }
  const Leaf& Encryption(KeyType t) const { return t == KeyType::kRsa2048 ? enc_rsa : enc_ec; }
  crypto::SignerKeys Signer(KeyType t) const {
    return {Signing(t).key.get(), Signing(t).cert.get()};
  }
  crypto::DecryptionKey Decryption(KeyType t) const {
    return {Encryption(t).key.get(), Encryption(t).cert.get()};
  }

  Orgnr org;
  Leaf sign_rsa, sign_ec, sign_ed;
  Leaf enc_rsa, enc_ec;
};

struct Agencies {
  Agencies() : a(ca, "910076787"), b(ca, "910075918"), c(ca, "974760673") {}
  TestCa ca;
  Agency a, b, c;
};

inline const Agencies& TestAgencies() {
  static const Agencies agencies;
  return agencies;
}

// A header and the matching payload from `from` to `to`, with attachments whose bytes exercise
// every byte value, an empty file and a non-ASCII name. `marker` is a string that appears only in
// the plaintext, for checking that it never leaks.
struct Message {
  wire::Header header;
  wire::Payload payload;
};

inline constexpr std::string_view kPlaintextMarker = "HEMMELIG-innhold-7f3a9c";

inline Message MakeMessage(const Orgnr& from, const Orgnr& to, size_t body_bytes = 1500) {
  Message m;
  m.header.set_message_id(NewUuid());
  m.header.set_conversation_id(NewUuid());
  m.header.set_sender(from.wire());
  m.header.set_receiver(to.wire());
  m.header.set_process("urn:no:difi:profile:arkivmelding:administrasjon:ver1.0");
  m.header.set_document_type("urn:no:difi:arkivmelding:xsd::arkivmelding");
  m.header.set_created_unix_ms(1795942800123);
  m.header.set_expires_unix_ms(1795942800123 + 86400000);

  m.payload.set_message_id(m.header.message_id());
  m.payload.set_conversation_id(m.header.conversation_id());
  m.payload.set_sender(m.header.sender());
  m.payload.set_receiver(m.header.receiver());
  m.payload.set_title("Svar på søknad om løyve");
  m.payload.set_metadata_json(R"({"tittel":"Svar på søknad","saksnr":"2026/17","x":"\u00e6"})");

  std::string every_byte;
  for (int i = 0; i < 256; ++i) every_byte += static_cast<char>(i);
  std::string body = std::string(kPlaintextMarker) + std::string("\r\n\0\n", 4);
  while (body.size() < body_bytes) body += every_byte;
  body.resize(body_bytes);

  auto* a1 = m.payload.add_attachments();
  a1->set_name("rapport.pdf");
  a1->set_media_type("application/pdf");
  a1->set_data(body);
  auto* a2 = m.payload.add_attachments();
  a2->set_name("æøå vedlegg.bin");
  a2->set_media_type("application/octet-stream");
  a2->set_data(every_byte);
  auto* a3 = m.payload.add_attachments();
  a3->set_name("tom.txt");
  a3->set_media_type("text/plain");
  a3->set_data("");
  return m;
}

// Field-by-field equality of two payloads, each difference reported by Catch2.
inline void CheckSamePayload(const wire::Payload& got, const wire::Payload& want) {
  CHECK(got.message_id() == want.message_id());
  CHECK(got.conversation_id() == want.conversation_id());
  CHECK(got.sender() == want.sender());
  CHECK(got.receiver() == want.receiver());
  CHECK(got.title() == want.title());
  CHECK(got.metadata_json() == want.metadata_json());
  REQUIRE(got.attachments_size() == want.attachments_size());
  for (int i = 0; i < want.attachments_size(); ++i) {
    INFO("attachment " << i);
    CHECK(got.attachments(i).name() == want.attachments(i).name());
    CHECK(got.attachments(i).media_type() == want.attachments(i).media_type());
    CHECK(got.attachments(i).data() == want.attachments(i).data());
  }
}

}  // namespace bud::test
