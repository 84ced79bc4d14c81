// Webhook subscriptions. See subscriptions.h.
#include "integration-point/api/subscriptions.h"

#include <fmt/format.h>

#include "common/json.h"
#include "integration-point/api/json_shapes.h"
#include "integration-point/store/point_store.h"
#include "integration-point/webhooks/url_pusher.h"
#include "integration-point/webhooks/webhook_filter.h"

namespace bud::ip::api {

using nlohmann::json;

namespace {
constexpr size_t kMaxText = 2048;

Result<std::optional<std::string>> TextField(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_number() || it->is_boolean()) return std::optional<std::string>(it->dump());
  return Status(Code::kMalformed, fmt::format("JSON parse error: \"{}\" must be a text, not {}",
                                              name, it->type_name()));
}

void OneOf(std::vector<FieldError>& errors, const char* field, const std::optional<std::string>& v,
           std::initializer_list<const char*> allowed) {
  if (!v) return;
  for (const char* a : allowed) {
    if (*v == a) return;
  }
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  errors.push_back({field, "OneOf", "must be one of: " + list, *v});
}

Status Duplicate() {
  return Status(Code::kAlreadyExists,
                "a subscription with the same name and pushEndpoint already exists");
}

bool Lacks(const SubscriptionInput& in) { return !in.name || !in.push_endpoint; }
}  // namespace

Result<SubscriptionInput> ReadSubscriptionInput(const std::string& body) {
  // Bounded before it is parsed (common/json.h): an `id` or a field deep inside is copied.
  auto parsed = ParseJson(body, "the subscription", JsonLimits{64 << 10, 16});
  if (!parsed.ok())
    return Status(Code::kMalformed, "JSON parse error: " + parsed.status().message());
  const json& j = *parsed;
  if (!j.is_object()) {
    return Status(Code::kMalformed, "JSON parse error: the body must be a JSON object");
  }
  SubscriptionInput in;
  BUD_ASSIGN_OR_RETURN(in.name, TextField(j, "name"));
  BUD_ASSIGN_OR_RETURN(in.push_endpoint, TextField(j, "pushEndpoint"));
  BUD_ASSIGN_OR_RETURN(in.resource, TextField(j, "resource"));
  BUD_ASSIGN_OR_RETURN(in.event, TextField(j, "event"));
  BUD_ASSIGN_OR_RETURN(in.filter, TextField(j, "filter"));
  if (auto it = j.find("id"); it != j.end() && !it->is_null()) {
    in.has_id = true;
    in.id = *it;
  }
  return in;
}

std::vector<FieldError> Validate(const SubscriptionInput& in, bool create) {
  std::vector<FieldError> errors;
  if (create) {
    if (in.has_id) errors.push_back({"id", "Null", "must be null", in.id});
    const std::pair<const char*, const std::optional<std::string>*> required[] = {
        {"name", &in.name},
        {"pushEndpoint", &in.push_endpoint},
        {"resource", &in.resource},
        {"event", &in.event}};
    for (const auto& [field, value] : required) {
      if (!*value) errors.push_back({field, "NotNull", "must not be null", nullptr});
    }
  }
  const std::pair<const char*, const std::optional<std::string>*> texts[] = {
      {"name", &in.name}, {"pushEndpoint", &in.push_endpoint}, {"filter", &in.filter}};
  for (const auto& [field, value] : texts) {
    if (*value && (*value)->size() > kMaxText) {
      errors.push_back({field, "Size", "size must be between 0 and 2048", nullptr});
    }
  }
  if (in.push_endpoint && in.push_endpoint->size() <= kMaxText) {
    auto url = webhooks::ParsePushUrl(*in.push_endpoint);
    if (!url.ok())
      errors.push_back({"pushEndpoint", "URL", url.status().message(), *in.push_endpoint});
  }
  OneOf(errors, "resource", in.resource, {"all", "messages"});
  OneOf(errors, "event", in.event, {"all", "status"});
  if (in.filter && in.filter->size() <= kMaxText) {
    auto parts = webhooks::ParseFilter(*in.filter);
    if (!parts.ok()) {
      errors.push_back({"filter", "WebhookFilter", parts.status().message(), *in.filter});
    }
  }
  return errors;
}

json FieldErrorsJson(const std::vector<FieldError>& errors) {
  json out = json::array();
  for (const auto& e : errors) {
    out.push_back({{"codes", {e.code + ".subscription." + e.field, e.code + "." + e.field, e.code}},
                   {"defaultMessage", e.message},
                   {"objectName", "subscription"},
                   {"field", e.field},
                   {"rejectedValue", e.rejected},
                   {"bindingFailure", false},
                   {"code", e.code}});
  }
  return out;
}

