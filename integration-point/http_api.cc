// The integration point's HTTP API. See http_api.h and docs/http-api.md.
#include "integration-point/http_api.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

#include "common/clock.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/crypto/certs.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/payload.h"
#include "common/uuid.h"
#include "integration-point/asic.h"
#include "integration-point/data_dirs.h"
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

constexpr const char* kUploadPath = R"(/api/messages/out/([^/]+))";

// PUT /api/messages/out/{id}: a file of a draft, streamed to disk (see the handler).
bool IsFileUpload(const httplib::Request& req) {
  return req.method == "PUT" && req.path.starts_with("/api/messages/out/") &&
         req.path.find('/', std::string_view("/api/messages/out/").size()) == std::string::npos;
}

// A write error as the client should see it: 507 when the disk is full, else 500.
int HttpStatusForWrite(const Status& st) { return st.code() == Code::kDiskFull ? 507 : 500; }

// Writes all of `data` to `fd`.
Status WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus(errno, "writing the upload");
    data += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

// The attachments of an incoming message kept for the API, for its pop container: files in
// `api_inbox`/<id>/ for a streamed one (row.files), else the stored payload's bytes.
Result<std::vector<AsicFile>> AsicFiles(const MessageRow& row, const std::string& api_inbox) {
  std::vector<AsicFile> files;
  if (!row.files.empty()) {
    json listed = json::parse(row.files, nullptr, false);
    if (!listed.is_array()) {
      return Status(Code::kMalformed,
                    fmt::format("stored file list of message {} cannot be read", row.message_id));
    }
    const std::string dir = JoinPath(api_inbox, row.message_id);
    for (const auto& f : listed) {
      const std::string name = f.value("name", "");
      files.push_back({name, f.value("mediaType", ""), f.value("size", uint64_t{0}),
                       f.value("crc32", uint32_t{0}), JoinPath(dir, name), ""});
    }
    return files;
  }
  wire::Payload payload;
  if (!payload.ParseFromString(row.payload)) {
    return Status(Code::kMalformed, fmt::format("stored message {} cannot be read", row.message_id));
  }
  for (auto& a : *payload.mutable_attachments()) {
    files.push_back({a.name(), a.media_type(), 0, 0, "", std::move(*a.mutable_data())});
  }
  return files;
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
  HttpOptions http = config_.http;
  http.streams_body = [](const httplib::Request& req) { return IsFileUpload(req); };
  http.max_streamed_body_bytes = static_cast<size_t>(config_.max_message_bytes);
  BUD_ASSIGN_OR_RETURN(server_, HttpServer::Start(http, [this](httplib::Server& s) { Routes(s); }));
  return Status::Ok();
}

void HttpApi::SendOutStatus(const Status& st, const httplib::Request& req, httplib::Response& res) {
  SendError(res, HttpStatusFor(st.code()), st.message(), req.path);
}

