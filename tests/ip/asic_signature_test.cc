// The pop container as eFormidling's ASiC-E (integration-point/asic.h): the root manifest.xml,
// META-INF/ASiCManifest.xml with each data object's SHA-256, and a detached CAdES signature over
// it that the openssl binary verifies (and refuses once anything signed is changed).
#include <fmt/format.h>
#include <zip.h>

#include <catch2/catch.hpp>
#include <map>

#include "common/crypto/openssl.h"
#include "common/fs.h"
#include "integration-point/asic.h"
#include "tests/integration/harness.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace bud::ip {
namespace {

std::string ReadAll(AsicStream& zip) {
  std::string out;
  for (;;) {
    auto piece = zip.Read(out.size(), 1 << 16);
    REQUIRE(piece.ok());
    if (piece->empty()) return out;
    out.append(*piece);
  }
}

// name -> data of every entry, and the names in order.
std::map<std::string, std::string> Unzip(const std::string& bytes,
                                         std::vector<std::string>* order = nullptr) {
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &err);
  REQUIRE(src != nullptr);
  zip_t* za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err);
  REQUIRE(za != nullptr);
  std::map<std::string, std::string> out;
  for (zip_int64_t i = 0; i < zip_get_num_entries(za, 0); ++i) {
    zip_stat_t st;
    REQUIRE(zip_stat_index(za, static_cast<zip_uint64_t>(i), 0, &st) == 0);
    zip_file_t* f = zip_fopen_index(za, static_cast<zip_uint64_t>(i), 0);
    REQUIRE(f != nullptr);
    std::string data(st.size, '\0');
    CHECK(zip_fread(f, data.data(), st.size) == static_cast<zip_int64_t>(st.size));
    zip_fclose(f);
    if (order) order->push_back(st.name);
    out[st.name] = std::move(data);
  }
  zip_close(za);
  return out;
}

std::string Base64(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  out.resize(static_cast<size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                                 reinterpret_cast<const unsigned char*>(raw.data()),
                                                 raw.size())));
  return out;
}

// `openssl cms -verify` of the extracted signature over the extracted ASiCManifest.
bud::test::CommandResult OpensslVerify(const bud::test::TempDir& dir, const std::string& signature,
                                       const std::string& manifest, const std::string& ca_file) {
  REQUIRE(WriteFileSynced(dir / "signature.p7s", signature).ok());
  REQUIRE(WriteFileSynced(dir / "ASiCManifest.xml", manifest).ok());
  return bud::test::RunCommand({"/usr/bin/openssl", "cms", "-verify", "-binary", "-inform", "DER",
                                "-in", dir / "signature.p7s", "-content", dir / "ASiCManifest.xml",
                                "-CAfile", ca_file, "-purpose", "any", "-out",
                                dir / "verified.xml"});
}

