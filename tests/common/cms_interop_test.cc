// Interoperability of the CMS payload with the standard tool: what crypto::CmsEncrypt produces,
// `openssl cms -decrypt` opens, for RSA and EC recipients; and what `openssl cms -encrypt`
// produces with AES-256-GCM, crypto::CmsDecrypt opens. Runs the real openssl command.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <random>
#include <string>

#include "common/crypto/envelope.h"
#include "common/fs.h"
#include "tests/common/agencies.h"

namespace bud::test {
namespace {

// Runs a shell command, its output to `log`; returns the exit status (-1 if it did not run).
int Run(const std::string& command, const std::string& log) {
  const std::string line = command + " >" + log + " 2>&1";
  const int rc = std::system(line.c_str());
  if (rc == -1 || !WIFEXITED(rc)) return -1;
  return WEXITSTATUS(rc);
}

std::string ReadOrEmpty(const std::string& path) {
  auto r = ReadFile(path);
  return r.ok() ? *r : "";
}

std::string Plaintext() {
  // Binary on purpose: CR, LF, NUL and every other byte must survive (-binary, CMS_BINARY).
  std::string p = "linje 1\r\nlinje 2\n\0slutt";
  std::mt19937 rng(99);
  for (int i = 0; i < 5000; ++i) p += static_cast<char>(rng() & 0xff);
  return p;
}

TEST_CASE("openssl cms -decrypt opens what CmsEncrypt sealed", "[envelope][cms][interop]") {
  TempDir dir;
  REQUIRE(Run("openssl version", dir / "version.log") == 0);

  const Agencies& pki = TestAgencies();
  const KeyType enc = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
  CAPTURE(enc);
  const Leaf& recipient = pki.b.Encryption(enc);
  recipient.WriteFiles(dir / "key.pem", dir / "cert.pem");

  const std::string plain = Plaintext();
  auto der = crypto::CmsEncrypt(plain, recipient.cert.get());
  INFO(der.status().ToString());
  REQUIRE(der.ok());
  REQUIRE(WriteFileSynced(dir / "payload.der", *der).ok());

  const std::string decrypt = "openssl cms -decrypt -binary -inform DER -in " +
                              (dir / "payload.der") + " -recip " + (dir / "cert.pem") + " -inkey " +
                              (dir / "key.pem") + " -out " + (dir / "out.bin");
  const int rc = Run(decrypt, dir / "decrypt.log");
  INFO("openssl said: " << ReadOrEmpty(dir / "decrypt.log"));
  REQUIRE(rc == 0);
  auto out = ReadFile(dir / "out.bin");
  REQUIRE(out.ok());
  CHECK(out->size() == plain.size());
  CHECK(*out == plain);

  // The standard tool also sees AuthEnvelopedData, and refuses someone else's key.
  REQUIRE(Run("openssl cms -cmsout -print -inform DER -in " + (dir / "payload.der"),
              dir / "print.log") == 0);
  CHECK_THAT(ReadOrEmpty(dir / "print.log"),
             Catch::Contains("id-smime-ct-authEnvelopedData") && Catch::Contains("aes-256-gcm"));
  pki.c.Encryption(enc).WriteFiles(dir / "c-key.pem", dir / "c-cert.pem");
  const std::string wrong = "openssl cms -decrypt -binary -inform DER -in " +
                            (dir / "payload.der") + " -recip " + (dir / "c-cert.pem") + " -inkey " +
                            (dir / "c-key.pem") + " -out " + (dir / "wrong.bin");
  CHECK(Run(wrong, dir / "wrong.log") != 0);
}

TEST_CASE("CmsDecrypt opens what openssl cms -encrypt sealed with AES-256-GCM",
          "[envelope][cms][interop]") {
  TempDir dir;
  const Agencies& pki = TestAgencies();
  const KeyType enc = GENERATE(KeyType::kRsa2048, KeyType::kEcP256);
  CAPTURE(enc);
  const Leaf& recipient = pki.b.Encryption(enc);
  recipient.WriteFiles(dir / "key.pem", dir / "cert.pem");
  const std::string plain = Plaintext();
  REQUIRE(WriteFileSynced(dir / "plain.bin", plain).ok());

  const std::string encrypt = "openssl cms -encrypt -binary -aes-256-gcm -outform DER -in " +
                              (dir / "plain.bin") + " -out " + (dir / "payload.der") + " " +
                              (dir / "cert.pem");
  const int rc = Run(encrypt, dir / "encrypt.log");
  INFO("openssl said: " << ReadOrEmpty(dir / "encrypt.log"));
  REQUIRE(rc == 0);
  auto der = ReadFile(dir / "payload.der");
  REQUIRE(der.ok());
  auto out = crypto::CmsDecrypt(*der, recipient.key.get(), recipient.cert.get());
  INFO(out.status().ToString());
  REQUIRE(out.ok());
  CHECK(*out == plain);
}

}  // namespace
}  // namespace bud::test
