// Routes of incoming messages kept for the API. See routes.h.
#include <fmt/format.h>
#include <strings.h>

#include "common/http_server.h"
#include "common/log.h"
#include "integration-point/api/http_answer.h"
#include "integration-point/api/json_shapes.h"
#include "integration-point/api/query.h"
#include "integration-point/api/routes.h"

namespace bud::ip::api {

namespace {
using Req = httplib::Request;
using Res = httplib::Response;
std::shared_ptr<spdlog::logger> Log() { return Logger("http"); }

// Pop and delete of a message that is not locked: 400 MessageNotLockedException, as eFormidling.
void SendInboxRefusal(Res& res, const Status& st, const std::string& path) {
  if (st.code() == Code::kConflict) {
    return SendStatus(res, st, path, 400, EfmException("MessageNotLockedException"));
  }
  SendStatus(res, st, path);
}

// eFormidling's filters of /api/messages/in and /peek. nullopt (after a 400 when a parameter is
// malformed) when nothing can match: every message here is DPO, so another service identifier
// selects none.
std::optional<IncomingFilter> FilterOf(Query& q) {
  IncomingFilter f;
  f.message_id = q.Text("messageId");
  f.conversation_id = q.Text("conversationId");
  f.sender = q.Org("senderIdentifier");
  f.receiver = q.Org("receiverIdentifier");
  f.process = q.Text("process");
  const std::string service = q.Text("serviceIdentifier");
  if (q.failed) return std::nullopt;
  if (!service.empty() && strcasecmp(service.c_str(), "DPO") != 0) return std::nullopt;
  return f;
}

void ListIncoming(ApiInbox& inbox, const Req& req, Res& res) {
  Query q{req, res};
  int64_t offset = 0, limit = 0;
  const int64_t page = q.Page(offset, limit);
  auto filter = FilterOf(q);
  if (q.failed) return;
  if (!filter) return SendJson(res, PageJson(nlohmann::json::array(), 0, page, limit));
  SendResult(res, inbox.List(*filter, page, limit), req.path);
}

void Peek(ApiInbox& inbox, const Req& req, Res& res) {
  Query q{req, res};
  auto filter = FilterOf(q);
  if (q.failed) return;
  if (!filter) {
    res.status = 204;
    return;
  }
  auto sbd = inbox.PeekMatching(*filter);
  if (!sbd.ok()) return SendStatus(res, sbd.status(), req.path);
  if (!*sbd) {
    res.status = 204;
    return;
  }
  SendJson(res, **sbd);
}

// Sized and served piece by piece: the attachments are read as the client takes them.
void Pop(ApiInbox& inbox, const Req& req, Res& res) {
  const std::string id = req.matches[1].str();
  auto opened = inbox.Pop(id);
  if (!opened.ok()) return SendInboxRefusal(res, opened.status(), req.path);
  if (!*opened) {  // no files (a receipt)
    res.status = 204;
    return;
  }
  std::shared_ptr<AsicStream> zip = *opened;
  res.set_header("Content-Disposition", "attachment; filename=asic.zip");  // as eFormidling
  res.set_content_provider(static_cast<size_t>(zip->size()), kAsicMediaType,
                           [zip, id](size_t offset, size_t length, httplib::DataSink& sink) {
                             auto piece = zip->Read(offset, length);
                             if (!piece.ok() || piece->empty()) {
                               Log()->error(
                                   "message {}: pop stopped at byte {}: {}", id, offset,
                                   piece.ok() ? "nothing more to read" : piece.status().ToString());
                               return false;
                             }
                             return sink.write(piece->data(), piece->size());
                           });
}

void Delete(ApiInbox& inbox, const Req& req, Res& res) {
  auto sbd = inbox.DeleteReturningSbd(req.matches[1].str());
  if (!sbd.ok()) return SendInboxRefusal(res, sbd.status(), req.path);
  SendJson(res, *sbd);
}
}  // namespace

void AddIncomingRoutes(httplib::Server& srv, ApiInbox& inbox, StatusQueries& queries) {
  (void)queries;
  srv.Get("/api/messages/in",
          [&inbox](const Req& req, Res& res) { ListIncoming(inbox, req, res); });
  srv.Get("/api/messages/in/peek", [&inbox](const Req& req, Res& res) { Peek(inbox, req, res); });
  srv.Get(R"(/api/messages/in/pop/([^/]+))",
          [&inbox](const Req& req, Res& res) { Pop(inbox, req, res); });
  srv.Delete(R"(/api/messages/in/([^/]+))",
             [&inbox](const Req& req, Res& res) { Delete(inbox, req, res); });
}

}  // namespace bud::ip::api
