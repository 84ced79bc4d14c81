// Reports to the broker (MOTTATT, FEIL, LEVERT ... of incoming messages): the store keeps them
// in pending_reports until the broker's ReportReply; this part sends them after the turn that
// recorded them committed, and resends what is unanswered.
// Operation: Report sends after the turn's commit; Tick resends, once a second, what has been
// unanswered for `resend_ms`; SendPending(true) after a Welcome resends all; OnReply drops a
// report from the store. Concurrency: the engine thread.
#pragma once

#include <map>
#include <string>

#include "integration-point/engine/broker_link.h"
#include "integration-point/engine/clock.h"
#include "integration-point/engine/turn.h"
#include "integration-point/store/point_store.h"

namespace bud::ip {

class ReportQueue {
 public:
  // Every reference must outlive the queue.
  ReportQueue(IncomingStore& store, Turn& turn, BrokerLink& link, const Clock& clock,
              int64_t resend_ms)
      : store_(store), turn_(turn), link_(link), clock_(clock), resend_ms_(resend_ms) {}
  ReportQueue(const ReportQueue&) = delete;
  ReportQueue& operator=(const ReportQueue&) = delete;

  // Sends the report once the turn has committed (the store holds it already).
  void Report(const std::string& message_id, MsgStatus status, const std::string& reason);
  // Sends the store's pending reports: all of them, or those not sent within resend_ms.
  void SendPending(bool all);
  void OnReply(const wire::ReportReply& reply);
  // A new session: nothing sent before counts as sent.
  void Forget() { sent_.clear(); }
  // Once a second: SendPending(false).
  void Tick();
  size_t unanswered() const { return sent_.size(); }

 private:
  IncomingStore& store_;
  Turn& turn_;
  BrokerLink& link_;
  const Clock& clock_;
  const int64_t resend_ms_;
  std::map<std::string, int64_t> sent_;  // "id/status" -> when sent (mono)
  int64_t last_tick_mono_ = 0;
};

}  // namespace bud::ip
