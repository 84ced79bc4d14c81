// The integration point's HTTP API. See http_api.h and docs/http-api.md.
#include "integration-point/http_api.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/clock.h"
#include "common/crypto/certs.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/payload.h"
#include "common/uuid.h"
#include "integration-point/asic.h"
#include "integration-point/receiver.h"
#include "integration-point/sbd.h"
#include "integration-point/status_view.h"
#include "integration-point/status_page.h"

namespace bud::ip {

namespace {
using nlohmann::json;
std::shared_ptr<spdlog::logger> Log() { return Logger("http"); }

constexpr int64_t kMaxPageSize = 1000;

std::string Describe(const std::string& status, const std::string& reason) {
  if (!reason.empty()) return reason;
  static const std::map<std::string, std::string> kText = {
      {"OPPRETTET", "Taken in by the sender's integration point"},
      {"SENDT", "Accepted and stored by the broker"},
      {"MOTTATT", "Verified and decrypted by the receiver's integration point"},
      {"LEVERT", "Delivered to the receiver's archive system"},
      {"LEST", "Read by the receiver"},
      {"FEIL", "Failed"},
      {"LEVETID_UTLOPT", "Expired before it was delivered"},
      {"INNKOMMENDE_MOTTATT", "Received; waiting for the archive system"},
      {"INNKOMMENDE_LEVERT", "Taken by the archive system"},
  };
  auto it = kText.find(status);
  return it == kText.end() ? status : it->second;
}

std::string DirectionName(const std::string& d) { return d == "OUT" ? "OUTGOING" : "INCOMING"; }

// Query parameters, validated; a bad one becomes a 400 naming it.
struct Query {
  const httplib::Request& req;
  httplib::Response& res;
  bool failed = false;

  std::string Text(const char* name) {
    return req.has_param(name) ? req.get_param_value(name) : std::string();
  }
  int64_t Int(const char* name, int64_t def, int64_t lo, int64_t hi) {
    if (!req.has_param(name)) return def;
    const std::string v = req.get_param_value(name);
    char* end = nullptr;
    long long n = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < lo || n > hi) {
      Fail(fmt::format("query parameter '{}' must be a whole number from {} to {} (got '{}')",
                       name, lo, hi, v));
      return def;
    }
    return n;
  }
  int64_t Time(const char* name) {
    if (!req.has_param(name)) return 0;
    const std::string v = req.get_param_value(name);
    auto t = ParseTime(v);
    if (!t) {
      Fail(fmt::format("query parameter '{}' must be an ISO 8601 time such as "
                       "2026-12-01T12:00:00+01:00 (got '{}')",
                       name, v));
      return 0;
    }
    return *t;
  }
  std::string StatusName(const char* name) {
    std::string v = Text(name);
    if (!v.empty() && !StatusFromName(v)) Fail(fmt::format("'{}' is not a known status", v));
    return v;
  }
  std::string Direction(const char* name) {
    std::string v = Text(name);
    if (v.empty()) return v;
    if (v == "OUTGOING" || v == "OUT") return "OUT";
    if (v == "INCOMING" || v == "IN") return "IN";
    Fail(fmt::format("query parameter '{}' must be OUTGOING or INCOMING (got '{}')", name, v));
    return "";
  }
  std::string Org(const char* name) {
    std::string v = Text(name);
    if (v.empty()) return v;
    auto o = Orgnr::Parse(v);
    if (!o.ok()) {
      Fail(fmt::format("query parameter '{}': {}", name, o.status().message()));
      return "";
    }
    return o->wire();
  }
  // page (from 0) and size (1..kMaxPageSize, default 20) -> offset/limit; returns the page.
  int64_t Page(int64_t& offset, int64_t& limit) {
    const int64_t page = Int("page", 0, 0, 1000000);
    limit = Int("size", 20, 1, kMaxPageSize);
    offset = page * limit;
    return page;
  }
  void Fail(const std::string& message) {
    if (!failed) SendError(res, 400, message, req.path);
    failed = true;
  }
};

template <typename T>
json PageJson(json content, const Paged<T>& page, int64_t number, int64_t size) {
  const int64_t pages = size > 0 ? (page.total + size - 1) / size : 0;
  const auto n = static_cast<int64_t>(content.size());
  return {{"content", std::move(content)},
          {"totalElements", page.total},
          {"totalPages", pages},
          {"number", number},
          {"size", size},
          {"numberOfElements", n},
          {"first", number == 0},
          {"last", number + 1 >= pages},
          {"empty", n == 0}};
}

// A page of `rows` as JSON, each item through `to_json`; a store error as its HTTP status.
template <typename T, typename F>
void SendPage(const httplib::Request& req, httplib::Response& res, const Result<Paged<T>>& rows,
              int64_t page, int64_t size, F to_json) {
  if (!rows.ok()) {
    return SendError(res, rows.status().code() == Code::kBusy ? 503 : 500,
                     rows.status().ToString(), req.path);
  }
  json content = json::array();
  for (const auto& item : rows->items) content.push_back(to_json(item));
  SendJson(res, PageJson(std::move(content), *rows, page, size));
}

json StatusJson(const StatusItem& s) {
  return {{"id", s.id},
          {"lastUpdate", FormatTime(s.at_ms)},
          {"status", s.status},
          {"description", Describe(s.status, s.reason)},
          {"conversationId", s.conversation_id},
          {"messageId", s.message_id},
          {"direction", DirectionName(s.direction)}};
}

// Content-Disposition: attachment; name="Title"; filename="file.pdf" (filename* not needed for
// the clients we know; plain UTF-8 is accepted).
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

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kInvalidArgument:
    case Code::kBadOrgnr:
    case Code::kMalformed: return 400;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 409;
    case Code::kUnavailable:
    case Code::kBusy:
    case Code::kDiskFull: return 503;
    default: return 500;
  }
}
}  // namespace

