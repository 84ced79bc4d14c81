// Routes of incoming messages kept for the API. See routes.h.
#include <fmt/format.h>

#include "common/http_server.h"
#include "common/log.h"
#include "integration-point/api/http_answer.h"
#include "integration-point/api/query.h"
#include "integration-point/api/routes.h"

namespace bud::ip::api {

namespace {
using Req = httplib::Request;
using Res = httplib::Response;
std::shared_ptr<spdlog::logger> Log() { return Logger("http"); }

void ListIncoming(StatusQueries& queries, const Req& req, Res& res) {
  Query q{req, res};
  ConversationQuery c;
  c.direction = Direction::kIn;
  c.message_id = q.Text("messageId");
  c.conversation_id = q.Text("conversationId");
  c.process = q.Text("process");
  c.orgnr = q.Org("senderIdentifier");
  c.status = "INNKOMMENDE_MOTTATT";
  const int64_t page = q.Page(c.offset, c.limit);
  if (q.failed) return;
  SendResult(res, queries.Messages(c, page), req.path);
}

void Peek(ApiInbox& inbox, const Req& req, Res& res) {
  auto sbd = inbox.Peek(Query{req, res}.Text("process"));
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
  if (!opened.ok()) return SendStatus(res, opened.status(), req.path);
  if (!*opened) {  // no files (a receipt)
    res.status = 204;
    return;
  }
  std::shared_ptr<AsicStream> zip = *opened;
  res.set_header("Content-Disposition", fmt::format("attachment; filename=\"{}.asice\"", id));
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
  Status st = inbox.Delete(req.matches[1].str());
  if (!st.ok()) return SendStatus(res, st, req.path);
  res.status = 200;
}
}  // namespace

void AddIncomingRoutes(httplib::Server& srv, ApiInbox& inbox, StatusQueries& queries) {
  srv.Get("/api/messages/in",
          [&queries](const Req& req, Res& res) { ListIncoming(queries, req, res); });
  srv.Get("/api/messages/in/peek", [&inbox](const Req& req, Res& res) { Peek(inbox, req, res); });
  srv.Get(R"(/api/messages/in/pop/([^/]+))",
          [&inbox](const Req& req, Res& res) { Pop(inbox, req, res); });
  srv.Delete(R"(/api/messages/in/([^/]+))",
             [&inbox](const Req& req, Res& res) { Delete(inbox, req, res); });
}

}  // namespace bud::ip::api
