// See spool_recovery.h.
#include "integration-point/engine/spool_recovery.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstring>

#include "common/fs.h"
#include "common/log.h"
#include "common/uuid.h"
#include "integration-point/data_dirs.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }

void DropStaleDrafts(const Config& config, PointStore& store) {
  if (auto drafts = ListDir(DraftsDir(config)); drafts.ok()) {
    for (const auto& id : *drafts) {
      auto draft = store.outgoing.GetDraft(id);
      if (draft.ok() && !*draft) (void)RemoveAll(DraftDir(config, id));
    }
  }
  // Streamed messages received for the API: kept while their row waits for the API (state
  // api); a half-decrypted one (.tmp) or one deleted before a crash goes.
  if (auto kept = ListDir(ApiInboxDir(config)); kept.ok()) {
    for (const auto& id : *kept) {
      auto row = store.incoming.Get(id);
      if (id == ".tmp" || (row.ok() && (!row->has_value() || (*row)->state != WorkState::kApi))) {
        (void)RemoveAll(JoinPath(ApiInboxDir(config), id));
      }
    }
  }
}

// Why the partial download of `id` is not resumed; "" when it is (or the store cannot tell).
std::string WhyNotResumed(PointStore& store, const std::string& id, int64_t now_ms) {
  // A partial download resumes after a restart, unless the message is settled here already
  // (received or refused), its transfer is not recorded, or its time to live has passed.
  if (!IsUuid(id)) return "not a message id";
  auto row = store.incoming.Get(id);
  if (!row.ok()) return "";
  if (row->has_value()) return "the message is " + (*row)->status + " already";
  auto t = store.history.Transfer(id, Direction::kIn);
  if (!t.ok()) return "";
  if (!t->has_value()) return "no transfer is recorded";
  if ((*t)->message.expires_ms > 0 && (*t)->message.expires_ms < now_ms) {
    return "the message expired";
  }
  return "";
}
}  // namespace

void RecoverSpool(const Config& config, PointStore& store) {
  DropStaleDrafts(config, store);
  const std::string src = JoinPath(SpoolDir(config), "src");
  auto names = ListDir(src);
  if (!names.ok()) return;
  for (const auto& id : *names) {
    auto row = store.outgoing.Get(id);
    if (!row.ok()) continue;
    auto draft = store.outgoing.GetDraft(id);
    if (!row->has_value() && draft.ok() && *draft) {
      Log()->warn(
          "spooled files of API message {} were not taken in before a restart; the "
          "draft keeps them, send it again",
          id);
      (void)RemoveAll(JoinPath(src, id));
    } else if (!row->has_value()) {
      std::string back = JoinPath(config.outbox, id);
      for (int i = 1; Exists(back); ++i)
        back = JoinPath(config.outbox, fmt::format("{}-{}", id, i));
      Status st = RenameDurable(JoinPath(src, id), back);
      Log()->warn(
          "spooled folder of message {} was not taken in before a restart; moved back to "
          "the outbox: {}",
          id, st.ok() ? back : st.ToString());
    } else if ((*row)->state != WorkState::kNew) {
      (void)RemoveAll(JoinPath(src, id));
    }
  }
}

void SweepReceiveLeftovers(const Config& config, PointStore& store, int64_t now_ms) {
  if (!config.inbox.empty()) {
    const std::string tmp = JoinPath(config.inbox, ".tmp");
    if (Exists(tmp)) {
      Status rm = RemoveAll(tmp);
      if (rm.ok()) {
        Log()->info(
            "removed {}: folders of deliveries that were never acknowledged (they are "
            "delivered again)",
            tmp);
      } else {
        Log()->warn("cannot remove {}: {}", tmp, rm.ToString());
      }
    }
  }
  auto names = ListDir(SpoolDir(config));
  if (!names.ok()) return;
  for (const auto& name : *names) {
    if (!name.starts_with("in-")) continue;
    const std::string why = WhyNotResumed(store, name.substr(3), now_ms);
    if (why.empty()) continue;
    const std::string path = JoinPath(SpoolDir(config), name);
    if (::unlink(path.c_str()) == 0) {
      Log()->info("removed the partial download {} ({})", path, why);
    } else {
      Log()->warn("cannot remove the partial download {}: {}", path, std::strerror(errno));
    }
  }
}

}  // namespace bud::ip
