#include "broker/fresh_envelopes.h"

#include <utility>

namespace bud::broker {

void FreshEnvelopes::Stage(int64_t seq, const std::string& message_id,
                           const std::string& envelope) {
  if (envelope.size() > max_envelope_ || envelope.size() > max_bytes_) return;
  staged_.emplace_back(seq, Entry{message_id, envelope});
}

void FreshEnvelopes::Commit() {
  for (auto& [seq, entry] : staged_) {
    bytes_ += entry.envelope.size();
    held_.insert_or_assign(held_.end(), seq, std::move(entry));
  }
  staged_.clear();
  while (bytes_ > max_bytes_ && !held_.empty()) {
    bytes_ -= held_.begin()->second.envelope.size();
    held_.erase(held_.begin());
  }
}

std::optional<FreshEnvelopes::Entry> FreshEnvelopes::Take(int64_t seq) {
  auto it = held_.find(seq);
  if (it == held_.end()) return std::nullopt;
  Entry out = std::move(it->second);
  bytes_ -= out.envelope.size();
  held_.erase(it);
  return out;
}

}  // namespace bud::broker
