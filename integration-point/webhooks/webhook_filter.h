// A webhook subscription's filter, as eFormidling's integration point reads it
// (WebhookFilterParser): parts joined by '&', each `name=value[,value...]`, with the names
// `status`, `serviceIdentifier` and `direction`; a value matches without regard to case, and
// every part must match ("status=FEIL,LEVETID_UTLOPT&direction=OUTGOING").
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "integration-point/store/subscription_store.h"

namespace bud::ip::webhooks {

struct FilterPart {
  std::string name;                 // "status", "serviceIdentifier" or "direction"
  std::vector<std::string> values;  // any of them matches
};

// The parts of `filter` ("" or only '&': none, everything matches); kInvalidArgument naming the
// part that is not `name=value`, or the unknown name.
Result<std::vector<FilterPart>> ParseFilter(const std::string& filter);

// Whether the status event `e` passes every part.
bool Matches(const std::vector<FilterPart>& parts, const StatusEventRow& e);

}  // namespace bud::ip::webhooks
