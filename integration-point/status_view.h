// `bud-ip status`: every message with its status history, as a table or JSON; a streamed
// message also with its transfer's progress ("sent 96.0 MiB of 256.0 MiB (37%)"); with --failed
// the refused intake (refusal_store.h). The table is in the admin's language with local times
// and their offset (i18n.h); JSON keeps English keys and UTC ISO 8601 times.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "integration-point/i18n.h"
#include "integration-point/store/history_store.h"
#include "integration-point/store/refusal_store.h"

namespace bud::ip {

// "sent|received <done> of <total> (<pct>%)[; <note>]" (Norwegian: "sendt|mottatt ... av ...").
std::string TransferLine(const TransferRow& t, Lang lang = Lang::kEn);
// {"bytes", "totalBytes", "percent", "complete", "lastUpdate"[, "note"]}.
nlohmann::json TransferJson(const TransferRow& t);

Result<std::string> RenderStatus(HistoryStore& store, const ListFilter& filter, bool json,
                                 Lang lang = Lang::kEn);

// {"id", "source", "name", "movedTo", "reason", "class", "refused"[, "resolved",
// "resolvedMessageId"]}.
nlohmann::json RefusalJson(const RefusalRow& r);
// The open refusals (with `include_resolved` also the resolved ones, marked so), newest first.
Result<std::string> RenderRefusals(RefusalStore& store, bool include_resolved, bool json,
                                   Lang lang = Lang::kEn);

}  // namespace bud::ip
