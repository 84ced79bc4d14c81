// The registry as the engine's parts see it: one lookup by organisation. Injected so that the
// sender and the receiver run in tests against entries the test holds.
#pragma once

#include "common/orgnr.h"
#include "common/registry_client.h"
#include "common/status.h"
#include "proto/registry.pb.h"

namespace bud::ip {

class RegistryLookup {
 public:
  virtual ~RegistryLookup() = default;
  // The entry; kNotFound for an unknown organisation, kUnavailable when the registry does not
  // answer (retry later).
  virtual Result<wire::RegistryEntry> Lookup(const Orgnr& org) = 0;
  // The same, and whether the entry was served stale (from the cache past its time, because no
  // registry answered; common/registry_client.h).
  virtual Result<wire::RegistryEntry> LookupNoting(const Orgnr& org, bool* stale) {
    *stale = false;
    return Lookup(org);
  }
};

// The real one: the address registry over ZeroMQ (with its cache).
class RegistryClientLookup final : public RegistryLookup {
 public:
  explicit RegistryClientLookup(RegistryClient& client) : client_(client) {}
  Result<wire::RegistryEntry> Lookup(const Orgnr& org) override { return client_.Lookup(org); }
  Result<wire::RegistryEntry> LookupNoting(const Orgnr& org, bool* stale) override {
    return client_.Lookup(org, stale);
  }

 private:
  RegistryClient& client_;
};

}  // namespace bud::ip
