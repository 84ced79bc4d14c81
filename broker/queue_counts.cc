// See queue_counts.h.
#include "broker/queue_counts.h"

#include <fmt/format.h>

namespace bud::broker {

namespace {

int64_t CountOf(const QueueCounts::ByOrg& committed, const QueueCounts::ByOrg& pending,
                const std::string& org) {
  int64_t n = 0;
  if (auto it = committed.find(org); it != committed.end()) n += it->second;
  if (auto it = pending.find(org); it != pending.end()) n += it->second;
  return n;
}

void Apply(QueueCounts::ByOrg& pending, QueueCounts::ByOrg& target) {
  for (const auto& [org, delta] : pending) {
    const int64_t n = (target[org] += delta);
    if (n <= 0) target.erase(org);
  }
  pending.clear();
}

}  // namespace

void QueueCounts::Set(ByOrg by_receiver, ByOrg by_sender) {
  by_receiver_ = std::move(by_receiver);
  by_sender_ = std::move(by_sender);
}

void QueueCounts::Count(const std::string& sender, const std::string& receiver, int64_t delta) {
  pending_by_sender_[sender] += delta;
  pending_by_receiver_[receiver] += delta;
}

void QueueCounts::Commit() {
  Apply(pending_by_sender_, by_sender_);
  Apply(pending_by_receiver_, by_receiver_);
}

void QueueCounts::Drop() {
  pending_by_receiver_.clear();
  pending_by_sender_.clear();
}

std::string QueueCounts::Room(const std::string& sender, const std::string& receiver) const {
  if (caps_.per_receiver > 0 &&
      CountOf(by_receiver_, pending_by_receiver_, receiver) >= caps_.per_receiver) {
    return fmt::format("{} has {} messages waiting at the broker, the most it keeps for one "
                       "receiver (max_queued_per_receiver); retry later",
                       receiver, caps_.per_receiver);
  }
  if (caps_.per_sender > 0 &&
      CountOf(by_sender_, pending_by_sender_, sender) >= caps_.per_sender) {
    return fmt::format("{} has {} messages waiting at the broker, the most it keeps from one "
                       "sender (max_queued_per_sender); retry later",
                       sender, caps_.per_sender);
  }
  return std::string();
}

}  // namespace bud::broker
