// See api_refusals.h.
#include "integration-point/api/api_refusals.h"

#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"

namespace bud::ip::api {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("http"); }

constexpr size_t kMaxName = 200;       // of the request line kept
constexpr size_t kMaxMessageId = 100;  // a longer "id" is not one

// The error body's "message" (http_answer.h), or the bare status when there is none.
std::string ReasonOf(const httplib::Response& res) {
  auto body = ParseJson(res.body, "the error body");
  if (body.ok() && body->is_object() && body->contains("message") &&
      (*body)["message"].is_string()) {
    return (*body)["message"];
  }
  return "HTTP " + std::to_string(res.status);
}
}  // namespace

ApiRefusals::ApiRefusals(SharedStore& store, std::function<int64_t()> now)
    : store_(store), now_(std::move(now)) {}

bool ApiRefusals::IsRefusal(int http_status) {
  return http_status >= 400 && http_status != 401 && http_status != 403 && http_status != 503;
}

void ApiRefusals::Answered(const httplib::Request& req, const httplib::Response& res,
                           const std::string& message_id, bool takes_in) {
  if (res.status >= 200 && res.status < 300) {
    if (!takes_in || message_id.empty()) return;
    auto resolved =
        store_.Run([&](PointStore& s) { return s.refusals.ResolveApi(message_id, now_()); });
    if (!resolved.ok()) {
      Log()->error("message {}: cannot resolve its earlier refusals: {}", message_id,
                   resolved.status().ToString());
    } else if (*resolved > 0) {
      Log()->info("message {} was refused before, is now taken in ({} refusal(s) resolved)",
                  message_id, *resolved);
    }
    return;
  }
  if (!IsRefusal(res.status)) return;
  RefusalRow row;
  row.source = "api";
  row.name = EscapeControl(req.method + " " + req.path).substr(0, kMaxName);
  row.message_id = message_id.size() <= kMaxMessageId ? EscapeControl(message_id) : "";
  row.reason = std::to_string(res.status) + ": " + ReasonOf(res);
  row.reason_class = RefusalClass::kApi;
  row.refused_ms = now_();
  auto id = store_.Run([&](PointStore& s) { return s.refusals.Record(row); });
  if (!id.ok()) {
    Log()->error("cannot record the refusal of {}: {}", row.name, id.status().ToString());
  }
}

std::string SbdMessageId(const std::string& sbd_text) {
  if (sbd_text.empty()) return "";
  auto sbd = ParseJson(sbd_text, "the sbd");
  if (!sbd.ok()) return "";
  const nlohmann::json* at = &*sbd;
  for (const char* key :
       {"standardBusinessDocumentHeader", "documentIdentification", "instanceIdentifier"}) {
    if (!at->is_object() || !at->contains(key)) return "";
    at = &(*at)[key];
  }
  return at->is_string() ? at->get<std::string>() : "";
}

}  // namespace bud::ip::api