HttpApi::HttpApi(const Config& config, const EngineMetrics& metrics, zmq::context_t& ctx,
                 std::function<void()> wake, std::function<Status(MessageRow)> take_in)
    : config_(config),
      metrics_(metrics),
      ctx_(ctx),
      wake_(std::move(wake)),
      take_in_(std::move(take_in)),
      me_(config.me()) {}

HttpApi::~HttpApi() { server_.reset(); }  // stop serving before the store goes

OutboxLimits HttpApi::Limits() const {
  return {static_cast<size_t>(config_.max_attachments),
          static_cast<size_t>(config_.max_attachment_bytes), config_.default_ttl_ms};
}

Status HttpApi::Start() {
  BUD_ASSIGN_OR_RETURN(store_, Store::Open(config_.store));
  std::optional<wire::CurveKeyPair> curve;
  if (!config_.curve_key_file.empty()) {
    BUD_ASSIGN_OR_RETURN(curve, wire::LoadCurveKeyFile(config_.curve_key_file));
  }
  registry_ = std::make_unique<RegistryClient>(ctx_, config_.registry_endpoint,
                                               config_.registry_timeout_ms,
                                               config_.registry_cache_ms, curve,
                                               config_.registry_server_key);
  for (const auto& [label, path] : {std::pair<std::string, std::string>{"signing", config_.signing_cert},
                                    {"encryption", config_.encryption_cert},
                                    {"next_encryption", config_.next_encryption_cert}}) {
    if (path.empty()) continue;
    BUD_ASSIGN_OR_RETURN(auto cert, crypto::LoadCertFile(path));
    certs_.emplace_back(label, std::move(cert));
  }
  BUD_ASSIGN_OR_RETURN(server_,
                       HttpServer::Start(config_.http, [this](httplib::Server& s) { Routes(s); }));
  return Status::Ok();
}

void HttpApi::SendOutStatus(const Status& st, const httplib::Request& req, httplib::Response& res) {
  SendError(res, HttpStatusFor(st.code()), st.message(), req.path);
}

