// `bud-registry health`: whether the running registry can do its job, for a supervisor or a load
// balancer's script check. The registry has no HTTP server; the check is a HealthRequest on its
// own socket (docs/protocol.md, "Registry"), answered by the serving process after probing its
// store (RegistryStore::Probe). So one answer says both that the process serves and that its
// store can be read and written.
//
// The check connects where the registry publishes its endpoint ([registry] endpoint_file, else
// [registry] listen) with the registry's own CURVE key pair, which the registry's ZAP admits as
// itself; it needs the config (and the key file) of the registry it asks.
#pragma once

#include <cstdint>
#include <string>
#include <zmq.hpp>

#include "address-registry/config.h"

namespace bud::registry {

struct HealthAnswer {
  bool healthy = false;
  std::string json;  // {"status": "UP"|"DOWN", "endpoint", "store", "problems": [...]}
};

// Asks and waits at most `timeout_ms`; never throws.
HealthAnswer AskHealth(zmq::context_t& ctx, const Config& config, int64_t timeout_ms);

}  // namespace bud::registry
