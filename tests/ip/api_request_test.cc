// The HTTP side's request parsing, in-process on httplib's request objects: query parameters
// (integration-point/api/query.h) and Content-Disposition (routes.h).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "integration-point/api/multipart.h"
#include "integration-point/api/query.h"
#include "integration-point/api/routes.h"

namespace bud::ip::api {
namespace {

httplib::Request Get(const std::string& path, std::multimap<std::string, std::string> params) {
  httplib::Request req;
  req.method = "GET";
  req.path = path;
  req.params = std::move(params);
  return req;
}

TEST_CASE("query parameters: defaults, pages, directions, organisations", "[ip][api][query]") {
  auto req = Get("/api/statuses", {{"page", "2"},
                                   {"size", "5"},
                                   {"direction", "INCOMING"},
                                   {"orgnr", "910075918"},
                                   {"status", "LEVERT"}});
  httplib::Response res;
  Query q{req, res};
  int64_t offset = 0, limit = 0;
  CHECK(q.Page(offset, limit) == 2);
  CHECK(offset == 10);
  CHECK(limit == 5);
  CHECK(q.Direction("direction") == std::optional<Direction>(Direction::kIn));
  CHECK(q.Org("orgnr") == "0192:910075918");
  CHECK(q.StatusName("status") == "LEVERT");
  CHECK(q.Time("fromDateTime") == 0);
  CHECK(q.Text("messageId").empty());
  CHECK_FALSE(q.failed);
  auto defaults = Get("/api/statuses", {});
  Query d{defaults, res};
  CHECK(d.Page(offset, limit) == 0);
  CHECK(limit == 10);
}

TEST_CASE("page and size fall back as Spring's do: never a 400", "[ip][api][query]") {
  struct Case {
    std::string page, size;
    int64_t want_page, want_limit;
  } cases[] = {
      {"0", "0", 0, 10},      {"0", "-3", 0, 10},     {"0", "x", 0, 10},
      {"-1", "5", 0, 5},      {"1x", "5", 0, 5},      {"2", "1001", 2, 1001},
      {"0", "2000", 0, 2000}, {"0", "2001", 0, 2000}, {"0", "99999999999999999999", 0, 10},
  };
  for (const auto& c : cases) {
    CAPTURE(c.page, c.size);
    auto req = Get("/api/conversations", {{"page", c.page}, {"size", c.size}});
    httplib::Response res;
    Query q{req, res};
    int64_t offset = 0, limit = 0;
    CHECK(q.Page(offset, limit) == c.want_page);
    CHECK(limit == c.want_limit);
    CHECK(offset == c.want_page * c.want_limit);
    CHECK_FALSE(q.failed);
  }
}

TEST_CASE("sort=prop[,asc|desc], repeatable; an unknown property is a 400", "[ip][api][query]") {
  auto req =
      Get("/api/statuses", {{"sort", "lastUpdate,desc"}, {"sort", "id"}, {"sort", "a,b,ASC"}});
  httplib::Response res;
  Query q{req, res};
  auto orders = q.Sort({"id", "lastUpdate", "a", "b"});
  REQUIRE(orders.size() == 4);
  CHECK(orders[0].property == "lastUpdate");
  CHECK_FALSE(orders[0].ascending);
  CHECK(orders[1].property == "id");
  CHECK(orders[1].ascending);
  CHECK(orders[2].property == "a");
  CHECK(orders[3].property == "b");
  CHECK(orders[3].ascending);
  CHECK_FALSE(q.failed);
  auto bad = Get("/api/statuses", {{"sort", "password,desc"}});
  Query b{bad, res};
  CHECK(b.Sort({"id", "lastUpdate"}).empty());
  CHECK(b.failed);
  CHECK(res.status == 400);
  CHECK_THAT(nlohmann::json::parse(res.body)["message"].get<std::string>(),
             Catch::Contains("no property 'password' to sort by (there are: id, lastUpdate)"));
}

TEST_CASE("a bad query parameter is one 400 naming it", "[ip][api][query]") {
  struct Case {
    std::string name, value, phrase;
  } cases[] = {
      {"direction", "SIDEWAYS", "must be OUTGOING or INCOMING (got 'SIDEWAYS')"},
      {"status", "DONE", "'DONE' is not a known status"},
      {"fromDateTime", "yesterday", "must be an ISO 8601 time"},
      {"orgnr", "123", "query parameter 'orgnr'"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name, c.value);
    auto req = Get("/api/conversations", {{c.name, c.value}, {"size", "5"}});
    httplib::Response res;
    Query q{req, res};
    int64_t offset = 0, limit = 0;
    q.Page(offset, limit);
    q.Direction("direction");
    q.StatusName("status");
    q.Time("fromDateTime");
    q.Org("orgnr");
    CHECK(q.failed);
    CHECK(res.status == 400);
    auto body = nlohmann::json::parse(res.body);
    CHECK_THAT(body["message"].get<std::string>(), Catch::Contains(c.phrase));
    CHECK(body["path"] == "/api/conversations");
  }
}

// A parameter of a Content-Disposition (multipart.h), "" when absent or the header is refused.
std::string DispositionParam(const std::string& header, const std::string& key) {
  auto p = ParseHeaderParams(header);
  return p.ok() ? p->Get(key) : "";
}

TEST_CASE("Content-Disposition parameters, quoted or not", "[ip][api][query]") {
  const std::string h = R"(attachment; name="Kart over Bø"; filename="kart.tif")";
  CHECK(DispositionParam(h, "filename") == "kart.tif");
  CHECK(DispositionParam(h, "name") == "Kart over Bø");
  CHECK(DispositionParam("attachment; filename=plain.pdf ; name=x", "filename") == "plain.pdf");
  CHECK(DispositionParam("attachment; xfilename=\"no\"", "filename").empty());
  // An unterminated quoted string is refused, not guessed at.
  auto unterminated = ParseHeaderParams("attachment; filename=\"unterminated");
  REQUIRE_FALSE(unterminated.ok());
  CHECK_THAT(unterminated.status().message(),
             Catch::Contains("'filename': the quoted value is not closed"));
  CHECK(DispositionParam("", "filename").empty());
}

TEST_CASE("only a PUT of one draft's file is read as a stream", "[ip][api][query]") {
  httplib::Request put;
  put.method = "PUT";
  put.path = "/api/messages/out/abc";
  CHECK(IsFileUpload(put));
  put.path = "/api/messages/out/abc/x";
  CHECK_FALSE(IsFileUpload(put));
  put.path = "/api/messages/out/abc";
  put.method = "POST";
  CHECK_FALSE(IsFileUpload(put));
}

}  // namespace
}  // namespace bud::ip::api
