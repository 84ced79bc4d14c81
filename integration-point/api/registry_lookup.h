// The address registry as the HTTP API's services ask it: through the point's RegistryLookup
// (engine/registry_lookup.h), so the services can be tested over a table of real registry
// entries. SharedRegistryLookup is the one the running integration point's API uses: its own
// RegistryClient behind a mutex (the HTTP threads share it; a ZeroMQ socket is used by one
// thread at a time).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "common/orgnr.h"
#include "common/registry_client.h"
#include "common/status.h"
#include "integration-point/engine/registry_lookup.h"
#include "proto/registry.pb.h"

namespace bud::ip::api {

class SharedRegistryLookup final : public RegistryLookup {
 public:
  explicit SharedRegistryLookup(std::unique_ptr<RegistryClient> client)
      : client_(std::move(client)) {}
  Result<wire::RegistryEntry> Lookup(const Orgnr& org) override;
  Result<wire::RegistryEntry> LookupNoting(const Orgnr& org, bool* stale) override;

 private:
  std::mutex mu_;
  std::unique_ptr<RegistryClient> client_;
};

// receiver.h's CheckReceiver (the receiver's entry when it exists and accepts the process and
// document type, kInvalidArgument saying what it accepts otherwise, kUnavailable when the
// registry does not answer), with an unknown receiver as kInvalidArgument too: to an archive
// system that is a bad request.
Result<wire::RegistryEntry> CheckReceiver(RegistryLookup& registry, const Orgnr& receiver,
                                          const std::string& process,
                                          const std::string& document_type);

}  // namespace bud::ip::api
