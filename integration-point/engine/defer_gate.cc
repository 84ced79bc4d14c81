// See defer_gate.h.
#include "integration-point/engine/defer_gate.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/log.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }
constexpr int64_t kDeferFirstMs = 500;
constexpr int64_t kDeferMaxMs = 30000;
}  // namespace

void DeferGate::Defer(const std::string& message_id, const Status& why) {
  const int64_t now = clock_.MonoMs();
  if (now >= until_mono_) {  // a probe failed, or the first failure
    backoff_ms_ = backoff_ms_ == 0 ? kDeferFirstMs : std::min(backoff_ms_ * 2, kDeferMaxMs);
    until_mono_ = now + backoff_ms_;
    // What the broker (and its log) sees: the kind of trouble, not this machine's paths.
    reason_ = fmt::format("the receiving integration point cannot store deliveries now ({})",
                          CodeName(why.code()));
    Log()->warn("message {}: cannot store it now ({}); deferring every delivery for {} ms",
                message_id, why.ToString(), backoff_ms_);
  }
  auto msg = NewClientMessage();
  auto* d = msg.mutable_defer();
  d->set_message_id(message_id);
  d->set_reason(reason_);
  d->set_retry_after_ms(static_cast<uint32_t>(std::max<int64_t>(until_mono_ - now, 1)));
  metrics_.deferred.fetch_add(1, std::memory_order_relaxed);
  link_.Send(msg);  // not after the commit: a Defer promises nothing durable
}

bool DeferGate::DeferringNow(const std::string& message_id) {
  if (clock_.MonoMs() >= until_mono_) return false;
  Log()->debug("message {}: deferred unread (storage trouble: {})", message_id, reason_);
  Defer(message_id, Status(Code::kUnavailable, reason_));
  return true;
}

void DeferGate::Stored() {
  if (backoff_ms_ == 0) return;
  Log()->info("deliveries are stored again; no longer deferring");
  backoff_ms_ = 0;
  until_mono_ = 0;
}

}  // namespace bud::ip
