// Refused intake. See refusal_store.h and docs/storage.md.
#include "integration-point/store/refusal_store.h"

#include <fmt/format.h>

namespace bud::ip {

namespace {
constexpr const char* kColumns =
    "id, source, name, moved_to, reason, class, refused_ms, resolved_ms, resolved_message_id, "
    "message_id";

RefusalClass ClassFromText(const std::string& t) {
  for (auto c : kRefusalClasses) {
    if (t == Text(c)) return c;
  }
  return RefusalClass::kMetadata;
}

std::string Basename(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}
}  // namespace

const char* Text(RefusalClass c) {
  switch (c) {
    case RefusalClass::kFolder:
      return "folder";
    case RefusalClass::kMetadata:
      return "metadata";
    case RefusalClass::kReceiver:
      return "receiver";
    case RefusalClass::kDuplicate:
      return "duplicate";
    case RefusalClass::kAttachment:
      return "attachment";
    case RefusalClass::kApi:
      return "api";
  }
  return "metadata";
}

Result<int64_t> RefusalStore::Record(const RefusalRow& row) {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare("INSERT INTO refusals (source, name, moved_to, failed_name, reason, "
                         "class, refused_ms, message_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
  st->BindAll(row.source, row.name, row.moved_to, Basename(row.moved_to), row.reason,
              std::string(Text(row.reason_class)), row.refused_ms, row.message_id);
  BUD_RETURN_IF_ERROR(st->Run());
  return db_.conn().LastInsertId();
}

Result<int> RefusalStore::ResolveOutbox(const std::string& folder, const std::string& message_id,
                                        int64_t at_ms) {
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare(
                    "UPDATE refusals SET resolved_ms=?3, resolved_message_id=?2 "
                    "WHERE resolved_ms=0 AND source='outbox' AND (name=?1 OR failed_name=?1)"));
  st->BindAll(folder, message_id, at_ms);
  BUD_RETURN_IF_ERROR(st->Run());
  return st->Changes();
}

Result<int> RefusalStore::ResolveApi(const std::string& message_id, int64_t at_ms) {
  if (message_id.empty()) return 0;
  // Nearly always there is none: a read first, so that a message taken in does not wait for the
  // write lock (the engine's turn holds it while it seals).
  BUD_ASSIGN_OR_RETURN(auto* any, db_.conn().Prepare("SELECT EXISTS(SELECT 1 FROM refusals WHERE "
                                                     "resolved_ms=0 AND source='api' AND "
                                                     "message_id=?1)"));
  any->Bind(1, message_id);
  BUD_ASSIGN_OR_RETURN(bool row, any->Step());
  const bool open = row && any->Int(0) != 0;
  any->Reset();
  if (!open) return 0;
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare("UPDATE refusals SET resolved_ms=?2, resolved_message_id=?1 "
                                   "WHERE resolved_ms=0 AND source='api' AND message_id=?1"));
  st->BindAll(message_id, at_ms);
  BUD_RETURN_IF_ERROR(st->Run());
  return st->Changes();
}

Status RefusalStore::Dismiss(int64_t id, int64_t at_ms) {
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare("UPDATE refusals SET resolved_ms=?2, resolved_message_id='' "
                                   "WHERE id=?1 AND resolved_ms=0"));
  st->BindAll(id, at_ms);
  BUD_RETURN_IF_ERROR(st->Run());
  if (st->Changes() == 0) {
    return Status(Code::kNotFound, fmt::format("no open refusal {} (bud-ip status --failed "
                                               "lists the open ones with their numbers)",
                                               id));
  }
  return Status::Ok();
}

Result<std::vector<RefusalRow>> RefusalStore::List(bool include_resolved, int limit) {
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare(fmt::format(
                    "SELECT {} FROM refusals WHERE ?1=1 OR resolved_ms=0 ORDER BY id DESC LIMIT ?2",
                    kColumns)));
  st->BindAll(include_resolved ? 1 : 0, limit);
  std::vector<RefusalRow> out;
  while (true) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    RefusalRow r;
    r.id = st->Int(0);
    r.source = st->Text(1);
    r.name = st->Text(2);
    r.moved_to = st->Text(3);
    r.reason = st->Text(4);
    r.reason_class = ClassFromText(st->Text(5));
    r.refused_ms = st->Int(6);
    r.resolved_ms = st->Int(7);
    r.resolved_message_id = st->Text(8);
    r.message_id = st->Text(9);
    out.push_back(std::move(r));
  }
  st->Reset();
  return out;
}

Result<RefusalCounts> RefusalStore::Counts() {
  RefusalCounts out;
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare("SELECT class, count(*), sum(resolved_ms=0) FROM refusals "
                                   "GROUP BY class"));
  while (true) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.by_class[st->Text(0)] = st->Int(1);
    out.open += st->Int(2);
  }
  st->Reset();
  return out;
}

}  // namespace bud::ip
