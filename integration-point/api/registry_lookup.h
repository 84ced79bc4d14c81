// The address registry as the HTTP API's services ask it: an interface, so the services can be
// tested over a table of real registry entries; RegistryClientLookup is the one the running
// integration point uses (its own RegistryClient, behind a mutex: a ZeroMQ socket is not shared
// between threads).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "common/orgnr.h"
#include "common/registry_client.h"
#include "common/status.h"
#include "proto/registry.pb.h"

namespace bud::ip::api {

class RegistryLookup {
 public:
  virtual ~RegistryLookup() = default;
  // kNotFound when the registry has no such organisation; kUnavailable when it does not answer.
  virtual Result<wire::RegistryEntry> Lookup(const Orgnr& org) = 0;
};

class RegistryClientLookup : public RegistryLookup {
 public:
  explicit RegistryClientLookup(std::unique_ptr<RegistryClient> client)
      : client_(std::move(client)) {}
  Result<wire::RegistryEntry> Lookup(const Orgnr& org) override;

 private:
  std::mutex mu_;
  std::unique_ptr<RegistryClient> client_;
};

// The receiver's entry when it exists and accepts the process and document type;
// kInvalidArgument saying what it accepts, or that it is not in the registry, otherwise;
// kUnavailable when the registry does not answer. (The messages are those of receiver.h's
// CheckReceiver, which the engine and the outbox use.)
Result<wire::RegistryEntry> CheckReceiver(RegistryLookup& registry, const Orgnr& receiver,
                                          const std::string& process,
                                          const std::string& document_type);

}  // namespace bud::ip::api
