// Webhook subscriptions and their cursors. See subscription_store.h and docs/storage.md.
#include "integration-point/store/subscription_store.h"

#include <fmt/format.h>

#include "integration-point/store/internal.h"

namespace bud::ip {

using namespace store_internal;

namespace {
constexpr const char* kSubColumns =
    "id, name, push_endpoint, resource, event, filter, pushed_through, created_ms";

SubscriptionRow ReadSubscription(storage::Stmt& st) {
  return SubscriptionRow{st.Int(0),  st.Text(1), st.Text(2), st.Text(3),
                         st.Text(4), st.Text(5), st.Int(6),  st.Int(7)};
}

Result<std::optional<SubscriptionRow>> One(storage::Stmt& st) {
  BUD_ASSIGN_OR_RETURN(bool row, st.Step());
  std::optional<SubscriptionRow> out;
  if (row) out = ReadSubscription(st);
  st.Reset();
  return out;
}

Status NoSuch(int64_t id) {
  return Status(Code::kNotFound, fmt::format("no subscription with id {}", id));
}
}  // namespace

Result<Paged<SubscriptionRow>> SubscriptionStore::List(int64_t offset, int64_t limit) {
  Paged<SubscriptionRow> out;
  BUD_ASSIGN_OR_RETURN(out.total, Count());
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_.conn().Prepare(fmt::format(
                    "SELECT {} FROM subscriptions ORDER BY id LIMIT ? OFFSET ?", kSubColumns)));
  st->BindAll(limit, offset);
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.items.push_back(ReadSubscription(*st));
  }
  st->Reset();
  return out;
}

Result<std::optional<SubscriptionRow>> SubscriptionStore::Get(int64_t id) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare(fmt::format(
                                     "SELECT {} FROM subscriptions WHERE id=?", kSubColumns)));
  st->Bind(1, id);
  return One(*st);
}

Result<std::optional<SubscriptionRow>> SubscriptionStore::FindByNameAndEndpoint(
    const std::string& name, const std::string& endpoint) {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare(fmt::format(
          "SELECT {} FROM subscriptions WHERE name=? AND push_endpoint=? LIMIT 1", kSubColumns)));
  st->BindAll(name, endpoint);
  return One(*st);
}

Result<int64_t> SubscriptionStore::Count() {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare("SELECT count(*) FROM subscriptions"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  const int64_t n = row ? st->Int(0) : 0;
  st->Reset();
  return n;
}

Result<int64_t> SubscriptionStore::Create(const SubscriptionRow& row, int64_t now_ms) {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare("INSERT INTO subscriptions (name, push_endpoint, resource, event, filter, "
                         "pushed_through, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, "
                         "(SELECT coalesce(max(id), 0) FROM history), ?6)"));
  st->BindAll(row.name, row.push_endpoint, row.resource, row.event, row.filter, now_ms);
  BUD_RETURN_IF_ERROR(st->Run());
  return db_.conn().LastInsertId();
}

Status SubscriptionStore::Update(const SubscriptionRow& row) {
  BUD_ASSIGN_OR_RETURN(auto* st,
                       db_.conn().Prepare("UPDATE subscriptions SET name=?2, push_endpoint=?3, "
                                          "resource=?4, event=?5, filter=?6 WHERE id=?1"));
  st->BindAll(row.id, row.name, row.push_endpoint, row.resource, row.event, row.filter);
  BUD_RETURN_IF_ERROR(st->Run());
  if (st->Changes() == 0) return NoSuch(row.id);
  return Status::Ok();
}

Status SubscriptionStore::Delete(int64_t id) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare("DELETE FROM subscriptions WHERE id=?"));
  BUD_RETURN_IF_ERROR(st->Bind(1, id).Run());
  if (st->Changes() == 0) return NoSuch(id);
  return Status::Ok();
}

Status SubscriptionStore::DeleteAll() { return db_.conn().Exec("DELETE FROM subscriptions"); }

Result<std::vector<StatusEventRow>> SubscriptionStore::EventsAfter(int64_t after, int64_t limit) {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_.conn().Prepare(
          "SELECT h.id, h.at_ms, h.message_id, coalesce(m.conversation_id, ''), h.direction, "
          "coalesce(m.process, ''), h.status, h.reason FROM history h "
          "LEFT JOIN messages m ON m.message_id=h.message_id AND m.direction=h.direction "
          "WHERE h.id > ? ORDER BY h.id LIMIT ?"));
  st->BindAll(after, limit);
  std::vector<StatusEventRow> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(StatusEventRow{st->Int(0), st->Int(1), st->Text(2), st->Text(3),
                                 StoredDirection(st->Text(4)), st->Text(5), st->Text(6),
                                 st->Text(7)});
  }
  st->Reset();
  return out;
}

Status SubscriptionStore::Advance(int64_t id, int64_t history_id) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_.conn().Prepare("UPDATE subscriptions SET pushed_through=?2 "
                                                    "WHERE id=?1 AND pushed_through < ?2"));
  return st->BindAll(id, history_id).Run();
}

Result<int64_t> SubscriptionStore::Backlog(int64_t id) {
  BUD_ASSIGN_OR_RETURN(auto* st,
                       db_.conn().Prepare("SELECT count(*) FROM history WHERE id > "
                                          "(SELECT pushed_through FROM subscriptions WHERE id=?)"));
  st->Bind(1, id);
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  const int64_t n = row ? st->Int(0) : 0;
  st->Reset();
  return n;
}

}  // namespace bud::ip
