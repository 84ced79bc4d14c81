// See api_inbox.h.
#include "integration-point/api/api_inbox.h"

#include <fmt/format.h>

#include "common/clock.h"
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

Result<std::shared_ptr<AsicStream>> ApiInbox::Pop(const std::string& id) {
  Result<MessageRow> row =
      store_.Run([&](PointStore& s) { return s.incoming.LockedIncoming(id, now_ms_()); });
  if (!row.ok()) return AsConflict(row.status());
  auto files = AsicFiles(*row, ApiInboxDir(config_));
  if (!files.ok()) return Status(Code::kInternal, files.status().ToString());
  // A receipt or status message: nothing to pop (Next Move answers 204).
  if (files->empty()) return std::shared_ptr<AsicStream>();
  auto opened = AsicStream::Open(std::move(*files), row->created_ms);
  if (!opened.ok()) {
    Log()->error("message {}: cannot serve its container: {}", id, opened.status().ToString());
    return Status(Code::kInternal, fmt::format("stored message {} cannot be read: {}", id,
                                               opened.status().ToString()));
  }
  return std::shared_ptr<AsicStream>(std::move(*opened));
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
