// Routes of /api/subscriptions (webhooks). See routes.h and subscriptions.h.
#include <cerrno>
#include <cstdlib>

#include "common/http_server.h"
#include "integration-point/api/http_answer.h"
#include "integration-point/api/query.h"
#include "integration-point/api/routes.h"

namespace bud::ip::api {

namespace {
using Req = httplib::Request;
using Res = httplib::Response;

// eFormidling's exception for each refusal of a subscription.
std::string SubscriptionException(Code code) {
  switch (code) {
    case Code::kNotFound:
      return EfmException("SubscriptionNotFoundException");
    case Code::kAlreadyExists:
      return EfmException("SubscriptionWithSameNameAndPushEndpointAlreadyExists");
    case Code::kMalformed:
      return "org.springframework.http.converter.HttpMessageNotReadableException";
    default:
      return ExceptionFor(code);
  }
}

void Refuse(Res& res, const Status& st, const Req& req) {
  SendStatus(res, st, req.path, 0, SubscriptionException(st.code()));
}

// The path's id; answers 400 (as Spring's MethodArgumentTypeMismatchException) when it is not
// a number.
std::optional<int64_t> PathId(const Req& req, Res& res) {
  const std::string text = req.matches[1].str();
  errno = 0;
  char* end = nullptr;
  const long long id = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE) {
    SendError(res, 400, "the subscription id \"" + text.substr(0, 64) + "\" is not a number",
              req.path,
              "org.springframework.web.method.annotation.MethodArgumentTypeMismatchException");
    return std::nullopt;
  }
  return static_cast<int64_t>(id);
}

// The body as checked input; answers 400 (and returns nullopt) when it is not.
std::optional<SubscriptionInput> Input(const Req& req, Res& res, bool create) {
  auto in = ReadSubscriptionInput(req.body);
  if (!in.ok()) {
    Refuse(res, in.status(), req);
    return std::nullopt;
  }
  auto errors = Validate(*in, create);
  if (!errors.empty()) {
    std::string message = "Validation failed for object='subscription'. Error count: " +
                          std::to_string(errors.size());
    for (const auto& e : errors) message += "; " + e.field + ": " + e.message;
    SendError(res, 400, message, req.path,
              "org.springframework.web.bind.MethodArgumentNotValidException",
              {{"errors", FieldErrorsJson(errors)}});
    return std::nullopt;
  }
  return *in;
}
}  // namespace

void AddSubscriptionRoutes(httplib::Server& srv, Subscriptions& subs) {
  srv.Get("/api/subscriptions", [&subs](const Req& req, Res& res) {
    Query q{req, res};
    int64_t offset = 0, limit = kDefaultPageSize;
    const int64_t page = q.Page(offset, limit);
    if (q.failed) return;
    auto body = subs.List(page, offset, limit);
    if (!body.ok()) return Refuse(res, body.status(), req);
    SendJson(res, *body);
  });
  srv.Post("/api/subscriptions", [&subs](const Req& req, Res& res) {
    auto in = Input(req, res, true);
    if (!in) return;
    auto body = subs.Create(*in);
    if (!body.ok()) return Refuse(res, body.status(), req);
    SendJson(res, *body);
  });
  srv.Delete("/api/subscriptions", [&subs](const Req& req, Res& res) {
    Status st = subs.DeleteAll();
    if (!st.ok()) return Refuse(res, st, req);
    res.status = 200;
  });
  srv.Get(R"(/api/subscriptions/([^/]+))", [&subs](const Req& req, Res& res) {
    auto id = PathId(req, res);
    if (!id) return;
    auto body = subs.Get(*id);
    if (!body.ok()) return Refuse(res, body.status(), req);
    SendJson(res, *body);
  });
  srv.Put(R"(/api/subscriptions/([^/]+))", [&subs](const Req& req, Res& res) {
    auto id = PathId(req, res);
    if (!id) return;
    auto in = Input(req, res, false);
    if (!in) return;
    Status st = subs.Update(*id, *in);
    if (!st.ok()) return Refuse(res, st, req);
    res.status = 200;
  });
  srv.Delete(R"(/api/subscriptions/([^/]+))", [&subs](const Req& req, Res& res) {
    auto id = PathId(req, res);
    if (!id) return;
    Status st = subs.Delete(*id);
    if (!st.ok()) return Refuse(res, st, req);
    res.status = 200;
  });
}

}  // namespace bud::ip::api
