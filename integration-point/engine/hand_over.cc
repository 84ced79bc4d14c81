// See hand_over.h.
#include "integration-point/engine/hand_over.h"

#include <fmt/format.h>

#include <chrono>

namespace bud::ip {

Status HandOverQueue::TakeIn(MessageRow row, int64_t timeout_ms) {
  auto h = std::make_shared<HandOver>();
  h->row = std::move(row);
  std::unique_lock lock(mu_);
  if (stopped_) return Status(Code::kUnavailable, "the integration point is stopping");
  queue_.push_back(h);
  wake_();
  if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return h->done; })) {
    return Status(Code::kUnavailable,
                  fmt::format("message {} was not stored within {} ms; it may still be taken in "
                              "(GET /api/messages/out/{} tells)",
                              h->row.message_id, timeout_ms, h->row.message_id));
  }
  return h->result;
}

bool HandOverQueue::StoreQueued(OutgoingStore& store) {
  std::vector<std::shared_ptr<HandOver>> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(queue_);
  }
  bool stored = false;
  for (auto& h : batch) {
    h->result = store.CreateOutgoing(h->row);
    stored = stored || h->result.ok();
    taken_.push_back(std::move(h));
  }
  return stored;
}

void HandOverQueue::Answer(const Status& failure) {
  if (taken_.empty()) return;
  std::lock_guard lock(mu_);
  for (auto& h : taken_) {
    if (!failure.ok() && h->result.ok()) h->result = failure;
    h->done = true;
  }
  taken_.clear();
  cv_.notify_all();
}

void HandOverQueue::Stop() {
  std::lock_guard lock(mu_);
  stopped_ = true;
  for (auto& h : queue_) {
    h->result = Status(Code::kUnavailable, "the integration point is stopping");
    h->done = true;
  }
  queue_.clear();
  cv_.notify_all();
}

}  // namespace bud::ip
