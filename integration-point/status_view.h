// `bud-ip status`: every message with its status history, as a table or JSON; a streamed
// message also with its transfer's progress ("sent 96.0 MiB of 256.0 MiB (37%)").
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "integration-point/store/history_store.h"

namespace bud::ip {

// "sent|received <done> of <total> (<pct>%)[; <note>]".
std::string TransferLine(const TransferRow& t);
// {"bytes", "totalBytes", "percent", "complete", "lastUpdate"[, "note"]}.
nlohmann::json TransferJson(const TransferRow& t);

Result<std::string> RenderStatus(HistoryStore& store, const ListFilter& filter, bool json);

}  // namespace bud::ip
