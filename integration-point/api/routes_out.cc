// Routes of outgoing messages. See routes.h.
#include <fmt/format.h>

#include <cstdlib>

#include "common/http_server.h"
#include "integration-point/api/http_answer.h"
#include "integration-point/api/query.h"
#include "integration-point/api/routes.h"

namespace bud::ip::api {

namespace {
using Req = httplib::Request;
using Res = httplib::Response;

constexpr const char* kUploadPath = R"(/api/messages/out/([^/]+))";

void PostMultipart(OutgoingMessages& outgoing, const Req& req, Res& res) {
  if (!req.is_multipart_form_data()) {
    return SendError(res, 400,
                     "send multipart/form-data with a part 'sbd' (the SBD as JSON) "
                     "and one part per file",
                     req.path);
  }
  if (!req.has_file("sbd")) {
    return SendError(res, 400, "the multipart body has no part named 'sbd'", req.path);
  }
  std::vector<UploadedFile> files;
  for (const auto& [part, file] : req.files) {
    if (part == "sbd") continue;
    files.push_back(
        {file.filename.empty() ? file.name : file.filename, file.content_type, file.content});
  }
  SendResult(res, outgoing.SendWithFiles(req.get_file_value("sbd").content, files), req.path);
}

void PutFile(Drafts& drafts, const Req& req, Res& res, const httplib::ContentReader& read) {
  const std::string disposition = req.get_header_value("Content-Disposition");
  FileUpload file{DispositionParam(disposition, "filename"), DispositionParam(disposition, "name"),
                  req.get_header_value("Content-Type"), std::nullopt};
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

std::string DispositionParam(const std::string& header, const std::string& key) {
  size_t pos = 0;
  while ((pos = header.find(key + "=", pos)) != std::string::npos) {
    if (pos > 0 && header[pos - 1] != ' ' && header[pos - 1] != ';') {
      pos += key.size();
      continue;
    }
    pos += key.size() + 1;
    if (pos < header.size() && header[pos] == '"') {
      auto end = header.find('"', pos + 1);
      return header.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
    }
    auto end = header.find(';', pos);
    std::string v = header.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    while (!v.empty() && v.back() == ' ') v.pop_back();
    return v;
  }
  return "";
}

void AddOutgoingRoutes(httplib::Server& srv, OutgoingMessages& outgoing, Drafts& drafts,
                       StatusQueries& queries) {
  // Before kUploadPath, which "multipart" would match too.
  srv.Post("/api/messages/out/multipart",
           [&outgoing](const Req& req, Res& res) { PostMultipart(outgoing, req, res); });
  srv.Post("/api/messages/out", [&drafts](const Req& req, Res& res) {
    SendResult(res, drafts.Create(req.body), req.path);
  });
  srv.Put(kUploadPath, [&drafts](const Req& req, Res& res, const httplib::ContentReader& read) {
    PutFile(drafts, req, res, read);
  });
  // Send takes no body, and clients send none: the documentation's curl sends neither
  // Content-Length nor Transfer-Encoding, which RFC 9112 reads as an empty body. The route reads
  // what there is itself (httplib would wait for the connection to close): a small body sent
  // anyway is read and dropped, so the connection stays usable.
  // (httplib tries routes that take a ContentReader before the others: "multipart" is kept out.)
  srv.Post(R"(/api/messages/out/((?!multipart$)[^/]+))",
           [&drafts](const Req& req, Res& res, const httplib::ContentReader& read) {
             if (!DropSmallBody(req, res, read)) return;
             SendResult(res, drafts.Send(req.matches[1].str()), req.path);
           });
  srv.Delete(kUploadPath, [&drafts](const Req& req, Res& res) { DeleteDraft(drafts, req, res); });
  srv.Get("/api/messages/out",
          [&queries](const Req& req, Res& res) { ListOutgoing(queries, req, res); });
  srv.Get(kUploadPath, [&drafts](const Req& req, Res& res) {
    SendResult(res, drafts.Get(req.matches[1].str()), req.path);
  });
}

}  // namespace bud::ip::api
