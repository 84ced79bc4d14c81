// Looking organisations up in the address registry, with a cache. Used by integration points
// (receivers' and senders' entries) and by the broker (whose CURVE key is this?).
//
// Operation: owned by one thread; it owns its DEALER socket. A lookup blocks for at most the
// configured timeout. A reply that does not come in time makes the socket be recreated (so a
// late reply cannot be taken for the next request's) and returns kUnavailable.
// Found entries are cached for cache_ms; NOT_FOUND answers for 2 s only, so a newly
// registered organisation is found soon.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "common/orgnr.h"
#include "common/status.h"
#include "common/wire/curve.h"
#include "proto/registry.pb.h"

namespace bud {

class RegistryClient {
 public:
  // `curve`: our key pair and the registry's public key; empty server_key = no CURVE.
  RegistryClient(zmq::context_t& ctx, std::string endpoint, int64_t timeout_ms, int64_t cache_ms,
                 std::optional<wire::CurveKeyPair> curve = std::nullopt,
                 std::string server_key = "");
  // kNotFound when the registry has no such organisation; kUnavailable when it does not answer.
  Result<wire::RegistryEntry> Lookup(const Orgnr& org);
  // The entry whose CURVE public key is `z85_key`.
  Result<wire::RegistryEntry> LookupByKey(const std::string& z85_key);

 private:
  Result<wire::RegistryEntry> Ask(wire::RegistryRequest& req, const std::string& cache_key,
                                  const std::string& what);
  void Reconnect();
  struct Cached {
    std::optional<wire::RegistryEntry> entry;  // empty: NOT_FOUND
    std::string error;
    int64_t until_mono;
  };
  zmq::context_t& ctx_;
  std::string endpoint_;
  int64_t timeout_ms_;
  int64_t cache_ms_;
  std::optional<wire::CurveKeyPair> curve_;
  std::string server_key_;
  uint64_t next_id_ = 1;
  std::unique_ptr<zmq::socket_t> sock_;
  std::map<std::string, Cached> cache_;
};

}  // namespace bud
