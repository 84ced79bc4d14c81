// The receiver's storage-trouble state machine (docs/protocol.md, "The receiver's state
// machine"): [accepting] -> (a write or the turn's commit fails) -> [deferring] for a pause
// (500 ms, doubling per failed probe up to 30 s) during which every delivery is answered Defer
// unread -> [probing]: the next delivery is handled; stored: [accepting], failed: [deferring].
// Concurrency: the engine thread.
#pragma once

#include <string>

#include "common/status.h"
#include "integration-point/engine/broker_link.h"
#include "integration-point/engine/clock.h"
#include "integration-point/engine/metrics.h"

namespace bud::ip {

class DeferGate {
 public:
  DeferGate(BrokerLink& link, const Clock& clock, EngineMetrics& metrics)
      : link_(link), clock_(clock), metrics_(metrics) {}
  DeferGate(const DeferGate&) = delete;
  DeferGate& operator=(const DeferGate&) = delete;

  // Local trouble (`why`): answers the delivery of `message_id` with Defer at once and starts
  // (or, after a failed probe, doubles) the pause.
  void Defer(const std::string& message_id, const Status& why);
  // True (and the delivery answered Defer) while the pause runs.
  bool DeferringNow(const std::string& message_id);
  // A delivery was written and committed: accepting again.
  void Stored();
  bool deferring() const { return backoff_ms_ != 0; }
  int64_t backoff_ms() const { return backoff_ms_; }

 private:
  BrokerLink& link_;
  const Clock& clock_;
  EngineMetrics& metrics_;
  int64_t until_mono_ = 0;  // deliveries are deferred unread until then
  int64_t backoff_ms_ = 0;  // the last pause; 0 when the last delivery was stored
  std::string reason_;      // why, for the Defers sent during the pause
};

}  // namespace bud::ip
