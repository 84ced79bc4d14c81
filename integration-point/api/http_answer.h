// How a service's answer becomes an HTTP answer: the one mapping from a Status to the HTTP
// status and error body (docs/http-api.md, "Errors"), and the JSON of a Result.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace bud::ip::api {

// 400 input to fix (kInvalidArgument, kBadOrgnr, kMalformed) and a used message id
// (kAlreadyExists, as eFormidling), 404 kNotFound, 409 kConflict, 413 kTooLarge, 503
// kUnavailable and kBusy (retry), 507 kDiskFull, else 500.
int HttpStatusFor(Code code);

// The `exception` of the error body for `code`, named as eFormidling's Java class for the same
// failure ("no.difi.meldingsutveksling.exceptions.MessageAlreadyExistsException").
std::string ExceptionFor(Code code);
// eFormidling's exception class `name` with its package.
std::string EfmException(const std::string& name);

// The error body for `st` (not ok): {"timestamp", "status", "error", "exception", "message",
// "path"}. `http_status` / `exception` override what the code gives (0 / "": the code's).
void SendStatus(httplib::Response& res, const Status& st, const std::string& path,
                int http_status = 0, const std::string& exception = "");

// `body` with 200, or the error.
void SendResult(httplib::Response& res, const Result<nlohmann::json>& body,
                const std::string& path);

}  // namespace bud::ip::api
