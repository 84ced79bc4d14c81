// See registry_lookup.h.
#include "integration-point/api/registry_lookup.h"

#include <fmt/format.h>

#include "integration-point/receiver.h"

namespace bud::ip::api {

Result<wire::RegistryEntry> SharedRegistryLookup::Lookup(const Orgnr& org) {
  std::lock_guard lock(mu_);
  return client_->Lookup(org);
}

Result<wire::RegistryEntry> SharedRegistryLookup::LookupNoting(const Orgnr& org, bool* stale) {
  std::lock_guard lock(mu_);
  return client_->Lookup(org, stale);
}

Result<wire::RegistryEntry> CheckReceiver(RegistryLookup& registry, const Orgnr& receiver,
                                          const std::string& process,
                                          const std::string& document_type) {
  Result<wire::RegistryEntry> entry =
      ip::CheckReceiver(registry, receiver, process, document_type);
  if (!entry.ok() && entry.status().code() == Code::kNotFound) {
    return Status(Code::kInvalidArgument,
                  fmt::format("receiver {} is not in the address registry", receiver.wire()));
  }
  return entry;
}

}  // namespace bud::ip::api
