// Admin verbs of bud-broker that read its store beside the running broker: `stats`.
#pragma once

#include <cstdint>
#include <string>

#include "broker/config.h"
#include "broker/queue_store.h"
#include "common/status.h"

namespace bud::broker {

// `stats` as a table for people, or as JSON (one object; schema in docs/operating.md), for
// the store at `store_path` as read at `now_ms`.
std::string RenderStats(const StoreStats& stats, const std::string& store_path, int64_t now_ms,
                        bool json);

// Opens the SQLite store at `store_path` read-only, reads Stats and renders them.
Result<std::string> StatsCommand(const std::string& store_path, bool json);
// The same for the store the config names (either engine).
Result<std::string> StatsCommand(const Config& config, bool json);

}  // namespace bud::broker