bool HttpApi::Submit(OutgoingDraft d, const json& sbd, const httplib::Request& req,
                     httplib::Response& res, const std::function<Status()>& before_commit,
                     const std::function<void()>& undo) {
  if (d.payload.attachments_size() == 0) {
    SendError(res, 400, "the message has no attachments: send at least one file", req.path);
    return false;
  }
  // The business message's main document must be one of the files.
  const std::string type = DocumentTypeName(d.document_type);
  if (sbd.contains(type) && sbd[type].contains("hoveddokument") &&
      sbd[type]["hoveddokument"].is_string()) {
    const std::string main = sbd[type]["hoveddokument"];
    bool found = false;
    for (const auto& a : d.payload.attachments()) found = found || a.name() == main;
    if (!found) {
      SendError(res, 400,
                fmt::format("{}.hoveddokument names '{}' but no attachment has that name", type,
                            main),
                req.path);
      return false;
    }
  }
  Result<wire::RegistryEntry> entry = [&] {
    std::lock_guard lock(registry_mu_);
    return CheckReceiver(*registry_, d.receiver, d.process, d.document_type);
  }();
  if (!entry.ok()) {
    if (entry.status().code() == Code::kNotFound) {
      SendError(res, 400,
                fmt::format("receiver {} is not in the address registry", d.receiver.wire()),
                req.path);
    } else {
      SendOutStatus(entry.status(), req, res);
    }
    return false;
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
  if (before_commit) {
    Status placed = before_commit();
    if (!placed.ok()) {
      if (undo) undo();
      Log()->error("message {}: cannot place its files in the spool: {}", row.message_id,
                   placed.ToString());
      SendError(res, HttpStatusForWrite(placed),
                fmt::format("cannot place the files of message {} in the spool ({}); it is not "
                            "sent and stays as it was",
                            row.message_id, placed.ToString()),
                req.path);
      return false;
    }
  }
  const std::string id = row.message_id, receiver = row.receiver;
  Status st = take_in_(std::move(row));
  if (!st.ok()) {
    // kUnavailable: the engine may still store it (or never got it); the files stay placed and
    // the engine's start-up recovery puts them back when the draft is still there.
    if (undo && st.code() != Code::kUnavailable) undo();
    SendOutStatus(st, req, res);
    return false;
  }
  Log()->info("message {} to {} taken in through the API (OPPRETTET, {} attachment(s))", id,
              receiver, d.payload.attachments_size());
  SendJson(res, sbd);
  return true;
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
    // Bounded before it is parsed (common/json.h): deep nesting is a 400, not a crash.
    auto body = ParseJson(req.get_file_value("sbd").content, "part 'sbd'");
    if (!body.ok()) return SendError(res, 400, body.status().message(), req.path);
    json sbd;
    auto draft = ParseSbd(*body, me_, Limits(), &sbd);
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
    // Whatever the Content-Type says, the body is bounded before it is parsed (common/json.h).
    auto body = ParseJson(req.body, "the body");
    if (!body.ok()) return SendError(res, 400, body.status().message(), req.path);
    json sbd;
    auto draft = ParseSbd(*body, me_, Limits(), &sbd);
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

  // One file of a draft. The body goes straight to a new file in the draft's directory (never
  // held in memory); only when it is complete and synced does the store point at it, in one
  // commit that replaces an earlier file of the same name (removed after the commit). Whatever
  // fails on the way (too large, disk full, the client gone) leaves the draft as it was.
  srv.Put(kUploadPath, [this](const httplib::Request& req, httplib::Response& res,
                              const httplib::ContentReader& read_body) {
    const std::string id = req.matches[1].str();
    auto refuse = [&](int status, const std::string& message) {
      res.set_header("Connection", "close");  // the body may be unread
      SendError(res, status, message, req.path);
    };
    const std::string disposition = req.get_header_value("Content-Disposition");
    std::string filename = DispositionParam(disposition, "filename");
    if (filename.empty()) {
      return refuse(400, "Content-Disposition needs a filename, e.g. 'attachment; "
                         "name=\"Title\"; filename=\"file.pdf\"'");
    }
    uint64_t others = 0;  // bytes of the draft's other files
    {
      std::lock_guard lock(store_mu_);
      auto sbd = store_->GetDraft(id);
      if (!sbd.ok()) return refuse(HttpStatusFor(sbd.status().code()), sbd.status().ToString());
      if (!*sbd) {
        return refuse(404, fmt::format("no created, unsent message {} (POST /api/messages/out "
                                       "creates one)", id));
      }
      auto files = store_->DraftFiles(id);
      if (!files.ok()) return refuse(HttpStatusFor(files.status().code()), files.status().ToString());
      OutgoingDraft check{.message_id = id, .conversation_id = {}, .receiver = me_, .process = {},
                          .document_type = {}, .title = {}, .created_ms = 0, .expires_ms = 0,
                          .payload = {}};
      for (const auto& f : *files) {
        if (f.name == filename) continue;
        check.payload.add_attachments()->set_name(f.name);
        others += f.size;
      }
      OutboxLimits limits = Limits();
      limits.max_attachment_bytes = static_cast<size_t>(config_.max_message_bytes);
      Status ok = CheckAttachmentLimits(check, filename, 0, limits);
      if (!ok.ok()) return refuse(HttpStatusFor(ok.code()), ok.message());
    }
    const uint64_t max_total = static_cast<uint64_t>(config_.max_message_bytes);
    const uint64_t budget = others >= max_total ? 0 : max_total - others;
    auto too_large = [&](uint64_t bytes) {
      refuse(413, fmt::format("'{}' has {}{} bytes; the files of message {} may have {} bytes "
                              "together (outbox.max_message_bytes) and the others have {}: "
                              "nothing of it was kept",
                              filename, bytes > budget ? "more than " : "", std::min(bytes, budget),
                              id, max_total, others));
    };
    if (req.has_header("Content-Length")) {
      const uint64_t announced = std::strtoull(req.get_header_value("Content-Length").c_str(),
                                               nullptr, 10);
      if (announced > budget) return too_large(announced);
    }
    const std::string dir = DraftDir(config_, id);
    const std::string file = "f-" + NewUuid();
    const std::string path = JoinPath(dir, file);
    Status made = MakeDirs(dir);
    int fd = made.ok() ? ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640) : -1;
    if (fd < 0) {
      Status st = made.ok() ? ErrnoStatus(errno, "creating " + path) : made;
      Log()->error("message {}: upload of '{}' refused: {}", id, filename, st.ToString());
      return refuse(HttpStatusForWrite(st), "cannot store the upload: " + st.ToString());
    }
    uint64_t written = 0;
    bool over = false;
    Status wrote = Status::Ok();
    const bool complete = read_body([&](const char* data, size_t n) {
      if (written + n > budget) {
        over = true;
        return false;
      }
      wrote = WriteAll(fd, data, n);
      written += n;
      return wrote.ok();
    });
    if (complete && ::fdatasync(fd) != 0) wrote = ErrnoStatus(errno, "syncing the upload");
    ::close(fd);
    if (complete && wrote.ok()) wrote = FsyncPath(dir);
    auto discard = [&] { (void)::unlink(path.c_str()); };
    if (over) {
      discard();
      Log()->warn("message {}: upload of '{}' refused after {} bytes: over "
                  "outbox.max_message_bytes", id, filename, written);
      return too_large(written + 1);
    }
    if (!wrote.ok()) {
      discard();
      Log()->error("message {}: upload of '{}' failed after {} bytes: {}", id, filename, written,
                   wrote.ToString());
      return refuse(HttpStatusForWrite(wrote),
                    fmt::format("cannot store '{}' ({}); nothing of it was kept, the message is "
                                "as before", filename, wrote.ToString()));
    }
    if (!complete) {
      discard();
      Log()->warn("message {}: upload of '{}' cut short after {} bytes", id, filename, written);
      return refuse(400, fmt::format("the body of '{}' ended early (after {} bytes); nothing of "
                                     "it was kept", filename, written));
    }
    std::string media = req.get_header_value("Content-Type");
    if (media.empty()) media = GuessMediaType(filename);
    Result<std::string> replaced = Status(Code::kInternal, "");
    {
      // Checked again under the lock: other files of this message may have come meanwhile.
      std::lock_guard lock(store_mu_);
      auto now_files = store_->DraftFiles(id);
      uint64_t now_others = 0;
      if (now_files.ok()) {
        for (const auto& f : *now_files) now_others += f.name == filename ? 0 : f.size;
      }
      if (now_others + written > max_total) {
        replaced = Status(Code::kInvalidArgument, "");
        others = now_others;
      } else {
        replaced = store_->AddDraftFile(
            id, {filename, DispositionParam(disposition, "name"), media, "", file, written});
      }
    }
    if (!replaced.ok()) {
      discard();
      if (replaced.status().code() == Code::kInvalidArgument) {
        return refuse(413, fmt::format("'{}' has {} bytes; with the {} bytes of the other files "
                                       "of message {} that is more than "
                                       "outbox.max_message_bytes ({}): nothing of it was kept",
                                       filename, written, others, id, max_total));
      }
      return SendOutStatus(replaced.status(), req, res);
    }
    if (!replaced->empty()) (void)::unlink(JoinPath(dir, *replaced).c_str());
    Log()->info("message {}: '{}' uploaded ({} bytes)", id, filename, written);
    res.status = 200;
  });

  // Sends a draft. Its files go the way a folder's would: together above
  // outbox.stream_threshold_bytes they are hard-linked into the spool layout of a large outbox
  // folder (spool/src/<id>/<name>, no copy) and the engine seals them as a stream; else they are
  // read into the message as today.
  srv.Post(kUploadPath, [this](const httplib::Request& req, httplib::Response& res) {
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
    auto stored = ParseJson(**sbd_text, "the stored SBD");
    if (!stored.ok()) return SendOutStatus(stored.status(), req, res);
    json sbd;
    auto draft = ParseSbd(*stored, me_, Limits(), &sbd);
    if (!draft.ok()) return SendOutStatus(draft.status(), req, res);
    const std::string dir = DraftDir(config_, id);
    uint64_t total = 0;
    for (const auto& f : *files) total += f.size;
    if (total <= static_cast<uint64_t>(config_.stream_threshold_bytes)) {
      for (auto& f : *files) {
        Result<std::string> data = std::move(f.data);
        if (!f.file.empty()) data = ReadFile(JoinPath(dir, f.file));
        if (!data.ok()) return SendOutStatus(data.status(), req, res);
        Status added = AddAttachment(*draft, f.name, f.media_type, std::move(*data), Limits());
        if (!added.ok()) return SendOutStatus(added, req, res);
      }
      if (Submit(std::move(*draft), sbd, req, res)) (void)RemoveAll(dir);
      return;
    }
    OutboxLimits limits = Limits();
    limits.max_attachment_bytes = static_cast<size_t>(config_.max_message_bytes);
    for (const auto& f : *files) {
      Status ok = CheckAttachmentLimits(*draft, f.name, static_cast<size_t>(f.size), limits);
      if (!ok.ok()) return SendOutStatus(ok, req, res);
      auto* a = draft->payload.add_attachments();
      a->set_name(f.name);
      a->set_media_type(f.media_type.empty() ? GuessMediaType(f.name) : f.media_type);
      a->set_size(f.size);
    }
    // Right before the commit: spool/src/<id>/ is put together beside the draft (links, or the
    // bytes of a file kept in the store before schema v4) and moved into place in one rename.
    const std::string target = SpoolSource(config_, id);
    auto place = [&]() -> Status {
      const std::string stage = JoinPath(dir, ".send");
      BUD_RETURN_IF_ERROR(RemoveAll(stage));
      BUD_RETURN_IF_ERROR(MakeDirs(stage));
      for (const auto& f : *files) {
        const std::string to = JoinPath(stage, f.name);
        if (f.file.empty()) {
          BUD_RETURN_IF_ERROR(WriteFileSynced(to, f.data));
        } else if (::link(JoinPath(dir, f.file).c_str(), to.c_str()) != 0) {
          return ErrnoStatus(errno, "linking " + f.name + " into the spool");
        }
      }
      BUD_RETURN_IF_ERROR(FsyncPath(stage));
      BUD_RETURN_IF_ERROR(MakeDirs(ParentDir(target)));
      BUD_RETURN_IF_ERROR(RemoveAll(target));  // a leftover of an earlier attempt
      return RenameDurable(stage, target);
    };
    auto unplace = [&] { (void)RemoveAll(target); };
    if (Submit(std::move(*draft), sbd, req, res, place, unplace)) {
      Log()->info("message {}: {} bytes in {} file(s) go streamed", id, total, files->size());
      (void)RemoveAll(dir);
    }
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
    (void)RemoveAll(DraftDir(config_, id));  // after the commit: a crash leaves it to RecoverSpool
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
    auto files = AsicFiles(*row, ApiInboxDir(config_));
    if (!files.ok()) return SendError(res, 500, files.status().ToString(), req.path);
    auto opened = AsicStream::Open(std::move(*files), row->created_ms);
    if (!opened.ok()) {
      Log()->error("message {}: cannot serve its container: {}", id, opened.status().ToString());
      return SendError(res, 500, fmt::format("stored message {} cannot be read: {}", id,
                                             opened.status().ToString()), req.path);
    }
    // Sized and served piece by piece: the attachments are read as the client takes them.
    std::shared_ptr<AsicStream> zip = std::move(*opened);
    res.set_header("Content-Disposition", fmt::format("attachment; filename=\"{}.asice\"", id));
    res.set_content_provider(
        static_cast<size_t>(zip->size()), kAsicMediaType,
        [zip, id](size_t offset, size_t length, httplib::DataSink& sink) {
          auto piece = zip->Read(offset, length);
          if (!piece.ok() || piece->empty()) {
            Log()->error("message {}: pop stopped at byte {}: {}", id, offset,
                         piece.ok() ? "nothing more to read" : piece.status().ToString());
            return false;
          }
          return sink.write(piece->data(), piece->size());
        });
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
    // After the commit; a crash before this leaves the files to the engine's start-up sweep.
    (void)RemoveAll(JoinPath(ApiInboxDir(config_), id));
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
  counter("bud_ip_deferred_total",
          "Deliveries answered Defer (the inbox or the store could not be written).",
          metrics_.deferred);
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
