// Webhook subscriptions (/api/subscriptions) as eFormidling's integration point keeps them
// (SubscriptionController, SubscriptionServiceImpl): list, get, create (after a ping to the push
// endpoint), update (a ping when the endpoint changes), delete one or all. The events are pushed
// by webhooks/webhook_pusher.h. No HTTP here: the routes (routes_subscriptions.cc) parse and
// answer.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "integration-point/api/shared_store.h"
#include "integration-point/store/subscription_store.h"

namespace bud::ip::api {

// A subscription's fields as a client sent them (absent: nullopt).
struct SubscriptionInput {
  std::optional<std::string> name;
  std::optional<std::string> push_endpoint;
  std::optional<std::string> resource;
  std::optional<std::string> event;
  std::optional<std::string> filter;
  bool has_id = false;  // the body named an id (refused on create, as eFormidling)
  nlohmann::json id;
};

// One failed check of a field, as Spring's validation reports it (errors[] of a 400).
struct FieldError {
  std::string field;
  std::string code;  // the constraint: "NotNull", "Null", "URL", "OneOf", "WebhookFilter", "Size"
  std::string message;
  nlohmann::json rejected;
};

// The body as a subscription: kMalformed when it is not a JSON object (at most 64 KiB, nested 16
// deep), or a field is an object or array (numbers and booleans are read as their text, as Jackson
// does); unknown fields are ignored.
Result<SubscriptionInput> ReadSubscriptionInput(const std::string& body);

// The checks of eFormidling's Subscription for creating (`create`: name, pushEndpoint, resource
// and event required, no id) or updating (only what is given is checked): pushEndpoint an http
// or https URL (webhooks/url_pusher.h), resource all|messages, event all|status, filter as
// webhooks/webhook_filter.h reads it; texts at most 2048 characters.
std::vector<FieldError> Validate(const SubscriptionInput& in, bool create);
// errors[] of Spring's MethodArgumentNotValidException for `errors`.
nlohmann::json FieldErrorsJson(const std::vector<FieldError>& errors);

// {id, name, pushEndpoint, resource, event[, filter]}.
nlohmann::json SubscriptionJson(const SubscriptionRow& s);

class Subscriptions {
 public:
  // `ping(url)` POSTs the ping event to `url` (its outcome is logged, never an error: eFormidling
  // creates the subscription whatever the ping met); `changed` is called after every change;
  // `max` subscriptions at most.
  Subscriptions(SharedStore& store, std::function<void(const std::string&)> ping,
                std::function<void()> changed, int64_t max, std::function<int64_t()> now);

  // A Spring page of subscriptions by id.
  Result<nlohmann::json> List(int64_t page, int64_t offset, int64_t limit);
  Result<nlohmann::json> Get(int64_t id);  // kNotFound
  // `in` passed Validate(in, true). kAlreadyExists for the same name and endpoint as another,
  // kInvalidArgument beyond the maximum.
  Result<nlohmann::json> Create(const SubscriptionInput& in);
  // `in` passed Validate(in, false); what it gives replaces the stored fields. kNotFound,
  // kAlreadyExists.
  Status Update(int64_t id, const SubscriptionInput& in);
  Status Delete(int64_t id);  // kNotFound
  Status DeleteAll();

 private:
  SharedStore& store_;
  std::function<void(const std::string&)> ping_;
  std::function<void()> changed_;
  int64_t max_;
  std::function<int64_t()> now_;
};

}  // namespace bud::ip::api
