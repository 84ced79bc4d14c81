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
