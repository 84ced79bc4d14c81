// `bud-ip status`: every message with its status history, as a table or JSON.
#pragma once

#include <string>

#include "common/status.h"
#include "integration-point/store.h"

namespace bud::ip {

Result<std::string> RenderStatus(Store& store, const ListFilter& filter, bool json);

}  // namespace bud::ip
