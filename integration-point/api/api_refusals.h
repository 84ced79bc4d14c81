// Next Move API requests refused after their body was taken, recorded as refusals for the admin
// (store/refusal_store.h): `bud-ip status --failed`, the status page, /metrics, /api/refusals show
// them beside the refused outbox folders. A refusal names the message id the request carried
// (from its path or its SBD, "" when it carried none that could be read) and is resolved when a
// message of that id is later taken in through the API.
//
// What counts: a POST or PUT under /api/messages/out answered 4xx or 5xx, except 401 and 403
// (refused before the body is read) and 503 (the client is told to retry: nothing to fix).
//
// Operation: called by the outgoing routes on the HTTP server's threads; writes go through the
// SharedStore. A store that cannot record is logged, never turned into another answer.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <functional>
#include <string>

#include "integration-point/api/shared_store.h"

namespace bud::ip::api {

class ApiRefusals {
 public:
  ApiRefusals(SharedStore& store, std::function<int64_t()> now);

  // After a body-taking route answered `res` for `req`: records a refusal when the answer is
  // one (see above); when it is a success and `takes_in` (the request handed a message to the
  // engine), resolves the refusals of `message_id`.
  void Answered(const httplib::Request& req, const httplib::Response& res,
                const std::string& message_id, bool takes_in);

  // Whether an answer with this HTTP status is recorded.
  static bool IsRefusal(int http_status);

 private:
  SharedStore& store_;
  std::function<int64_t()> now_;
};

// The message id (documentIdentification.instanceIdentifier) of an SBD given as JSON text, ""
// when it cannot be read; bounded like any outside JSON.
std::string SbdMessageId(const std::string& sbd_text);

}  // namespace bud::ip::api
