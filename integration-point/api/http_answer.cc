// See http_answer.h.
#include "integration-point/api/http_answer.h"

#include "common/http_server.h"
#include "integration-point/sbd.h"

namespace bud::ip::api {

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
    case Code::kBadOrgnr:
    case Code::kMalformed:
    case Code::kAlreadyExists:
      return 400;
    case Code::kNotFound:
      return 404;
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

std::string EfmException(const std::string& name) {
  return "no.difi.meldingsutveksling.exceptions." + name;
}

std::string ExceptionFor(Code code) {
  switch (code) {
    case Code::kAlreadyExists:
      return EfmException("MessageAlreadyExistsException");
    case Code::kNotFound:
      return EfmException("MessageNotFoundException");
    case Code::kTooLarge:
      return EfmException("MaxFileSizeExceededException");
    case Code::kInvalidArgument:
    case Code::kBadOrgnr:
    case Code::kMalformed:
      return "org.springframework.web.server.ServerWebInputException";
    default:
      return "";  // SendError's default
  }
}

void SendStatus(httplib::Response& res, const Status& st, const std::string& path, int http_status,
                const std::string& exception) {
  std::string name = exception;
  if (name.empty() && st.code() == Code::kInvalidArgument &&
      st.message().starts_with(kMessageChannelInvalid)) {
    name = EfmException("MessageChannelInvalidException");
  }
  SendError(res, http_status ? http_status : HttpStatusFor(st.code()), st.message(), path,
            name.empty() ? ExceptionFor(st.code()) : name);
}

void SendResult(httplib::Response& res, const Result<nlohmann::json>& body,
                const std::string& path) {
  if (!body.ok()) return SendStatus(res, body.status(), path);
  SendJson(res, *body);
}

}  // namespace bud::ip::api
