// The registry as the engine's parts see it: one lookup by organisation. Injected so that the
// sender and the receiver run in tests against entries the test holds.
#pragma once

#include "common/clock.h"
#include "common/orgnr.h"
#include "common/registry_client.h"
#include "common/status.h"
#include "integration-point/engine/metrics.h"
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

// The real one: the address registry over ZeroMQ (with its cache). Each answer's time goes to
// the metrics (the status page's overview shows whether the registry answers).
class RegistryClientLookup final : public RegistryLookup {
 public:
  // `metrics` (may be null) must outlive this.
  explicit RegistryClientLookup(RegistryClient& client, EngineMetrics* metrics = nullptr)
      : client_(client), metrics_(metrics) {}
  Result<wire::RegistryEntry> Lookup(const Orgnr& org) override {
    bool stale = false;
    return LookupNoting(org, &stale);
  }
  Result<wire::RegistryEntry> LookupNoting(const Orgnr& org, bool* stale) override {
    auto entry = client_.Lookup(org, stale);
    if (metrics_ == nullptr) return entry;
    // Answered (found or not found), or not: an entry served stale means no registry answered.
    const int64_t now = NowMs();
    if (!*stale && (entry.ok() || entry.status().code() != Code::kUnavailable)) {
      metrics_->registry_last_answer_ms.store(now);
      metrics_->registry_unavailable_since_ms.store(0);
    } else {
      int64_t none = 0;
      metrics_->registry_unavailable_since_ms.compare_exchange_strong(none, now);
    }
    return entry;
  }

 private:
  RegistryClient& client_;
  EngineMetrics* metrics_;
};

}  // namespace bud::ip
