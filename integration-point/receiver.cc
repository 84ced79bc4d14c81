// See receiver.h.
#include "integration-point/receiver.h"

#include <fmt/format.h>

#include <algorithm>

namespace bud::ip {

namespace {
bool Contains(const google::protobuf::RepeatedPtrField<std::string>& list, const std::string& v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}
}  // namespace

Result<wire::RegistryEntry> CheckReceiver(RegistryClient& registry, const Orgnr& receiver,
                                          const std::string& process,
                                          const std::string& document_type) {
  RegistryClientLookup lookup(registry);
  return CheckReceiver(lookup, receiver, process, document_type);
}

Result<wire::RegistryEntry> CheckReceiver(RegistryLookup& registry, const Orgnr& receiver,
                                          const std::string& process,
                                          const std::string& document_type) {
  BUD_ASSIGN_OR_RETURN(wire::RegistryEntry entry, registry.Lookup(receiver));
  if (!Contains(entry.processes(), process)) {
    std::string accepted;
    for (const auto& p : entry.processes()) accepted += (accepted.empty() ? "" : ", ") + p;
    return Status(Code::kInvalidArgument,
                  fmt::format("receiver {} does not accept process '{}' (it accepts: {})",
                              receiver.wire(), process, accepted));
  }
  if (entry.document_types_size() > 0 && !Contains(entry.document_types(), document_type)) {
    return Status(Code::kInvalidArgument,
                  fmt::format("receiver {} does not accept document type '{}'", receiver.wire(),
                              document_type));
  }
  return entry;
}

}  // namespace bud::ip
