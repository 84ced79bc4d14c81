// See http_answer.h.
#include "integration-point/api/http_answer.h"

#include "common/http_server.h"

namespace bud::ip::api {

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
    case Code::kBadOrgnr:
    case Code::kMalformed:
      return 400;
    case Code::kNotFound:
      return 404;
    case Code::kAlreadyExists:
    case Code::kConflict:
      return 409;
    case Code::kTooLarge:
      return 413;
    case Code::kUnavailable:
    case Code::kBusy:
      return 503;
    case Code::kDiskFull:
      return 507;
    default:
      return 500;
  }
}

void SendStatus(httplib::Response& res, const Status& st, const std::string& path) {
  SendError(res, HttpStatusFor(st.code()), st.message(), path);
}

void SendResult(httplib::Response& res, const Result<nlohmann::json>& body,
                const std::string& path) {
  if (!body.ok()) return SendStatus(res, body.status(), path);
  SendJson(res, *body);
}

}  // namespace bud::ip::api
