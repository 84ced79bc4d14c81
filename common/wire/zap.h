// A ZAP handler (RFC 27) that never blocks the server it serves: it runs on its own thread,
// answers from a cache, and resolves keys it does not know on a second thread.
//
// Operation: the ZAP thread owns a ROUTER bound to inproc://zeromq.zap.01 (every CURVE session
// of the process sends its request there) and one end of an inproc pipe to the lookup thread.
// A request whose key is cached is answered at once: 200 with the cached identity, or 400 for a
// key known to be unknown. Otherwise the request is parked and the key is handed to the lookup
// thread, which calls the Resolver (e.g. a registry lookup, blocking up to its own timeout);
// every request parked for that key is answered when the result comes back. The server's event
// loop never waits for any of this.
//
// Bounds: admitted keys are cached for positive_ttl_ms (a key removed from the registry is
// refused at most that long after), at most max_positive of them; unknown keys for
// negative_ttl_ms, at most max_negative (when a cache is full, expired entries go, then the one
// that expires soonest); a key whose lookup failed (registry unreachable) is refused without
// asking again for retry_ms. At most max_pending requests wait for lookups; more are refused at
// once.
//
// Ownership: the Resolver is moved to the lookup thread, called and destroyed there only.
// Construction blocks until the ZAP socket is bound (so it is bound before any server socket is);
// destruction stops and joins both threads (at most one Resolver call long).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "common/status.h"

namespace bud::wire {

class CachedZapHandler {
 public:
  struct Verdict {
    enum Kind { kAdmit, kUnknown, kUnavailable };
    Kind kind = kUnavailable;
    std::string identity;  // the ZAP User-Id, when kAdmit
    std::string error;     // why, when kUnavailable (logged)
  };
  // Which identity a Z85 CURVE public key belongs to. Runs on the lookup thread only.
  using Resolver = std::function<Verdict(const std::string& z85_key)>;
  struct Options {
    int64_t positive_ttl_ms = 60000;
    int64_t negative_ttl_ms = 10000;
    int64_t retry_ms = 1000;
    size_t max_positive = 100000;
    size_t max_negative = 10000;
    size_t max_pending = 1000;
  };

  CachedZapHandler(zmq::context_t& ctx, Resolver resolver, Options options,
                   std::string server_name);
  ~CachedZapHandler();
  CachedZapHandler(const CachedZapHandler&) = delete;
  CachedZapHandler& operator=(const CachedZapHandler&) = delete;

  // Whether the ZAP socket was bound (the error otherwise); check after construction.
  const Status& started() const { return started_; }
  // Lookups asked of the Resolver so far (for tests and metrics).
  uint64_t lookups() const { return lookups_.load(std::memory_order_relaxed); }

 private:
  void ZapThread(std::string pipe_endpoint, std::promise<Status>* bound);
  void LookupThread(std::string pipe_endpoint);

  zmq::context_t& ctx_;
  Resolver resolver_;
  Options options_;
  std::string server_name_;
  Status started_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> lookups_{0};
  std::thread zap_thread_;
  std::thread lookup_thread_;
};

}  // namespace bud::wire
