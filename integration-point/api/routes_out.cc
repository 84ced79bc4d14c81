// Routes of outgoing messages. See routes.h.
#include <fmt/format.h>
#include <strings.h>

#include <cstdlib>

#include "common/fs.h"
#include "common/http_server.h"
#include "integration-point/api/http_answer.h"
#include "integration-point/api/multipart.h"
#include "integration-point/api/query.h"
#include "integration-point/api/routes.h"

namespace bud::ip::api {

namespace {
using Req = httplib::Request;
using Res = httplib::Response;

constexpr const char* kUploadPath = R"(/api/messages/out/([^/]+))";

bool IsMultipartFormData(const std::string& content_type) {
  return content_type.size() >= 19 &&
         strncasecmp(content_type.c_str(), "multipart/form-data", 19) == 0;
}

// The body is read raw and parsed by multipart.h: httplib's own multipart reader (which the
// server would use for this Content-Type) takes quoted names only, not what .NET sends. So the
// Content-Type is taken off the request before the body is read. The server has held the body to
// http.max_upload_bytes by its Content-Length already (a chunked one is refused there).
// `sbd` gets the body's sbd part, when it has one (for the refusal record).
void PostMultipart(OutgoingMessages& outgoing, const Req& req, Res& res,
                   const httplib::ContentReader& read, std::string& sbd) {
  const std::string content_type = req.get_header_value("Content-Type");
  if (!IsMultipartFormData(content_type)) {
    res.set_header("Connection", "close");  // the body is not read
    return SendError(res, 400,
                     "send multipart/form-data with a part 'sbd' (the SBD as JSON) "
                     "and one part per file",
                     req.path);
  }
  // `req` is the server's own (non-const) request, handed to the handler as const.
  const_cast<Req&>(req).headers.erase("Content-Type");
  std::string body;
  const bool complete = read([&](const char* data, size_t n) {
    body.append(data, n);
    return true;
  });
  if (!complete) {
    res.set_header("Connection", "close");
    return SendError(res, 400, "the multipart body ended early", req.path);
  }
  MultipartLimits limits;
  limits.max_parts = outgoing.limits().max_attachments + 1;
  auto parts = ParseMultipart(content_type, body, limits);
  if (!parts.ok()) return SendStatus(res, parts.status(), req.path);
  bool has_sbd = false;
  std::vector<UploadedFile> files;
  for (auto& part : *parts) {
    if (part.name == "sbd" && !has_sbd) {
      has_sbd = true;
      sbd = std::move(part.data);
      continue;
    }
    std::string name = part.filename.empty() ? part.name : part.filename;
    if (part.data.size() > outgoing.limits().max_attachment_bytes) {
      // eFormidling answers a file too large for the one-shot upload with 400.
      return SendError(res, 400,
                       fmt::format("file '{}' has {} bytes, more than the {} a multipart upload "
                                   "may carry (outbox.max_attachment_bytes); send larger files "
                                   "with PUT /api/messages/out/{{messageId}}",
                                   EscapeControl(name), part.data.size(),
                                   outgoing.limits().max_attachment_bytes),
                       req.path, EfmException("MultipartFileToLargeException"));
    }
    files.push_back({std::move(name), part.content_type, std::move(part.data)});
  }
  if (!has_sbd) {
    return SendError(res, 400, "the multipart body has no part named 'sbd'", req.path);
  }
  SendResult(res, outgoing.SendWithFiles(sbd, files), req.path);
}

void PutFile(Drafts& drafts, const Req& req, Res& res, const httplib::ContentReader& read) {
  auto disposition = ParseHeaderParams(req.get_header_value("Content-Disposition"));
  if (!disposition.ok()) {
    res.set_header("Connection", "close");  // the body is not read
    return SendStatus(
        res,
        Status(Code::kInvalidArgument, "Content-Disposition: " + disposition.status().message()),
        req.path);
  }
  FileUpload file{disposition->Get("filename"), disposition->Get("name"),
                  req.get_header_value("Content-Type"), std::nullopt};
  if (req.has_param("title")) file.title = req.get_param_value("title");
  if (req.has_header("Content-Length")) {
    file.announced_bytes =
        std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10);
  }
  Status st = drafts.Upload(req.matches[1].str(), file, [&](const ByteSink& sink) {
    return read([&](const char* data, size_t n) { return sink(data, n); });
  });
  if (!st.ok()) {
    res.set_header("Connection", "close");  // the body may be unread
    return SendStatus(res, st, req.path);
  }
  res.status = 200;
}

// Reads and drops the body of a request that takes none; false (answered 400) when it is more
// than a few bytes.
bool DropSmallBody(const Req& req, Res& res, const httplib::ContentReader& read) {
  constexpr size_t kMaxIgnored = 64 * 1024;
  const bool chunked = req.has_header("Transfer-Encoding");
  if (!chunked && !req.has_header("Content-Length")) return true;
  const std::string refusal = "POST /api/messages/out/{id} sends the message and takes no body";
  if (!chunked &&
      std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10) > kMaxIgnored) {
    res.set_header("Connection", "close");
    SendError(res, 400, refusal, req.path);
    return false;
  }
  size_t seen = 0;
  const bool whole = read([&](const char*, size_t n) {
    seen += n;
    return seen <= kMaxIgnored;
  });
  if (!whole) {
    res.set_header("Connection", "close");
    SendError(res, 400, refusal, req.path);
    return false;
  }
  return true;
}

