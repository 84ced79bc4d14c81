// The bodies a webhook subscriber receives, as eFormidling's integration point writes them
// (PingContent, MessageStatusContent; null fields left out), plus `eventId`: the status line's
// id (as in /api/statuses), the same on every retry, for a receiver to drop a repeat
// (docs/http-api.md, "Webhooks").
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "integration-point/store/subscription_store.h"

namespace bud::ip::webhooks {

// Every message of ours travels as eFormidling's DPO.
inline constexpr const char* kServiceIdentifier = "DPO";

// {"createdTs", "event": "ping"}: sent to a push endpoint when a subscription is made with it.
nlohmann::json PingJson(int64_t now_ms);

// {"createdTs", "resource": "messages", "event": "status", "messageId", "conversationId",
// "direction", "serviceIdentifier", "status", "description", "eventId"}; createdTs is when the
// status was recorded.
nlohmann::json StatusEventJson(const StatusEventRow& e);

}  // namespace bud::ip::webhooks
