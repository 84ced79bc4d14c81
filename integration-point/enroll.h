// `bud-ip enroll`: everything an agency makes on its own machine before it can be registered.
//
// Enroll writes, into a new or empty-enough folder, the agency's two private keys (signing and
// encryption, mode 0600) with a certificate signing request (CSR) for each, its CURVE key pair
// (mode 0600) and a ready ip.toml that points at them, and returns the text telling the operator
// of the agency what to send to the registry operator and what to do next. Private keys never
// leave the folder: the CSRs carry the public keys, and the subject the certificate checks
// expect (C=NO, O=<name>, serialNumber=<orgnr>, CN=<name> signing|encryption, as
// scripts/dev-ca and Norwegian enterprise certificates have it).
//
// Layout of `out_dir` (the operator sends back the *.pem files and the CA certificate):
//   ip.toml                          the config (paths relative to it)
//   keys/signing.key, signing.csr    -> keys/signing.pem from the CA
//   keys/encryption.key, .csr        -> keys/encryption.pem from the CA
//   keys/curve.key                   CURVE key pair; the public key goes to the registry
//   ca.pem                           the trust anchor, from the registry operator
//   ip.db, outbox/, inbox/           unless state_dir puts them elsewhere
#pragma once

#include <string>

#include "common/status.h"

namespace bud::ip {

struct EnrollRequest {
  std::string orgnr;                        // 9 digits (or 0192:<9 digits>), mod-11 checked
  std::string name;                         // the organisation's name; "" = "Organisation <orgnr>"
  std::string out_dir;                      // created when missing
  std::string state_dir;                    // store, outbox and inbox; "" = out_dir
  std::string signing_key_type = "rsa";     // rsa, ec or ed25519
  std::string encryption_key_type = "rsa";  // rsa or ec
  // From the registry operator, when already known; placeholders in ip.toml otherwise.
  std::string registry_endpoint;
  std::string registry_server_key;
  std::string broker_endpoint;
  std::string broker_server_key;
};

// Makes the files. Refuses (kAlreadyExists, writing nothing) when any of them exists already: a
// key is never overwritten. On a failure half-way the files made so far are removed again.
// Returns what to print: the files, what to send to the registry operator (orgnr, name, both
// CSRs with their SHA-256, the CURVE public key) and the next steps.
Result<std::string> Enroll(const EnrollRequest& request);

}  // namespace bud::ip
