// Admin verbs of bud-registry (add, remove, list, crl-urls), working on the store directly.
#pragma once

#include <string>
#include <vector>

#include "address-registry/config.h"
#include "common/status.h"
#include "proto/registry.pb.h"

namespace bud::registry {

struct AddRequest {
  std::string orgnr;
  std::string name;
  std::string signing_cert_file;
  std::string encryption_cert_file;
  std::string next_signing_cert_file;     // optional (rotation)
  std::string next_encryption_cert_file;  // optional (rotation)
  std::string curve_public_key;  // Z85, 40 characters
  // The organisation's brokers, in the order to try them (repeatable --broker); may be empty.
  std::vector<std::string> broker_endpoints;
  std::vector<std::string> processes;
  std::vector<std::string> document_types;
};

// Validates (orgnr, both certificates against the trust anchor with their usage and the
// entry's organisation number, not revoked when registry.crl_dir is set, CURVE key) and stores
// the entry. Every refusal says why.
Result<wire::RegistryEntry> AddEntry(const Config& config, const AddRequest& req);
Status RemoveEntry(const Config& config, const std::string& orgnr);
// `set-brokers`: replaces the broker endpoints of an existing entry (an empty list removes them)
// and stamps it updated; kNotFound when the organisation is not registered. Each endpoint must be
// a tcp:// (or ipc://) endpoint, at most 16 of them, none twice.
Result<wire::RegistryEntry> SetBrokers(const Config& config, const std::string& orgnr,
                                       const std::vector<std::string>& endpoints);
// Checks a list of broker endpoints as SetBrokers and AddEntry do.
Status CheckBrokerEndpoints(const std::vector<std::string>& endpoints);
// Sets both fields of `entry` from `endpoints`: broker_endpoints, and broker_endpoint (the first,
// for readers older than the list).
void SetBrokerEndpoints(wire::RegistryEntry& entry, const std::vector<std::string>& endpoints);
// A table, or JSON when `json`.
Result<std::string> ListEntries(const Config& config, bool json);

// The CRL Distribution Point URLs of every certificate in the registry (current and next,
// signing and encryption), sorted and unique: what an operator tool must fetch for the CRL
// folders of the registry and the integration points. `notes` gets one line per certificate that
// names none (its issuer's CRL has to be found another way).
struct CrlUrls {
  std::vector<std::string> urls;
  std::vector<std::string> notes;
};
Result<CrlUrls> ListCrlUrls(const Config& config);

}  // namespace bud::registry
