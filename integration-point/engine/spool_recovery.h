// What the engine puts right at start, before its loop runs: files a crash left in the spool
// and the inbox (docs/large-messages.md).
// Concurrency: the engine thread, before the loop.
#pragma once

#include "integration-point/config.h"
#include "integration-point/message_state.h"
#include "integration-point/store/point_store.h"

namespace bud::ip {

// A folder moved into spool/src/ whose message the store does not hold goes back to the
// outbox; one whose message is sealed (or failed) is no longer needed. One that an HTTP API
// draft was being sent from goes (the draft keeps its own links to the files), and so do the
// files of drafts that were sent or deleted, and streamed messages for the API whose row is
// gone.
void RecoverSpool(const Config& config, PointStore& store);

// Removes inbox/.tmp (decrypted files of deliveries never committed; the broker delivers them
// again) and spool/in-<id> files no download will resume.
void SweepReceiveLeftovers(const Config& config, PointStore& store, int64_t now_ms);

}  // namespace bud::ip