void HttpApi::Submit(OutgoingDraft d, const json& sbd, const httplib::Request& req,
                     httplib::Response& res) {
  if (d.payload.attachments_size() == 0) {
    return SendError(res, 400, "the message has no attachments: send at least one file", req.path);
  }
  // The business message's main document must be one of the files.
  const std::string type = DocumentTypeName(d.document_type);
  if (sbd.contains(type) && sbd[type].contains("hoveddokument") &&
      sbd[type]["hoveddokument"].is_string()) {
    const std::string main = sbd[type]["hoveddokument"];
    bool found = false;
    for (const auto& a : d.payload.attachments()) found = found || a.name() == main;
    if (!found) {
      return SendError(res, 400,
                       fmt::format("{}.hoveddokument names '{}' but no attachment has that name",
                                   type, main),
                       req.path);
    }
  }
  Result<wire::RegistryEntry> entry = [&] {
    std::lock_guard lock(registry_mu_);
    return CheckReceiver(*registry_, d.receiver, d.process, d.document_type);
  }();
  if (!entry.ok()) {
    if (entry.status().code() == Code::kNotFound) {
      return SendError(res, 400,
                       fmt::format("receiver {} is not in the address registry", d.receiver.wire()),
                       req.path);
    }
    return SendOutStatus(entry.status(), req, res);
  }
  MessageRow row;
  row.message_id = d.message_id;
  row.conversation_id = d.conversation_id;
  row.sender = me_.wire();
  row.receiver = d.receiver.wire();
  row.process = d.process;
  row.document_type = d.document_type;
  row.title = d.title;
  row.created_ms = d.created_ms;
  row.expires_ms = d.expires_ms;
  d.payload.SerializeToString(&row.payload);
  const std::string id = row.message_id, receiver = row.receiver;
  Status st = take_in_(std::move(row));
  if (!st.ok()) return SendOutStatus(st, req, res);
  Log()->info("message {} to {} taken in through the API (OPPRETTET, {} attachment(s))", id,
              receiver, d.payload.attachments_size());
  SendJson(res, sbd);
}

json HttpApi::ConversationJson(const MessageRow& m) {
  json statuses = json::array();
  auto hist = store_->History(m.message_id, m.direction);
  if (hist.ok()) {
    for (const auto& h : *hist) {
      statuses.push_back({{"status", h.status},
                          {"description", Describe(h.status, h.reason)},
                          {"lastUpdate", FormatTime(h.at_ms)},
                          {"current", h.current}});
    }
  }
  auto st = StatusFromName(m.status);
  json out = {{"id", m.id},
          {"conversationId", m.conversation_id},
          {"messageId", m.message_id},
          {"senderIdentifier", m.sender},
          {"receiverIdentifier", m.receiver},
          {"processIdentifier", m.process},
          {"documentIdentifier", m.document_type},
          {"serviceIdentifier", "DPO"},
          {"messageTitle", m.title},
          {"lastUpdate", FormatTime(m.updated_ms)},
          {"created", FormatTime(m.created_ms)},
          {"expiry", FormatTime(m.expires_ms)},
          {"finished", st && IsFinal(*st)},
          {"direction", DirectionName(m.direction)},
          {"status", m.status},
          {"messageStatuses", statuses}};
  // A streamed message: its transfer's progress, as `bud-ip status --json` gives it.
  if (auto transfer = store_->Transfer(m.message_id, m.direction); transfer.ok() && *transfer) {
    out["transfer"] = TransferJson(**transfer);
  }
  return out;
}

json HttpApi::IncomingSbd(const MessageRow& m) {
  std::string metadata;
  auto full = store_->Get(m.message_id, "IN");
  if (full.ok() && full->has_value()) {
    wire::Payload p;
    if (p.ParseFromString((*full)->payload)) metadata = p.metadata_json();
  }
  return SbdOf(m, metadata);
}

