// How a service's answer becomes an HTTP answer: the one mapping from a Status to the HTTP
// status and error body (docs/http-api.md, "Errors"), and the JSON of a Result.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace bud::ip::api {

// 400 input to fix (kInvalidArgument, kBadOrgnr, kMalformed), 404 kNotFound, 409 kConflict and
// kAlreadyExists, 413 kTooLarge, 503 kUnavailable and kBusy (retry), 507 kDiskFull, else 500.
int HttpStatusFor(Code code);

// The error body for `st` (not ok): {"timestamp", "status", "error", "message", "path"}.
void SendStatus(httplib::Response& res, const Status& st, const std::string& path);

// `body` with 200, or the error.
void SendResult(httplib::Response& res, const Result<nlohmann::json>& body,
                const std::string& path);

}  // namespace bud::ip::api
