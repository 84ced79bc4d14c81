// See api_inbox.h.
#include "integration-point/api/api_inbox.h"

#include <fmt/format.h>

#include "common/clock.h"
#include "common/crypto/openssl.h"
#include "common/fs.h"
#include "common/log.h"
#include "integration-point/api/json_shapes.h"
#include "integration-point/data_dirs.h"
#include "proto/envelope.pb.h"

namespace bud::ip::api {

namespace {
using nlohmann::json;
std::shared_ptr<spdlog::logger> Log() { return Logger("http"); }

// The store says kInvalidArgument for a message that is not locked: a conflict with its state.
Status AsConflict(Status st) {
  if (st.code() != Code::kInvalidArgument) return st;
  return Status(Code::kConflict, st.message());
}
}  // namespace

std::string MainDocument(const MessageRow& row) {
  wire::Payload payload;
  if (row.payload.empty() || !payload.ParseFromString(row.payload)) return "";
  const json sbd = json::parse(payload.metadata_json(), nullptr, false);
  if (!sbd.is_object()) return "";
  for (const auto& [key, value] : sbd.items()) {
    if (key == "standardBusinessDocumentHeader" || !value.is_object()) continue;
    auto it = value.find("hoveddokument");
    if (it != value.end() && it->is_string()) return it->get<std::string>();
  }
  return "";
}

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
    return Status(Code::kMalformed,
                  fmt::format("stored message {} cannot be read", row.message_id));
  }
  for (auto& a : *payload.mutable_attachments()) {
    files.push_back({a.name(), a.media_type(), 0, 0, "", std::move(*a.mutable_data())});
  }
  return files;
}

ApiInbox::ApiInbox(const Config& config, SharedStore& store, std::function<void()> wake,
                   std::function<int64_t()> now_ms)
    : config_(config), store_(store), wake_(std::move(wake)), now_ms_(std::move(now_ms)) {}

Result<std::optional<json>> ApiInbox::Peek(const std::string& process) {
  return store_.Run([&](PointStore& s) -> Result<std::optional<json>> {
    BUD_ASSIGN_OR_RETURN(auto row,
                         s.incoming.PeekIncoming(now_ms_(), config_.peek_lock_ms, process));
    if (!row) return std::optional<json>();
    Log()->info("message {} peeked (locked until {})", row->message_id,
                FormatTime(row->lock_until_ms));
    auto full = s.incoming.Get(row->message_id);
    const std::string payload = full.ok() && *full ? (*full)->payload : std::string();
    return std::optional<json>(IncomingSbdJson(*row, payload));
  });
}

Result<std::optional<json>> ApiInbox::PeekMatching(const IncomingFilter& filter) {
  return store_.Run([&](PointStore& s) -> Result<std::optional<json>> {
    BUD_ASSIGN_OR_RETURN(auto row,
                         s.incoming.PeekIncomingMatching(now_ms_(), config_.peek_lock_ms, filter));
    if (!row) return std::optional<json>();
    Log()->info("message {} peeked (locked until {})", row->message_id,
                FormatTime(row->lock_until_ms));
    auto full = s.incoming.Get(row->message_id);
    const std::string payload = full.ok() && *full ? (*full)->payload : std::string();
    return std::optional<json>(IncomingSbdJson(*row, payload));
  });
}

Result<json> ApiInbox::List(const IncomingFilter& filter, int64_t page, int64_t size) {
  return store_.Run([&](PointStore& s) -> Result<json> {
    BUD_ASSIGN_OR_RETURN(auto rows, s.incoming.ListApiIncoming(filter, page * size, size));
    json content = json::array();
    for (const auto& m : rows.items) {
      auto full = s.incoming.Get(m.message_id);
      content.push_back(IncomingSbdJson(m, full.ok() && *full ? (*full)->payload : std::string()));
    }
    return PageJson(std::move(content), rows.total, page, size);
  });
}

Result<std::shared_ptr<AsicStream>> ApiInbox::Pop(const std::string& id) {
  Result<MessageRow> row =
      store_.Run([&](PointStore& s) { return s.incoming.LockedIncoming(id, now_ms_()); });
  if (!row.ok()) return AsConflict(row.status());
  auto files = AsicFiles(*row, ApiInboxDir(config_));
  if (!files.ok()) return Status(Code::kInternal, files.status().ToString());
  // A receipt or status message: nothing to pop (Next Move answers 204).
  if (files->empty()) return std::shared_ptr<AsicStream>();
  AsicOptions options{row->sender, row->receiver, MainDocument(*row), nullptr, nullptr};
  crypto::PKey key;
  crypto::Cert cert;
  if (!config_.keys.signing_key.empty() && !config_.keys.signing_cert.empty()) {
    auto k = crypto::LoadPrivateKeyFile(config_.keys.signing_key);
    auto c = crypto::LoadCertFile(config_.keys.signing_cert);
    if (!k.ok() || !c.ok()) {
      const Status& why = k.ok() ? c.status() : k.status();
      Log()->error("message {}: cannot sign its container: {}", id, why.ToString());
      return Status(Code::kInternal, "cannot sign the container: " + why.message());
    }
    key = std::move(*k);
    cert = std::move(*c);
    if (CanSignAsic(key.get())) {
      options.key = key.get();
      options.cert = cert.get();
    } else {
      Log()->warn(
          "message {}: its container goes unsigned: the signing key is Ed25519, which "
          "OpenSSL's CMS cannot sign with (use an RSA or EC signing key)",
          id);
    }
  }
  auto opened = AsicStream::Open(std::move(*files), row->created_ms, &options);
  if (!opened.ok()) {
    Log()->error("message {}: cannot serve its container: {}", id, opened.status().ToString());
    return Status(Code::kInternal, fmt::format("stored message {} cannot be read: {}", id,
                                               opened.status().ToString()));
  }
  return std::shared_ptr<AsicStream>(std::move(*opened));
}

Result<json> ApiInbox::DeleteReturningSbd(const std::string& id) {
  Result<json> sbd = store_.Run([&](PointStore& s) -> Result<json> {
    BUD_ASSIGN_OR_RETURN(MessageRow row, s.incoming.LockedIncoming(id, now_ms_()));
    return IncomingSbdJson(row, row.payload);
  });
  if (!sbd.ok()) return AsConflict(sbd.status());
  BUD_RETURN_IF_ERROR(Delete(id));
  return sbd;
}

Status ApiInbox::Delete(const std::string& id) {
  Status st = store_.Run([&](PointStore& s) { return s.incoming.DeliverIncoming(id, now_ms_()); });
  if (!st.ok()) return AsConflict(st);
  // After the commit; a crash before this leaves the files to the engine's start-up sweep.
  (void)RemoveAll(JoinPath(ApiInboxDir(config_), LowerId(id)));
  Log()->info("message {} deleted through the API (INNKOMMENDE_LEVERT); reporting LEVERT", id);
  wake_();
  return Status::Ok();
}

}  // namespace bud::ip::api