void HttpApi::Routes(httplib::Server& srv) {
  // --- status page, health, metrics ------------------------------------------------------
  srv.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(kStatusPageHtml), "text/html; charset=utf-8");
  });
  srv.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    Status store_ok;
    {
      std::lock_guard lock(store_mu_);
      store_ok = store_->PendingReportCount().status();
    }
    const bool broker = metrics_.broker_connected.load() != 0;
    json body = {{"status", store_ok.ok() ? (broker ? "UP" : "DEGRADED") : "DOWN"},
                 {"store", store_ok.ok() ? "ok" : store_ok.ToString()},
                 {"broker", broker ? "connected" : "disconnected"},
                 {"orgnr", me_.wire()}};
    SendJson(res, body, store_ok.ok() ? 200 : 503);
  });
  srv.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(Metrics(), metrics::kContentType);
  });

  // --- capabilities ----------------------------------------------------------------------
  srv.Get(R"(/api/capabilities/([^/]+))", [this](const httplib::Request& req,
                                                  httplib::Response& res) {
    auto org = Orgnr::Parse(req.matches[1].str());
    if (!org.ok()) return SendError(res, 400, org.status().message(), req.path);
    Result<wire::RegistryEntry> entry = [&] {
      std::lock_guard lock(registry_mu_);
      return registry_->Lookup(*org);
    }();
    json caps = json::array();
    if (!entry.ok() && entry.status().code() != Code::kNotFound) {
      return SendOutStatus(entry.status(), req, res);
    }
    const std::string process_filter =
        req.has_param("process") ? req.get_param_value("process") : "";
    if (entry.ok()) {
      json types = json::array();
      for (const auto& t : entry->document_types()) {
        types.push_back({{"type", DocumentTypeName(t)}, {"standard", t}});
      }
      for (const auto& p : entry->processes()) {
        if (!process_filter.empty() && p != process_filter) continue;
        caps.push_back({{"process", p}, {"serviceIdentifier", "DPO"}, {"documentTypes", types}});
      }
    }
    SendJson(res, {{"capabilities", caps}});
  });

  // --- outgoing --------------------------------------------------------------------------
  srv.Post("/api/messages/out/multipart", [this](const httplib::Request& req,
                                                 httplib::Response& res) {
    if (!req.is_multipart_form_data()) {
      return SendError(res, 400, "send multipart/form-data with a part 'sbd' (the SBD as JSON) "
                                 "and one part per file", req.path);
    }
    if (!req.has_file("sbd")) {
      return SendError(res, 400, "the multipart body has no part named 'sbd'", req.path);
    }
    json body = json::parse(req.get_file_value("sbd").content, nullptr, false);
    if (body.is_discarded()) return SendError(res, 400, "part 'sbd' is not valid JSON", req.path);
    json sbd;
    auto draft = ParseSbd(body, me_, Limits(), &sbd);
    if (!draft.ok()) return SendOutStatus(draft.status(), req, res);
    for (const auto& [part, file] : req.files) {
      if (part == "sbd") continue;
      const std::string name = file.filename.empty() ? file.name : file.filename;
      Status added = AddAttachment(*draft, name, file.content_type, file.content, Limits());
      if (!added.ok()) return SendOutStatus(added, req, res);
    }
    Submit(std::move(*draft), sbd, req, res);
  });

  srv.Post("/api/messages/out", [this](const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded()) return SendError(res, 400, "the body is not valid JSON", req.path);
    json sbd;
    auto draft = ParseSbd(body, me_, Limits(), &sbd);
    if (!draft.ok()) return SendOutStatus(draft.status(), req, res);
    Result<wire::RegistryEntry> entry = [&] {
      std::lock_guard lock(registry_mu_);
      return CheckReceiver(*registry_, draft->receiver, draft->process, draft->document_type);
    }();
    if (!entry.ok()) {
      if (entry.status().code() == Code::kNotFound) {
        return SendError(res, 400, fmt::format("receiver {} is not in the address registry",
                                               draft->receiver.wire()), req.path);
      }
      return SendOutStatus(entry.status(), req, res);
    }
    Status st;
    {
      std::lock_guard lock(store_mu_);
      st = store_->CreateDraft(draft->message_id, sbd.dump());
    }
    if (!st.ok()) return SendOutStatus(st, req, res);
    SendJson(res, sbd);
  });

  srv.Put(R"(/api/messages/out/([^/]+))", [this](const httplib::Request& req,
                                                  httplib::Response& res) {
    const std::string id = req.matches[1].str();
    const std::string disposition = req.get_header_value("Content-Disposition");
    std::string filename = DispositionParam(disposition, "filename");
    if (filename.empty()) {
      return SendError(res, 400, "Content-Disposition needs a filename, e.g. 'attachment; "
                                 "name=\"Title\"; filename=\"file.pdf\"'", req.path);
    }
    std::lock_guard lock(store_mu_);
    auto sbd = store_->GetDraft(id);
    if (!sbd.ok()) return SendOutStatus(sbd.status(), req, res);
    if (!*sbd) {
      return SendError(res, 404, fmt::format("no created, unsent message {} (POST "
                                             "/api/messages/out creates one)", id), req.path);
    }
    auto files = store_->DraftFiles(id);
    if (!files.ok()) return SendOutStatus(files.status(), req, res);
    OutgoingDraft check{.message_id = id, .conversation_id = {}, .receiver = me_, .process = {},
                        .document_type = {}, .title = {}, .created_ms = 0, .expires_ms = 0,
                        .payload = {}};
    for (const auto& f : *files) {
      if (f.name != filename) check.payload.add_attachments()->set_name(f.name);
    }
    Status ok = CheckAttachmentLimits(check, filename, req.body.size(), Limits());
    if (!ok.ok()) return SendOutStatus(ok, req, res);
    std::string media = req.get_header_value("Content-Type");
    if (media.empty()) media = GuessMediaType(filename);
    Status st = store_->AddDraftFile(
        id, {filename, DispositionParam(disposition, "name"), media, req.body});
    if (!st.ok()) return SendOutStatus(st, req, res);
    res.status = 200;
  });

  srv.Post(R"(/api/messages/out/([^/]+))", [this](const httplib::Request& req,
                                                   httplib::Response& res) {
    const std::string id = req.matches[1].str();
    Result<std::optional<std::string>> sbd_text = std::optional<std::string>();
    Result<std::vector<DraftFile>> files = std::vector<DraftFile>();
    {
      std::lock_guard lock(store_mu_);
      sbd_text = store_->GetDraft(id);
      if (sbd_text.ok() && *sbd_text) files = store_->DraftFiles(id);
    }
    if (!sbd_text.ok()) return SendOutStatus(sbd_text.status(), req, res);
    if (!*sbd_text) {
      return SendError(res, 404, fmt::format("no created, unsent message {}", id), req.path);
    }
    if (!files.ok()) return SendOutStatus(files.status(), req, res);
    json stored = json::parse(**sbd_text, nullptr, false);
    json sbd;
    auto draft = ParseSbd(stored, me_, Limits(), &sbd);
    if (!draft.ok()) return SendOutStatus(draft.status(), req, res);
    for (auto& f : *files) {
      Status added = AddAttachment(*draft, f.name, f.media_type, std::move(f.data), Limits());
      if (!added.ok()) return SendOutStatus(added, req, res);
    }
    Submit(std::move(*draft), sbd, req, res);
  });

  srv.Delete(R"(/api/messages/out/([^/]+))", [this](const httplib::Request& req,
                                                     httplib::Response& res) {
    const std::string id = req.matches[1].str();
    std::lock_guard lock(store_mu_);
    Status st = store_->DeleteDraft(id);
    if (st.code() == Code::kNotFound) {
      auto sent = store_->HasMessage(id, "OUT");
      if (sent.ok() && *sent) {
        return SendError(res, 409, fmt::format("message {} was already sent and cannot be "
                                               "removed; follow it in /api/statuses/{}", id, id),
                         req.path);
      }
    }
    if (!st.ok()) return SendOutStatus(st, req, res);
    res.status = 200;
  });

  auto list_messages = [this](const std::string& direction) {
    return [this, direction](const httplib::Request& req, httplib::Response& res) {
      Query q{req, res};
      ConversationQuery c;
      c.direction = direction;
      c.message_id = q.Text("messageId");
      c.conversation_id = q.Text("conversationId");
      c.process = q.Text("process");
      c.orgnr = q.Org(direction == "IN" ? "senderIdentifier" : "receiverIdentifier");
      if (direction == "IN") c.status = "INNKOMMENDE_MOTTATT";
      const int64_t page = q.Page(c.offset, c.limit);
      if (q.failed) return;
      std::lock_guard lock(store_mu_);
      SendPage(req, res, store_->Conversations(c), page, c.limit, [&](const MessageRow& m) {
        return direction == "IN" ? IncomingSbd(m) : SbdOf(m, "");
      });
    };
  };
  srv.Get("/api/messages/out", list_messages("OUT"));

  srv.Get(R"(/api/messages/out/([^/]+))", [this](const httplib::Request& req,
                                                  httplib::Response& res) {
    const std::string id = req.matches[1].str();
    std::lock_guard lock(store_mu_);
    auto draft = store_->GetDraft(id);
    if (draft.ok() && *draft) {
      json sbd = json::parse(**draft, nullptr, false);
      return SendJson(res, sbd);
    }
    auto row = store_->Get(id, "OUT");
    if (!row.ok()) return SendOutStatus(row.status(), req, res);
    if (!*row) return SendError(res, 404, fmt::format("no outgoing message {}", id), req.path);
    SendJson(res, SbdOf(**row, ""));
  });

  // --- incoming --------------------------------------------------------------------------
  srv.Get("/api/messages/in", list_messages("IN"));

  srv.Get("/api/messages/in/peek", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string process = req.has_param("process") ? req.get_param_value("process") : "";
    std::lock_guard lock(store_mu_);
    auto row = store_->PeekIncoming(NowMs(), config_.peek_lock_ms, process);
    if (!row.ok()) return SendOutStatus(row.status(), req, res);
    if (!*row) {
      res.status = 204;
      return;
    }
    Log()->info("message {} peeked (locked until {})", (*row)->message_id,
                FormatTime((*row)->lock_until_ms));
    SendJson(res, IncomingSbd(**row));
  });

  srv.Get(R"(/api/messages/in/pop/([^/]+))", [this](const httplib::Request& req,
                                                     httplib::Response& res) {
    const std::string id = req.matches[1].str();
    Result<MessageRow> row = Status(Code::kInternal, "");
    {
      std::lock_guard lock(store_mu_);
      row = store_->LockedIncoming(id, NowMs());
    }
    if (!row.ok()) {
      return SendError(res, row.status().code() == Code::kInvalidArgument ? 409 : 404,
                       row.status().message(), req.path);
    }
    wire::Payload payload;
    if (!payload.ParseFromString(row->payload)) {
      return SendError(res, 500, fmt::format("stored message {} cannot be read", id), req.path);
    }
    auto zip = MakeAsice(payload);
    if (!zip.ok()) return SendOutStatus(zip.status(), req, res);
    res.set_header("Content-Disposition", fmt::format("attachment; filename=\"{}.asice\"", id));
    res.set_content(std::move(*zip), kAsicMediaType);
  });

  srv.Delete(R"(/api/messages/in/([^/]+))", [this](const httplib::Request& req,
                                                    httplib::Response& res) {
    const std::string id = req.matches[1].str();
    Status st;
    {
      std::lock_guard lock(store_mu_);
      st = store_->DeliverIncoming(id, NowMs());
    }
    if (!st.ok()) {
      return SendError(res, st.code() == Code::kInvalidArgument ? 409 : HttpStatusFor(st.code()),
                       st.message(), req.path);
    }
    Log()->info("message {} deleted through the API (INNKOMMENDE_LEVERT); reporting LEVERT", id);
    wake_();
    res.status = 200;
  });

  // --- statuses --------------------------------------------------------------------------
  auto statuses = [this](const httplib::Request& req, httplib::Response& res,
                         const std::string& message_id) {
    Query q{req, res};
    StatusQuery s;
    s.message_id = message_id.empty() ? q.Text("messageId") : message_id;
    s.status = q.StatusName("status");
    s.direction = q.Direction("direction");
    s.from_ms = q.Time("fromDateTime");
    s.to_ms = q.Time("toDateTime");
    const int64_t page = q.Page(s.offset, s.limit);
    if (q.failed) return;
    std::lock_guard lock(store_mu_);
    SendPage(req, res, store_->Statuses(s), page, s.limit, StatusJson);
  };
  srv.Get("/api/statuses", [statuses](const httplib::Request& req, httplib::Response& res) {
    statuses(req, res, "");
  });
  srv.Get("/api/statuses/peek", [this](const httplib::Request& req, httplib::Response& res) {
    StatusQuery s;
    s.limit = 1;
    s.newest_first = true;
    std::lock_guard lock(store_mu_);
    auto rows = store_->Statuses(s);
    if (!rows.ok()) return SendOutStatus(rows.status(), req, res);
    if (rows->items.empty()) {
      res.status = 204;
      return;
    }
    SendJson(res, StatusJson(rows->items.front()));
  });
  srv.Get(R"(/api/statuses/([^/]+))", [statuses](const httplib::Request& req,
                                                 httplib::Response& res) {
    statuses(req, res, req.matches[1].str());
  });

  // --- conversations ---------------------------------------------------------------------
  auto conversations = [this](const httplib::Request& req, httplib::Response& res,
                              bool unfinished) {
    Query q{req, res};
    ConversationQuery c;
    c.message_id = q.Text("messageId");
    c.conversation_id = q.Text("conversationId");
    c.direction = q.Direction("direction");
    c.status = q.StatusName("status");
    c.orgnr = q.Org("orgnr");
    c.process = q.Text("process");
    c.from_ms = q.Time("fromDateTime");
    c.to_ms = q.Time("toDateTime");
    c.unfinished_only = unfinished;
    const int64_t page = q.Page(c.offset, c.limit);
    if (q.failed) return;
    std::lock_guard lock(store_mu_);
    SendPage(req, res, store_->Conversations(c), page, c.limit,
             [this](const MessageRow& m) { return ConversationJson(m); });
  };
  srv.Get("/api/conversations", [conversations](const httplib::Request& req,
                                                httplib::Response& res) {
    conversations(req, res, false);
  });
  srv.Get("/api/conversations/queue", [conversations](const httplib::Request& req,
                                                      httplib::Response& res) {
    conversations(req, res, true);
  });
  auto one_conversation = [this](const httplib::Request& req, httplib::Response& res,
                                 ConversationQuery c, const std::string& what) {
    c.limit = 2;
    std::lock_guard lock(store_mu_);
    auto rows = store_->Conversations(c);
    if (!rows.ok()) return SendOutStatus(rows.status(), req, res);
    if (rows->items.empty()) return SendError(res, 404, "no conversation " + what, req.path);
    // A message sent to ourselves exists in both directions: the outgoing one is the answer.
    const MessageRow* pick = &rows->items.front();
    for (const auto& m : rows->items) {
      if (m.direction == "OUT") pick = &m;
    }
    SendJson(res, ConversationJson(*pick));
  };
  srv.Get(R"(/api/conversations/messageId/([^/]+))",
          [one_conversation](const httplib::Request& req, httplib::Response& res) {
            ConversationQuery c;
            c.message_id = req.matches[1].str();
            one_conversation(req, res, c, "for message " + c.message_id);
          });
  srv.Get(R"(/api/conversations/(\d+))", [one_conversation](const httplib::Request& req,
                                                             httplib::Response& res) {
    ConversationQuery c;
    c.id = std::strtoll(req.matches[1].str().c_str(), nullptr, 10);
    if (c.id <= 0) return SendError(res, 404, "no conversation " + req.matches[1].str(), req.path);
    one_conversation(req, res, c, req.matches[1].str());
  });
}

