// Pop through the API inbox (integration-point/api/api_inbox.h) with the point's own signing key
// configured: the container carries the root manifest.xml naming the SBD's main document and a
// signature that the openssl binary verifies over the extracted ASiCManifest; DELETE answers
// the message's SBD.

#include <catch2/catch.hpp>
#include <map>

#include "common/fs.h"
#include "tests/integration/harness.h"
#include "tests/ip/api_fixture.h"
#include "tests/support/test_pki.h"
#include "tests/support/zip_read.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
const std::string kId = "d0000000-0000-4000-8000-0000000000d1";

TEST_CASE("pop answers an ASiC-E signed by this point that openssl verifies", "[ip][api][asic]") {
  ApiFixture f;
  bud::test::TestCa ca;
  ca.WriteCertFile(f.dir / "ca.pem");
  bud::test::Leaf signing = ca.IssueSigning(bud::test::KeyType::kEcP256, kMe);
  signing.WriteFiles(f.dir / "signing.key", f.dir / "signing.pem");
  f.config.keys.signing_key = f.dir / "signing.key";
  f.config.keys.signing_cert = f.dir / "signing.pem";

  MessageRow m;
  m.message_id = kId;
  m.conversation_id = "c0000000-0000-4000-8000-0000000000d1";
  m.sender = std::string("0192:") + kReceiver;
  m.receiver = std::string("0192:") + kMe;
  m.process = kProcess;
  m.document_type = kStandard;
  m.created_ms = f.now - 1000;
  m.expires_ms = f.now + 3600 * 1000;
  m.state = WorkState::kApi;
  wire::Payload p;
  p.set_message_id(kId);
  json sbd = ExampleSbd(kId, kMe);
  sbd["arkivmelding"]["hoveddokument"] = "vedtak.pdf";
  p.set_metadata_json(sbd.dump());
  for (const auto& [name, data] : {std::pair<std::string, std::string>{"vedlegg.txt", "annex"},
                                   {"vedtak.pdf", "%PDF-1.7 vedtak"}}) {
    auto* a = p.add_attachments();
    a->set_name(name);
    a->set_media_type(name.ends_with(".pdf") ? "application/pdf" : "text/plain");
    a->set_data(data);
  }
  p.SerializeToString(&m.payload);
  REQUIRE(f.store
              ->Run([&](PointStore& s) {
                return s.incoming.RecordIncoming(m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT,
                                                 "", m.created_ms);
              })
              .ok());
  IncomingFilter only;
  only.message_id = kId;
  auto peeked = f.inbox->PeekMatching(only);
  REQUIRE(peeked.ok());
  REQUIRE(*peeked);
  auto zip = f.inbox->Pop(kId);
  REQUIRE(zip.ok());
  std::string bytes;
  for (;;) {
    auto piece = (*zip)->Read(bytes.size(), 1 << 16);
    REQUIRE(piece.ok());
    if (piece->empty()) break;
    bytes.append(*piece);
  }
  auto entries = bud::test::ZipEntries(bytes);
  CHECK_THAT(entries["manifest.xml"],
             Catch::Contains(R"(<hoveddokument href="vedtak.pdf" mime="application/pdf">)"));
  CHECK_THAT(entries["manifest.xml"], Catch::Contains("0192:" + std::string(kReceiver)));
  REQUIRE(entries.count("META-INF/signature.p7s") == 1);
  REQUIRE(WriteFileSynced(f.dir / "signature.p7s", entries["META-INF/signature.p7s"]).ok());
  REQUIRE(WriteFileSynced(f.dir / "ASiCManifest.xml", entries["META-INF/ASiCManifest.xml"]).ok());
  auto verified =
      bud::test::RunCommand({"/usr/bin/openssl", "cms", "-verify", "-binary", "-inform", "DER",
                             "-in", f.dir / "signature.p7s", "-content", f.dir / "ASiCManifest.xml",
                             "-CAfile", f.dir / "ca.pem", "-purpose", "any", "-out", "/dev/null"});
  INFO(verified.err);
  CHECK(verified.exit_code == 0);
  // The signer is this point's signing certificate.
  auto signer = bud::test::RunCommand({"/usr/bin/openssl", "cms", "-cmsout", "-print", "-inform",
                                       "DER", "-in", f.dir / "signature.p7s"});
  CHECK(signer.exit_code == 0);
  CHECK_THAT(signer.out, Catch::Contains(kMe));

  // DELETE answers the SBD and the message is done.
  auto deleted = f.inbox->DeleteReturningSbd(kId);
  REQUIRE(deleted.ok());
  CHECK((*deleted)["standardBusinessDocumentHeader"]["documentIdentification"]
                  ["instanceIdentifier"] == kId);
  CHECK(f.wakes == 1);
  auto again = f.inbox->DeleteReturningSbd(kId);
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == Code::kNotFound);

  // A signing key that cannot be read: pop fails with a reason, never an unsigned container.
  f.config.keys.signing_key = f.dir / "missing.key";
  REQUIRE(f.store
              ->Run([&](PointStore& s) {
                MessageRow n = m;
                n.message_id = "d0000000-0000-4000-8000-0000000000d2";
                return s.incoming.RecordIncoming(n, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT,
                                                 "", m.created_ms);
              })
              .ok());
  REQUIRE(f.inbox->PeekMatching({}).ok());
  auto refused = f.inbox->Pop("d0000000-0000-4000-8000-0000000000d2");
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.status().message(), Catch::Contains("cannot sign the container"));
}

}  // namespace
}  // namespace bud::ip::api::test
