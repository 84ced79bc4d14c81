// The integration point's own identity: its private keys, its certificates and the trust anchor,
// loaded and checked together, by `run` at start and by `--check-config`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/crypto/certs.h"
#include "common/crypto/openssl.h"
#include "common/status.h"
#include "integration-point/config.h"

namespace bud::ip {

struct Identity {
  crypto::PKey signing_key, encryption_key;
  crypto::Cert signing_cert, encryption_cert;
  crypto::PKey next_encryption_key;  // rotation: empty when none
  crypto::Cert next_encryption_cert;
  std::unique_ptr<crypto::TrustStore> trust;
  // Problems that do not stop the point, for the start-up log: with keys.crl_dir set, an own
  // certificate whose revocation cannot be checked now (no current CRL). A revoked own
  // certificate is an error.
  std::vector<std::string> warnings;
};

// Loads the [keys] of `config` and checks them as the exchange will: private keys are not
// readable by group or others and parse, each belongs to its certificate, and both certificates
// chain to the trust anchor, are valid now, are not revoked (keys.crl_dir), allow their use and
// carry this organisation's number. Every error starts with the config key it is about
// ("keys.signing_key: ...").
Result<Identity> LoadIdentity(const Config& config);

}  // namespace bud::ip