std::string HttpApi::Metrics() {
  metrics::Writer w;
  std::vector<StatusCount> counts;
  int64_t pending_reports = 0;
  Result<std::vector<QueueDepth>> queue = std::vector<QueueDepth>();
  {
    std::lock_guard lock(store_mu_);
    if (auto c = store_->CountByStatus(); c.ok()) counts = std::move(*c);
    if (auto p = store_->PendingReportCount(); p.ok()) pending_reports = *p;
    queue = store_->OutgoingQueue();
  }
  const int64_t now = NowMs();
  w.Family("bud_ip_messages", "gauge", "Messages in the store by direction and current status.");
  for (const auto& c : counts) {
    w.Sample("bud_ip_messages", {{"direction", DirectionName(c.direction)}, {"status", c.status}},
             static_cast<double>(c.count));
  }
  w.Family("bud_ip_queue_depth", "gauge",
           "Outgoing messages not yet accepted by the broker, per receiver.");
  if (queue.ok()) {
    for (const auto& q : *queue) {
      w.Sample("bud_ip_queue_depth", {{"receiver", q.receiver}}, static_cast<double>(q.count));
    }
  }
  w.Family("bud_ip_queue_oldest_age_seconds", "gauge",
           "Age of the oldest outgoing message not yet accepted by the broker, per receiver.");
  if (queue.ok()) {
    for (const auto& q : *queue) {
      w.Sample("bud_ip_queue_oldest_age_seconds", {{"receiver", q.receiver}},
               static_cast<double>(now - q.oldest_ms) / 1000.0);
    }
  }
  w.Family("bud_ip_pending_reports", "gauge", "Receipts (MOTTATT, LEVERT, FEIL) not yet taken by the broker.");
  w.Sample("bud_ip_pending_reports", static_cast<double>(pending_reports));
  w.Family("bud_ip_broker_connected", "gauge", "1 while the broker has welcomed this integration point.");
  w.Sample("bud_ip_broker_connected", static_cast<double>(metrics_.broker_connected.load()));
  auto counter = [&](const char* name, const char* help, const std::atomic<int64_t>& v) {
    w.Family(name, "counter", help);
    w.Sample(name, static_cast<double>(v.load(std::memory_order_relaxed)));
  };
  counter("bud_ip_submits_total", "Envelopes submitted to the broker (resubmits included).",
          metrics_.submits);
  counter("bud_ip_accepted_total", "Submits the broker answered ACCEPTED.", metrics_.accepted);
  counter("bud_ip_rejected_total", "Submits the broker answered REJECTED.", metrics_.rejected);
  counter("bud_ip_retry_later_total", "Submits the broker answered RETRY_LATER.",
          metrics_.retry_later);
  counter("bud_ip_deliveries_total", "Envelopes the broker delivered to this integration point.",
          metrics_.deliveries);
  counter("bud_ip_redeliveries_total",
          "Deliveries of messages received before (answered as before, written once).",
          metrics_.redeliveries);
  counter("bud_ip_refused_total", "Deliveries refused (FEIL) after verification.", metrics_.refused);
  counter("bud_ip_broker_reconnects_total", "Reconnects after the broker fell silent.",
          metrics_.reconnects);
  w.Histogram("bud_ip_submit_to_accept_seconds",
              "Time from submitting an envelope to the broker's ACCEPTED.",
              metrics_.submit_to_accept);
  w.Family("bud_ip_certificate_expiry_days", "gauge", "Days until each own certificate expires.");
  for (const auto& [label, cert] : certs_) {
    w.Sample("bud_ip_certificate_expiry_days", {{"certificate", label}},
             static_cast<double>(crypto::DaysToExpiry(cert.get())));
  }
  return w.text();
}

}  // namespace bud::ip
