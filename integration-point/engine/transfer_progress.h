// Progress of a streamed transfer, shared by the sender (uploads) and the stream receiver
// (downloads): what is stored in the store's `transfers` row and what is logged.
#pragma once

#include <cstdint>
#include <string>

#include "common/crypto/stream.h"
#include "integration-point/engine/clock.h"
#include "integration-point/message_state.h"
#include "integration-point/store/incoming_store.h"
#include "integration-point/store/outgoing_store.h"

namespace bud::ip {

// Where a transfer's progress was last written and logged.
struct ProgressMarks {
  uint64_t saved = UINT64_MAX;  // chunks done as last written to the store's transfer row
  int64_t saved_mono = 0;
  int64_t started_mono = 0;
  int64_t last_log_mono = 0;
  uint64_t start_chunk = 0;  // where this run of the transfer started (for the rate)
};

// Writes `chunks` done of `layout` to the store's transfer row of the upload (OutgoingStore) or
// download (IncomingStore), in the turn's transaction, at most once a second unless `now`.
void SaveProgress(OutgoingStore& store, const Clock& clock, const std::string& message_id,
                  const crypto::StreamLayout& layout, uint64_t chunks, ProgressMarks& marks,
                  bool now);
void SaveProgress(IncomingStore& store, const Clock& clock, const std::string& message_id,
                  const crypto::StreamLayout& layout, uint64_t chunks, ProgressMarks& marks,
                  bool now);

// Logs "sent/received X of Y bytes (P %, R MB/s)" at most every 5 s.
void LogProgress(const Clock& clock, const std::string& message_id, const char* verb,
                 const crypto::StreamLayout& layout, uint64_t chunks, ProgressMarks& marks);

}  // namespace bud::ip
