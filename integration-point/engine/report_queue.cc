// See report_queue.h.
#include "integration-point/engine/report_queue.h"

#include <fmt/format.h>

#include "common/log.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }
std::string Key(const std::string& message_id, MsgStatus status) {
  return fmt::format("{}/{}", message_id, static_cast<int>(status));
}
}  // namespace

void ReportQueue::Report(const std::string& message_id, MsgStatus status,
                         const std::string& reason) {
  auto msg = NewClientMessage();
  auto* r = msg.mutable_report();
  r->set_message_id(message_id);
  r->set_status(status);
  r->set_reason(reason);
  r->set_at_unix_ms(clock_.NowMs());
  turn_.AfterCommit([this, msg = std::move(msg), key = Key(message_id, status)]() mutable {
    // Sent from now (so SendPending does not queue it twice); a frame that could not be sent
    // leaves it pending.
    sent_[key] = clock_.MonoMs();
    link_.Queue(std::move(msg), [this, key](bool sent) {
      if (!sent) sent_.erase(key);
    });
  });
}

void ReportQueue::SendPending(bool all) {
  if (!link_.ready()) return;
  auto pending = store_.PendingReports();
  if (!pending.ok()) {
    Log()->error("reading pending reports: {}", pending.status().ToString());
    return;
  }
  for (const auto& p : *pending) {
    auto it = sent_.find(Key(p.message_id, p.status));
    if (!all && it != sent_.end() && clock_.MonoMs() - it->second < resend_ms_) continue;
    Report(p.message_id, p.status, p.reason);
  }
}

void ReportQueue::OnReply(const wire::ReportReply& r) {
  sent_.erase(Key(r.message_id(), r.status()));
  if (!r.ok()) {
    Log()->warn("broker could not take report {} for {}: {}", StatusName(r.status()),
                r.message_id(), r.reason());
    return;
  }
  if (!r.reason().empty()) {
    Log()->warn("broker ignored report {} for {}: {}", StatusName(r.status()), r.message_id(),
                r.reason());
  }
  Status st = store_.ReportDone(r.message_id(), r.status());
  if (!st.ok()) Log()->error("report {}: {}", r.message_id(), st.ToString());
}

void ReportQueue::Tick() {
  const int64_t now = clock_.MonoMs();
  if (now - last_tick_mono_ < 1000) return;
  SendPending(false);
  last_tick_mono_ = now;
}

}  // namespace bud::ip
