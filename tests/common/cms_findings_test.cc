// Regression tests for fuzzer findings in the CMS wrappers (docs/fuzzing.md, "Findings"): the
// saved inputs are replayed here with the fuzz targets' fixed identities, so the ordinary test
// run guards the fixes without clang.
#include <openssl/err.h>

#include <catch2/catch.hpp>
#include <string>

#include "common/crypto/envelope.h"
#include "tests/fuzz/fuzz_identity.h"
#include "tests/integration/harness.h"

namespace bud {

TEST_CASE("CmsDecrypt leaves no OpenSSL error queued when a recipient info fails before one "
          "succeeds (fuzz_envelope-cms-decrypt-stale-errors)",
          "[crypto][fuzz]") {
  const fuzz::Identity& id = fuzz::FixedIdentity();
  const std::string bytes = test::ReadFile(
      std::string(BUD_SOURCE_DIR) + "/tests/fuzz/findings/fuzz_envelope-cms-decrypt-stale-errors");
  ERR_clear_error();
  auto plain = crypto::CmsDecrypt(bytes, id.receiver.encryption_key.get(),
                                  id.receiver.encryption_cert.get());
  (void)plain;  // either outcome is fine; a stale error would surface in the next message
  CHECK(ERR_peek_error() == 0);
}

}  // namespace bud

namespace bud {

// fuzz_envelope found that a key-agreement recipient info naming AES key wrap with padding
// (RFC 5649) and a wrapped key that does not unwrap makes OpenSSL 3.0 wipe 8 bytes past a heap
// buffer (CRYPTO_128_unwrap_pad). The finding is an envelope whose payload is such a CMS; the
// fuzz target re-signs it, so only the payload matters here. Without the check the bytes would
// reach CMS_decrypt (and a valgrind run of this test would report the invalid write).
TEST_CASE("CmsDecrypt refuses key agreement with AES key wrap with padding before OpenSSL "
          "unwraps it (fuzz_envelope-kari-unwrap-pad-overflow)",
          "[crypto][fuzz]") {
  const fuzz::Identity& id = fuzz::FixedIdentity();
  const std::string bytes = test::ReadFile(
      std::string(BUD_SOURCE_DIR) +
      "/tests/fuzz/findings/fuzz_envelope-kari-unwrap-pad-overflow");
  wire::Envelope env;
  REQUIRE(env.ParseFromString(bytes));
  auto plain = crypto::CmsDecrypt(env.payload(), id.receiver.encryption_key.get(),
                                  id.receiver.encryption_cert.get());
  REQUIRE_FALSE(plain.ok());
  CHECK(plain.status().code() == Code::kDecryptFailed);
  CHECK_THAT(plain.status().message(), Catch::Contains("id-aes") &&
                                           Catch::Contains("AES key wrap without padding only"));
  CHECK(ERR_peek_error() == 0);
}

}  // namespace bud