TEST_CASE("the ASiC-E is signed over its ASiCManifest and openssl verifies it",
          "[ip][asic][signature]") {
  bud::test::TempDir dir;
  bud::test::TestCa ca;
  ca.WriteCertFile(dir / "ca.pem");
  auto type = GENERATE(bud::test::KeyType::kEcP256, bud::test::KeyType::kRsa2048);
  bud::test::Leaf signer = ca.IssueSigning(type, "910075918");
  // One attachment in memory, one in a file (as a streamed message's are).
  const std::string on_disk(200000, 'x');
  REQUIRE(WriteFileSynced(dir / "kart.tif", on_disk).ok());
  std::vector<AsicFile> files{{"vedlegg æøå.txt", "text/plain", 0, 0, "", "Vedlegg & <annet>\n"},
                              {"test.pdf", "application/pdf", 0, 0, "", "%PDF-1.7 hoveddokument"},
                              {"kart.tif", "image/tiff", on_disk.size(), 0, dir / "kart.tif", ""}};
  auto crc = FileCrc32(dir / "kart.tif");
  REQUIRE(crc.ok());
  files[2].crc32 = *crc;
  AsicOptions o{"0192:910075918", "0192:910076787", "test.pdf", signer.key.get(),
                signer.cert.get()};
  auto stream = AsicStream::Open(files, 1798761600000, &o);
  INFO((stream.ok() ? "" : stream.status().ToString()));
  REQUIRE(stream.ok());
  std::vector<std::string> order;
  auto entries = Unzip(ReadAll(**stream), &order);
  CHECK(order == std::vector<std::string>{"mimetype", "manifest.xml", "vedlegg æøå.txt", "test.pdf",
                                          "kart.tif", "META-INF/manifest.xml",
                                          "META-INF/ASiCManifest.xml", "META-INF/signature.p7s"});
  // The root manifest names the parties and the main document.
  const std::string& root = entries["manifest.xml"];
  CHECK_THAT(root, Catch::Contains(R"(<hoveddokument href="test.pdf" mime="application/pdf">)"));
  CHECK_THAT(root, Catch::Contains(">0192:910076787</organisasjon></mottaker>"));
  CHECK_THAT(root, Catch::Contains(">0192:910075918</organisasjon></avsender>"));
  // Every data object with its SHA-256, the file read from disk too.
  const std::string& asic = entries["META-INF/ASiCManifest.xml"];
  for (const auto& name : {"manifest.xml", "vedlegg æøå.txt", "test.pdf", "kart.tif"}) {
    CAPTURE(name);
    const std::string ref = fmt::format("URI=\"{}\"", name);
    const size_t at = asic.find(ref);
    REQUIRE(at != std::string::npos);
    CHECK(
        asic.find("<ds:DigestValue>" + Base64(crypto::Sha256(entries[name])) + "</ds:DigestValue>",
                  at) != std::string::npos);
  }
  CHECK_THAT(asic, Catch::Contains(R"(<asic:SigReference URI="META-INF/signature.p7s")"));

  auto verified = OpensslVerify(dir, entries["META-INF/signature.p7s"], asic, dir / "ca.pem");
  INFO(verified.err);
  CHECK(verified.exit_code == 0);
  CHECK_THAT(verified.err, Catch::Contains("Verification successful"));

  // A changed digest (a swapped attachment) no longer verifies, nor a signature under another CA.
  std::string tampered = asic;
  tampered[tampered.find("<ds:DigestValue>") + 16] ^= 1;
  auto refused = OpensslVerify(dir, entries["META-INF/signature.p7s"], tampered, dir / "ca.pem");
  CHECK(refused.exit_code != 0);
  bud::test::TestCa other("Some other CA");
  other.WriteCertFile(dir / "other.pem");
  auto foreign = OpensslVerify(dir, entries["META-INF/signature.p7s"], asic, dir / "other.pem");
  CHECK(foreign.exit_code != 0);
}

TEST_CASE("the ASiC-E without a key has the root manifest but no signature", "[ip][asic]") {
  std::vector<AsicFile> files{{"a.txt", "text/plain", 0, 0, "", "a"},
                              {"b.txt", "text/plain", 0, 0, "", "b"}};
  AsicOptions o{"0192:910075918", "0192:910076787", "", nullptr, nullptr};
  auto stream = AsicStream::Open(files, 0, &o);
  REQUIRE(stream.ok());
  auto entries = Unzip(ReadAll(**stream));
  CHECK(entries.count("META-INF/signature.p7s") == 0);
  CHECK(entries.count("META-INF/ASiCManifest.xml") == 0);
  // No main document named: the first file.
  CHECK_THAT(entries["manifest.xml"], Catch::Contains(R"(<hoveddokument href="a.txt")"));
}

TEST_CASE("an Ed25519 key cannot sign a CMS signature here, and says so", "[ip][asic]") {
  bud::test::TestCa ca;
  bud::test::Leaf ed = ca.IssueSigning(bud::test::KeyType::kEd25519, "910075918");
  CHECK_FALSE(CanSignAsic(ed.key.get()));
  auto signed_ = SignDetached("x", ed.key.get(), ed.cert.get());
  REQUIRE_FALSE(signed_.ok());
  CHECK(signed_.status().code() == Code::kUnsupported);
  CHECK_THAT(signed_.status().message(), Catch::Contains("Ed25519"));
}

TEST_CASE("a key that cannot sign is an error, not an unsigned container", "[ip][asic]") {
  bud::test::TestCa ca;
  bud::test::Leaf signer = ca.IssueSigning(bud::test::KeyType::kEcP256, "910075918");
  bud::test::Leaf stranger = ca.IssueSigning(bud::test::KeyType::kEcP256, "910075918");
  std::vector<AsicFile> files{{"a.txt", "text/plain", 0, 0, "", "a"}};
  // The key does not belong to the certificate.
  AsicOptions o{"0192:910075918", "0192:910076787", "", stranger.key.get(), signer.cert.get()};
  auto stream = AsicStream::Open(files, 0, &o);
  REQUIRE_FALSE(stream.ok());
  CHECK_THAT(stream.status().message(), Catch::Contains("cannot sign the ASiC manifest"));
}

}  // namespace
}  // namespace bud::ip
