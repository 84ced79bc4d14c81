// Routes of the status page, health, metrics, capabilities, statuses and conversations. See
// routes.h.
#include <cstdlib>

#include "common/clock.h"
#include "common/fs.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "integration-point/api/http_answer.h"
#include "integration-point/api/query.h"
#include "integration-point/api/routes.h"
#include "integration-point/status_page.h"

namespace bud::ip::api {

namespace {
using Req = httplib::Request;
using Res = httplib::Response;

const std::vector<std::string> kConversationSort = {"id",
                                                    "lastUpdate",
                                                    "created",
                                                    "expiry",
                                                    "messageId",
                                                    "conversationId",
                                                    "senderIdentifier",
                                                    "receiverIdentifier",
                                                    "processIdentifier",
                                                    "messageTitle",
                                                    "messageReference",
                                                    "direction",
                                                    "status"};

void Statuses(StatusQueries& queries, const Req& req, Res& res, const std::string& message_id) {
  Query q{req, res};
  StatusQuery s;
  s.message_id = message_id.empty() ? q.Text("messageId") : message_id;
  s.status = q.StatusName("status");
  s.direction = q.Direction("direction");
  s.from_ms = q.Time("fromDateTime");
  s.to_ms = q.Time("toDateTime");
  s.sort = q.Sort({"id", "lastUpdate", "status", "messageId", "conversationId"});
  const int64_t page = q.Page(s.offset, s.limit);
  if (q.failed) return;
  SendResult(res, queries.Statuses(s, page), req.path);
}

void PeekStatus(StatusQueries& queries, const Req& req, Res& res) {
  auto line = queries.PeekStatus();
  if (!line.ok()) return SendStatus(res, line.status(), req.path);
  if (!*line) {
    res.status = 204;
    return;
  }
  SendJson(res, **line);
}

void Conversations(StatusQueries& queries, const Req& req, Res& res, bool unfinished) {
  Query q{req, res};
  ConversationQuery c;
  c.message_id = q.Text("messageId");
  c.conversation_id = q.Text("conversationId");
  c.direction = q.Direction("direction");
  c.status = q.StatusName("status");
  c.orgnr = q.Org("orgnr");
  // eFormidling's party filters: `sender`/`receiver` as ISO 6523 ("0192:<orgnr>"), and
  // `senderIdentifier`/`receiverIdentifier`; ours are the same party (no sub-units stored).
  c.sender = q.Org("sender");
  if (c.sender.empty()) c.sender = q.Org("senderIdentifier");
  c.receiver = q.Org("receiver");
  if (c.receiver.empty()) c.receiver = q.Org("receiverIdentifier");
  c.process = q.Text("process");
  c.message_reference = q.Text("messageReference");
  if (req.has_param("messageTitle")) c.title = req.get_param_value("messageTitle");
  c.from_ms = q.Time("fromDateTime");
  c.to_ms = q.Time("toDateTime");
  c.unfinished_only = unfinished;
  c.sort = q.Sort(kConversationSort);
  const int64_t page = q.Page(c.offset, c.limit);
  if (q.failed) return;
  SendResult(res, queries.Conversations(c, page), req.path);
}

void ConversationById(StatusQueries& queries, const Req& req, Res& res) {
  ConversationQuery c;
  c.id = std::strtoll(req.matches[1].str().c_str(), nullptr, 10);
  if (c.id <= 0) return SendError(res, 404, "no conversation " + req.matches[1].str(), req.path);
  SendResult(res, queries.Conversation(c, req.matches[1].str()), req.path);
}

void AddObservationRoutes(httplib::Server& srv, StatusQueries& queries) {
  srv.Get("/", [](const Req&, Res& res) {
    res.set_content(std::string(kStatusPageHtml), "text/html; charset=utf-8");
  });
  srv.Get("/healthz", [&queries](const Req&, Res& res) {
    Health h = queries.HealthNow();
    SendJson(res, h.body, h.store_ok ? 200 : 503);
  });
  srv.Get("/health", [&queries](const Req&, Res& res) {
    Readiness r = queries.ReadinessNow();
    SendJson(res, r.body, r.ok ? 200 : 503);
  });
  srv.Get("/manage/health", [&queries](const Req& req, Res& res) {
    Status usable = queries.StoreUsable();
    if (!usable.ok()) {
      Logger("http")->error("{}: the store cannot be used: {}", req.path, usable.ToString());
    }
    SendJson(res, {{"status", usable.ok() ? "UP" : "DOWN"}}, usable.ok() ? 200 : 503);
  });
  srv.Get("/metrics", [&queries](const Req&, Res& res) {
    res.set_content(queries.MetricsText(), metrics::kContentType);
  });
  srv.Get("/api/overview", [&queries](const Req& req, Res& res) {
    SendResult(res, queries.Overview(NowMs()), req.path);
  });
  // The refused intake, for tools (`bud-ip status --failed` on the command line); ?all=true
  // with the resolved ones.
  srv.Get("/api/refusals", [&queries](const Req& req, Res& res) {
    SendResult(res, queries.Refusals(Query{req, res}.Text("all") == "true"), req.path);
  });
  srv.Get(R"(/api/capabilities/([^/]+))", [&queries](const Req& req, Res& res) {
    SendResult(res, queries.Capabilities(req.matches[1].str(), Query{req, res}.Text("process")),
               req.path);
  });
}
}  // namespace

void AddStatusRoutes(httplib::Server& srv, StatusQueries& queries) {
  AddObservationRoutes(srv, queries);
  srv.Get("/api/statuses",
          [&queries](const Req& req, Res& res) { Statuses(queries, req, res, ""); });
  // Before /api/statuses/{messageId}, which "peek" would match too.
  srv.Get("/api/statuses/peek",
          [&queries](const Req& req, Res& res) { PeekStatus(queries, req, res); });
  srv.Get(R"(/api/statuses/([^/]+))", [&queries](const Req& req, Res& res) {
    Statuses(queries, req, res, req.matches[1].str());
  });
  srv.Delete(R"(/api/statuses/([^/]+))", [&queries](const Req& req, Res& res) {
    Status st = queries.RemoveStatus(req.matches[1].str());
    if (!st.ok()) return SendStatus(res, st, req.path);
    res.status = 200;
  });
  srv.Get("/api/conversations",
          [&queries](const Req& req, Res& res) { Conversations(queries, req, res, false); });
  srv.Get("/api/conversations/queue",
          [&queries](const Req& req, Res& res) { Conversations(queries, req, res, true); });
  srv.Get(R"(/api/conversations/messageId/([^/]+))", [&queries](const Req& req, Res& res) {
    ConversationQuery c;
    c.message_id = req.matches[1].str();
    SendResult(res, queries.Conversation(c, "for message " + c.message_id), req.path);
  });
  srv.Get(R"(/api/conversations/(\d+))",
          [&queries](const Req& req, Res& res) { ConversationById(queries, req, res); });
  // eFormidling removes the conversation record (with its statuses) and answers 200, also when
  // there was none; ours hides it (docs/http-api.md, "Deleting a conversation").
  srv.Delete(R"(/api/conversations/messageId/([^/]+))", [&queries](const Req& req, Res& res) {
    Status st = queries.DeleteConversations(0, req.matches[1].str(), NowMs());
    if (!st.ok()) return SendStatus(res, st, req.path);
    res.status = 200;
  });
  srv.Delete(R"(/api/conversations/([^/]+))", [&queries](const Req& req, Res& res) {
    const std::string text = req.matches[1].str();
    char* end = nullptr;
    const long long id = std::strtoll(text.c_str(), &end, 10);
    if (text.size() > 18 || end != text.c_str() + text.size() || id <= 0) {
      // Spring's answer to a path variable that is not a Long.
      return SendStatus(
          res,
          Status(Code::kInvalidArgument,
                 "conversation id '" + EscapeControl(text.substr(0, 40)) + "' is not a number"),
          req.path, 400,
          "org.springframework.web.method.annotation."
          "MethodArgumentTypeMismatchException");
    }
    Status st = queries.DeleteConversations(id, "", NowMs());
    if (!st.ok()) return SendStatus(res, st, req.path);
    res.status = 200;
  });
}

}  // namespace bud::ip::api
