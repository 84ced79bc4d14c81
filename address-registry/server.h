// The registry server: a ZeroMQ ROUTER answering lookups (docs/protocol.md, "Registry").
//
// Operation: one thread owns the socket and the store; Run() polls until StopRequested().
// Every malformed request is answered BAD_REQUEST (or dropped when it has no routing frame);
// none ends the process.
#pragma once

#include <memory>
#include <string>
#include <zmq.hpp>

#include "address-registry/config.h"
#include "address-registry/store.h"

namespace bud::registry {

class Server {
 public:
  Server(const Config& config, zmq::context_t& ctx);
  // Binds and serves until StopRequested().
  Status Run();

 private:
  wire::RegistryReply Handle(const zmq::message_t& request);
  const Config& config_;
  zmq::context_t& ctx_;
  std::unique_ptr<RegistryStore> store_;
};

}  // namespace bud::registry
