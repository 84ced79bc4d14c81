// Messages taken in through the HTTP API, handed from HTTP threads to the engine thread, which
// stores them in its turn (so the store has one writer for messages and a POST waits for one
// shared commit).
// Operation: TakeIn (any thread) queues a row and waits; Store (engine thread, in the turn)
// writes the queued rows; Answer (engine thread, after the turn's commit) wakes their callers
// with their result, or with the commit's failure; Stop answers everything kUnavailable.
// Concurrency: mu_ guards queue_ and stopped_; taken_ is the engine thread's.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "integration-point/store/point_store.h"

namespace bud::ip {

class HandOverQueue {
 public:
  // `wake` makes the engine thread turn (thread-safe).
  explicit HandOverQueue(std::function<void()> wake) : wake_(std::move(wake)) {}
  HandOverQueue(const HandOverQueue&) = delete;
  HandOverQueue& operator=(const HandOverQueue&) = delete;

  // Thread-safe: OutgoingStore::CreateOutgoing of `row` by the engine thread; returns once that
  // commit is durable, or its failure; kUnavailable after `timeout_ms` or when stopping.
  Status TakeIn(MessageRow row, int64_t timeout_ms);
  // Engine thread: writes what was handed over; true when a message was stored.
  bool StoreQueued(OutgoingStore& store);
  // Engine thread: answers what StoreQueued wrote, with `failure` when the commit failed.
  void Answer(const Status& failure);
  // Engine thread, when the loop ends: answers the waiting ones, refuses later ones.
  void Stop();

 private:
  struct HandOver {
    MessageRow row;
    Status result;
    bool done = false;
  };
  std::function<void()> wake_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<HandOver>> queue_;  // waiting for the engine thread
  bool stopped_ = false;
  std::vector<std::shared_ptr<HandOver>> taken_;  // engine thread: stored in this turn
};

}  // namespace bud::ip
