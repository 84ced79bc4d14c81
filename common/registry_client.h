// Looking organisations up in the address registry, with a cache. Used by integration points
// (receivers' and senders' entries) and by the broker (whose CURVE key is this?).
//
// Operation: owned by one thread; it owns one DEALER socket, connected to one registry endpoint
// at a time. A request goes to the current endpoint; when it does not answer within the timeout
// the socket is recreated (so a late reply cannot be taken for the next request's) on the next
// endpoint of the list and the request is asked again there, until every endpoint has been tried
// once. The endpoint that answered stays the current one. So a lookup blocks for at most
// timeout x endpoints.
//
// Cache: found entries are fresh for cache_ms; NOT_FOUND answers for 2 s only, so a newly
// registered organisation is found soon. When no registry answers (every endpoint timed out or
// answered INTERNAL), a found entry is still served for stale_ms after its fresh time ran out
// ("stale": counted, and said by Lookup's `stale`), so a registry outage does not stop the
// exchange between organisations already known. A NOT_FOUND answer removes the entry at once:
// an organisation removed from the registry is never served from the cache.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/orgnr.h"
#include "common/status.h"
#include "common/wire/curve.h"
#include "proto/registry.pb.h"

namespace bud {

// The broker endpoints of an entry: broker_endpoints, or the single broker_endpoint of an entry
// written before the list existed; empty when it names none.
std::vector<std::string> BrokerEndpointsOf(const wire::RegistryEntry& entry);

struct RegistryClientOptions {
  std::vector<std::string> endpoints;  // tried in this order; at least one
  int64_t timeout_ms = 3000;           // per endpoint and request
  int64_t cache_ms = 300000;           // a found entry is fresh this long
  int64_t stale_ms = 0;                // ... and served this much longer when no registry answers
  std::optional<wire::CurveKeyPair> curve;  // our key pair; none (or no server_key) = no CURVE
  std::string server_key;                   // the registries' CURVE public key (Z85)
};

class RegistryClient {
 public:
  explicit RegistryClient(zmq::context_t& ctx, RegistryClientOptions options);
  // One endpoint, no stale serving (as before lists).
  RegistryClient(zmq::context_t& ctx, std::string endpoint, int64_t timeout_ms, int64_t cache_ms,
                 std::optional<wire::CurveKeyPair> curve = std::nullopt,
                 std::string server_key = "");
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;

  // kNotFound when the registry has no such organisation; kUnavailable when no registry answers
  // and no entry may be served from the cache. `stale` (when given) is set true when the entry
  // came from the cache past its fresh time because no registry answered.
  Result<wire::RegistryEntry> Lookup(const Orgnr& org, bool* stale = nullptr);
  // The entry whose CURVE public key is `z85_key`; the same rules.
  Result<wire::RegistryEntry> LookupByKey(const std::string& z85_key, bool* stale = nullptr);

  // Counters, readable from any thread: lookups answered from a stale entry, and moves to the
  // next registry endpoint after one did not answer.
  int64_t served_stale() const { return served_stale_.load(std::memory_order_relaxed); }
  int64_t endpoint_moves() const { return endpoint_moves_.load(std::memory_order_relaxed); }
  // The endpoint requests go to now.
  const std::string& current_endpoint() const { return options_.endpoints[current_]; }

 private:
  Result<wire::RegistryEntry> Ask(wire::RegistryRequest& req, const std::string& cache_key,
                                  const std::string& what, bool* stale);
  // One request to the current endpoint: the reply, or kUnavailable when none came in time.
  Result<wire::RegistryReply> AskCurrent(const wire::RegistryRequest& req);
  void Reconnect();
  struct Cached {
    std::optional<wire::RegistryEntry> entry;  // empty: NOT_FOUND
    std::string error;
    int64_t fresh_until_mono;
  };
  zmq::context_t& ctx_;
  RegistryClientOptions options_;
  size_t current_ = 0;
  uint64_t next_id_ = 1;
  std::unique_ptr<zmq::socket_t> sock_;
  std::map<std::string, Cached> cache_;
  std::atomic<int64_t> served_stale_{0};
  std::atomic<int64_t> endpoint_moves_{0};
};

}  // namespace bud
