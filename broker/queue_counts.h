// Messages queued at the broker per receiver and per sender, for the caps of QueueCaps: what the
// store holds as committed, plus the changes of the transaction in progress, applied when it
// commits and dropped when it does not. Both store engines keep theirs in one of these.
//
// Operation: owned by the store, on the broker's loop thread; no locking.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "broker/queue_store.h"

namespace bud::broker {

class QueueCounts {
 public:
  using ByOrg = std::map<std::string, int64_t>;

  void SetCaps(const QueueCaps& caps) { caps_ = caps; }
  // The committed counts, as the store counted them (at open, or after a reconnect).
  void Set(ByOrg by_receiver, ByOrg by_sender);
  // One more (+1) or one less (-1) message from `sender` to `receiver` in the transaction.
  void Count(const std::string& sender, const std::string& receiver, int64_t delta);
  void Commit();  // the transaction committed: its changes count from now on
  void Drop();    // it did not: forget its changes
  // Empty when one more message from `sender` to `receiver` fits the caps (the transaction's
  // changes included), else the reason for a RETRY_LATER.
  std::string Room(const std::string& sender, const std::string& receiver) const;
  // The transaction's changes so far, by receiver and by sender (zero changes included).
  const ByOrg& pending_by_receiver() const { return pending_by_receiver_; }
  const ByOrg& pending_by_sender() const { return pending_by_sender_; }

 private:
  QueueCaps caps_;
  ByOrg by_receiver_, by_sender_;
  ByOrg pending_by_receiver_, pending_by_sender_;
};

}  // namespace bud::broker
