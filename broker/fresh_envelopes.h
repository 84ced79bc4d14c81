// The envelopes of the last commits, by queue position, so that a delivery right after its
// submit is handed out without reading its row again (SqliteQueueStore::ClaimDeliveries): with a
// receiver online, most messages leave within a few commits of their arrival. Bounded in bytes;
// the oldest go first. Only a speed-up: the store's rows decide what is queued, a position not
// held here is read from the store, and an entry whose row is gone is never asked for (positions
// are never handed out twice).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace bud::broker {

class FreshEnvelopes {
 public:
  struct Entry {
    std::string message_id;
    std::string envelope;
  };
  // `max_bytes`: the envelopes' bytes held at most; an envelope above `max_envelope` is not held.
  FreshEnvelopes(size_t max_bytes, size_t max_envelope)
      : max_bytes_(max_bytes), max_envelope_(max_envelope) {}

  // For the transaction in progress: held only once Commit() is called.
  void Stage(int64_t seq, const std::string& message_id, const std::string& envelope);
  void Commit();
  void Drop() { staged_.clear(); }

  // The entry at `seq`, given up (a message is handed out once; a redelivery reads the store).
  std::optional<Entry> Take(int64_t seq);

  size_t bytes() const { return bytes_; }
  size_t size() const { return held_.size(); }

 private:
  const size_t max_bytes_, max_envelope_;
  std::vector<std::pair<int64_t, Entry>> staged_;
  std::map<int64_t, Entry> held_;
  size_t bytes_ = 0;
};

}  // namespace bud::broker