json SubscriptionJson(const SubscriptionRow& s) {
  json out = {{"id", s.id},
              {"name", s.name},
              {"pushEndpoint", s.push_endpoint},
              {"resource", s.resource},
              {"event", s.event}};
  if (!s.filter.empty()) out["filter"] = s.filter;
  return out;
}

Subscriptions::Subscriptions(SharedStore& store, std::function<void(const std::string&)> ping,
                             std::function<void()> changed, int64_t max,
                             std::function<int64_t()> now)
    : store_(store),
      ping_(std::move(ping)),
      changed_(std::move(changed)),
      max_(max),
      now_(std::move(now)) {}

Result<json> Subscriptions::List(int64_t page, int64_t offset, int64_t limit) {
  BUD_ASSIGN_OR_RETURN(
      auto rows, store_.Run([&](PointStore& s) { return s.subscriptions.List(offset, limit); }));
  json content = json::array();
  for (const auto& r : rows.items) content.push_back(SubscriptionJson(r));
  return PageJson(std::move(content), rows.total, page, limit);
}

Result<json> Subscriptions::Get(int64_t id) {
  BUD_ASSIGN_OR_RETURN(auto row,
                       store_.Run([&](PointStore& s) { return s.subscriptions.Get(id); }));
  if (!row) return Status(Code::kNotFound, fmt::format("no subscription with id {}", id));
  return SubscriptionJson(*row);
}

Result<json> Subscriptions::Create(const SubscriptionInput& in) {
  if (Lacks(in)) return Status(Code::kInvalidArgument, "name and pushEndpoint are required");
  auto checked = store_.Run([&](PointStore& s) -> Status {
    BUD_ASSIGN_OR_RETURN(auto same,
                         s.subscriptions.FindByNameAndEndpoint(*in.name, *in.push_endpoint));
    if (same) return Duplicate();
    BUD_ASSIGN_OR_RETURN(int64_t n, s.subscriptions.Count());
    if (n >= max_) {
      return Status(Code::kInvalidArgument,
                    fmt::format("this integration point keeps at most {} subscriptions "
                                "([webhooks] max_subscriptions); usually one is enough",
                                max_));
    }
    return Status::Ok();
  });
  BUD_RETURN_IF_ERROR(checked);
  ping_(*in.push_endpoint);  // outside the store's mutex: it waits for the subscriber
  SubscriptionRow row;
  row.name = *in.name;
  row.push_endpoint = *in.push_endpoint;
  row.resource = in.resource.value_or("all");
  row.event = in.event.value_or("all");
  row.filter = in.filter.value_or("");
  BUD_ASSIGN_OR_RETURN(
      row.id, store_.Run([&](PointStore& s) { return s.subscriptions.Create(row, now_()); }));
  changed_();
  return SubscriptionJson(row);
}

Status Subscriptions::Update(int64_t id, const SubscriptionInput& in) {
  auto existing = store_.Run([&](PointStore& s) -> Result<SubscriptionRow> {
    BUD_ASSIGN_OR_RETURN(auto row, s.subscriptions.Get(id));
    if (!row) return Status(Code::kNotFound, fmt::format("no subscription with id {}", id));
    if (in.name && in.push_endpoint) {
      BUD_ASSIGN_OR_RETURN(auto same,
                           s.subscriptions.FindByNameAndEndpoint(*in.name, *in.push_endpoint));
      if (same && same->id != id) return Duplicate();
    }
    return *row;
  });
  BUD_RETURN_IF_ERROR(existing.status());
  SubscriptionRow row = *existing;
  if (in.push_endpoint && *in.push_endpoint != row.push_endpoint) ping_(*in.push_endpoint);
  if (in.push_endpoint) row.push_endpoint = *in.push_endpoint;
  if (in.name) row.name = *in.name;
  if (in.resource) row.resource = *in.resource;
  if (in.event) row.event = *in.event;
  if (in.filter) row.filter = *in.filter;
  BUD_RETURN_IF_ERROR(store_.Run([&](PointStore& s) { return s.subscriptions.Update(row); }));
  changed_();
  return Status::Ok();
}

Status Subscriptions::Delete(int64_t id) {
  BUD_RETURN_IF_ERROR(store_.Run([&](PointStore& s) { return s.subscriptions.Delete(id); }));
  changed_();
  return Status::Ok();
}

Status Subscriptions::DeleteAll() {
  BUD_RETURN_IF_ERROR(store_.Run([&](PointStore& s) { return s.subscriptions.DeleteAll(); }));
  changed_();
  return Status::Ok();
}

}  // namespace bud::ip::api
