// Checking a receiver in the address registry before a message to it is taken in: shared by the
// outbox, the engine and the HTTP API.
#pragma once

#include <string>

#include "common/orgnr.h"
#include "common/registry_client.h"
#include "common/status.h"
#include "integration-point/engine/registry_lookup.h"
#include "proto/registry.pb.h"

namespace bud::ip {

// The receiver's entry when it exists and accepts the process and document type;
// kInvalidArgument saying what it accepts otherwise, kNotFound for an unknown organisation,
// kUnavailable when the registry does not answer (retry later).
Result<wire::RegistryEntry> CheckReceiver(RegistryClient& registry, const Orgnr& receiver,
                                          const std::string& process,
                                          const std::string& document_type);
Result<wire::RegistryEntry> CheckReceiver(RegistryLookup& registry, const Orgnr& receiver,
                                          const std::string& process,
                                          const std::string& document_type);

}  // namespace bud::ip