void DeleteDraft(Drafts& drafts, const Req& req, Res& res) {
  Status st = drafts.Delete(req.matches[1].str());
  if (!st.ok()) return SendStatus(res, st, req.path);
  res.status = 200;
}

void ListOutgoing(StatusQueries& queries, const Req& req, Res& res) {
  Query q{req, res};
  ConversationQuery c;
  c.direction = Direction::kOut;
  c.message_id = q.Text("messageId");
  c.conversation_id = q.Text("conversationId");
  c.process = q.Text("process");
  c.orgnr = q.Org("receiverIdentifier");
  // Only messages not yet sent, as eFormidling's list: one the broker accepted is gone here.
  c.status = "OPPRETTET";
  const int64_t page = q.Page(c.offset, c.limit);
  if (q.failed) return;
  SendResult(res, queries.Messages(c, page), req.path);
}
}  // namespace

bool IsFileUpload(const httplib::Request& req) {
  return req.method == "PUT" && req.path.starts_with("/api/messages/out/") &&
         req.path.find('/', std::string_view("/api/messages/out/").size()) == std::string::npos;
}

bool IsSend(const httplib::Request& req) {
  return req.method == "POST" && req.path.starts_with("/api/messages/out/") &&
         req.path != "/api/messages/out/multipart" &&
         req.path.find('/', std::string_view("/api/messages/out/").size()) == std::string::npos;
}

void AddOutgoingRoutes(httplib::Server& srv, OutgoingMessages& outgoing, Drafts& drafts,
                       StatusQueries& queries, ApiRefusals& refusals) {
  // Every route that takes a body tells `refusals` how it answered (api_refusals.h).
  // Before kUploadPath, which "multipart" would match too.
  srv.Post("/api/messages/out/multipart",
           [&outgoing, &refusals](const Req& req, Res& res, const httplib::ContentReader& read) {
             std::string sbd;
             PostMultipart(outgoing, req, res, read, sbd);
             refusals.Answered(req, res, SbdMessageId(sbd), true);
           });
  srv.Post("/api/messages/out", [&drafts, &refusals](const Req& req, Res& res) {
    SendResult(res, drafts.Create(req.body), req.path);
    refusals.Answered(req, res, SbdMessageId(req.body), false);
  });
  srv.Put(kUploadPath,
          [&drafts, &refusals](const Req& req, Res& res, const httplib::ContentReader& read) {
            PutFile(drafts, req, res, read);
            refusals.Answered(req, res, req.matches[1].str(), false);
          });
  // Send takes no body, and clients send none: the documentation's curl sends neither
  // Content-Length nor Transfer-Encoding, which RFC 9112 reads as an empty body. The route reads
  // what there is itself (httplib would wait for the connection to close): a small body sent
  // anyway is read and dropped, so the connection stays usable.
  // (httplib tries routes that take a ContentReader before the others: "multipart" is kept out.)
  srv.Post(R"(/api/messages/out/((?!multipart$)[^/]+))",
           [&drafts, &refusals](const Req& req, Res& res, const httplib::ContentReader& read) {
             if (DropSmallBody(req, res, read)) {
               SendResult(res, drafts.Send(req.matches[1].str()), req.path);
             }
             refusals.Answered(req, res, req.matches[1].str(), true);
           });
  srv.Delete(kUploadPath, [&drafts](const Req& req, Res& res) { DeleteDraft(drafts, req, res); });
  srv.Get("/api/messages/out",
          [&queries](const Req& req, Res& res) { ListOutgoing(queries, req, res); });
  srv.Get(kUploadPath, [&drafts](const Req& req, Res& res) {
    SendResult(res, drafts.Get(req.matches[1].str()), req.path);
  });
}

}  // namespace bud::ip::api
