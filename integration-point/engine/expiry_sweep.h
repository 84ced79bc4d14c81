// The expiry sweep: an outgoing message the receiver's point took in (MOTTATT) but whose
// archive system did not take it out (LEVERT) by its expectedResponseDateTime gets
// LEVETID_UTLOPT here (Next Move: "not delivered in time", also after MOTTATT). The broker
// decides for messages it still holds; this covers the ones it has handed over.
//
// Operation: the engine thread, in the loop's turn, at most every `every_ms` (monotonic).
#pragma once

#include <cstdint>

#include "integration-point/engine/clock.h"
#include "integration-point/store/point_store.h"

namespace bud::ip {

class ExpirySweep {
 public:
  ExpirySweep(OutgoingStore& store, const Clock& clock, int64_t every_ms = 5000)
      : store_(store), clock_(clock), every_ms_(every_ms) {}

  // Sweeps when `every_ms` passed since the last sweep; the number of messages expired.
  int RunIfDue();

 private:
  OutgoingStore& store_;
  const Clock& clock_;
  int64_t every_ms_;
  int64_t last_mono_ = INT64_MIN / 2;
};

}  // namespace bud::ip
