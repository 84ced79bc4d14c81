// See transfer_progress.h.
#include "integration-point/engine/transfer_progress.h"

#include <algorithm>

#include "common/log.h"

namespace bud::ip {

namespace {
constexpr int64_t kProgressEveryMs = 5000;
constexpr int64_t kSaveProgressEveryMs = 1000;
}  // namespace

namespace {
template <typename RoleStore>
void Save(RoleStore& store, const Clock& clock, const std::string& message_id,
          const crypto::StreamLayout& layout, uint64_t chunks, ProgressMarks& marks, bool now) {
  if (chunks == marks.saved || (!now && clock.MonoMs() - marks.saved_mono < kSaveProgressEveryMs)) {
    return;
  }
  const uint64_t bytes = std::min(layout.RecordOffset(chunks), layout.ciphertext_size);
  Status st = store.TransferProgress(message_id, static_cast<int64_t>(bytes));
  if (!st.ok()) {
    Logger("ip")->warn("message {}: progress not stored: {}", message_id, st.ToString());
    return;
  }
  marks.saved = chunks;
  marks.saved_mono = clock.MonoMs();
}
}  // namespace

void SaveProgress(OutgoingStore& store, const Clock& clock, const std::string& message_id,
                  const crypto::StreamLayout& layout, uint64_t chunks, ProgressMarks& marks,
                  bool now) {
  Save(store, clock, message_id, layout, chunks, marks, now);
}

void SaveProgress(IncomingStore& store, const Clock& clock, const std::string& message_id,
                  const crypto::StreamLayout& layout, uint64_t chunks, ProgressMarks& marks,
                  bool now) {
  Save(store, clock, message_id, layout, chunks, marks, now);
}

void LogProgress(const Clock& clock, const std::string& message_id, const char* verb,
                 const crypto::StreamLayout& l, uint64_t chunks, ProgressMarks& marks) {
  const int64_t now = clock.MonoMs();
  if (now - marks.last_log_mono < kProgressEveryMs) return;
  const uint64_t bytes = std::min(l.RecordOffset(chunks), l.ciphertext_size);
  const double secs = static_cast<double>(std::max<int64_t>(now - marks.started_mono, 1)) / 1000.0;
  Logger("ip")->info("message {}: {} {} of {} bytes ({:.0f} %, {:.1f} MB/s)", message_id, verb,
                     bytes, l.ciphertext_size,
                     100.0 * static_cast<double>(bytes) / static_cast<double>(l.ciphertext_size),
                     static_cast<double>(bytes - l.RecordOffset(marks.start_chunk)) / 1e6 / secs);
  marks.last_log_mono = now;
}

}  // namespace bud::ip
