// See expiry_sweep.h.
#include "integration-point/engine/expiry_sweep.h"

#include "common/log.h"

namespace bud::ip {

int ExpirySweep::RunIfDue() {
  if (clock_.MonoMs() - last_mono_ < every_ms_) return 0;
  last_mono_ = clock_.MonoMs();
  auto expired = store_.ExpireUndelivered(clock_.NowMs(), 1000);
  if (!expired.ok()) {
    Logger("ip")->error("expiry sweep: {}", expired.status().ToString());
    return 0;
  }
  for (const auto& id : *expired) {
    Logger("ip")->warn(
        "message {}: received but not taken out by the receiving archive system in time "
        "(LEVETID_UTLOPT)",
        id);
  }
  return static_cast<int>(expired->size());
}

}  // namespace bud::ip
