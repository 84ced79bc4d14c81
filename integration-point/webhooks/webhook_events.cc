// Webhook bodies. See webhook_events.h.
#include "integration-point/webhooks/webhook_events.h"

#include "common/oslo_time.h"
#include "integration-point/api/json_shapes.h"

namespace bud::ip::webhooks {

nlohmann::json PingJson(int64_t now_ms) {
  return {{"createdTs", FormatOsloTime(now_ms)}, {"event", "ping"}};
}

nlohmann::json StatusEventJson(const StatusEventRow& e) {
  return {{"createdTs", FormatOsloTime(e.at_ms)},
          {"resource", "messages"},
          {"event", "status"},
          {"messageId", e.message_id},
          {"conversationId", e.conversation_id},
          {"direction", api::DirectionName(e.direction)},
          {"serviceIdentifier", kServiceIdentifier},
          {"status", e.status},
          {"description", api::Describe(e.status, e.reason)},
          {"eventId", e.history_id}};
}

}  // namespace bud::ip::webhooks
