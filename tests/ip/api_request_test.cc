// The HTTP side's request parsing, in-process on httplib's request objects: query parameters
// (integration-point/api/query.h) and Content-Disposition (routes.h).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

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
  CHECK(limit == 20);
}

TEST_CASE("a bad query parameter is one 400 naming it", "[ip][api][query]") {
  struct Case {
    std::string name, value, phrase;
  } cases[] = {
      {"size", "0", "query parameter 'size' must be a whole number from 1 to 1000 (got '0')"},
      {"size", "1001", "from 1 to 1000"},
      {"page", "-1", "query parameter 'page'"},
      {"page", "1x", "(got '1x')"},
      {"direction", "SIDEWAYS", "must be OUTGOING or INCOMING (got 'SIDEWAYS')"},
      {"status", "DONE", "'DONE' is not a known status"},
      {"fromDateTime", "yesterday", "must be an ISO 8601 time"},
      {"orgnr", "123", "query parameter 'orgnr'"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name, c.value);
    auto req =
        Get("/api/conversations", {{c.name, c.value}, {"size", c.name == "size" ? c.value : "5"}});
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

TEST_CASE("Content-Disposition parameters, quoted or not", "[ip][api][query]") {
  const std::string h = R"(attachment; name="Kart over Bø"; filename="kart.tif")";
  CHECK(DispositionParam(h, "filename") == "kart.tif");
  CHECK(DispositionParam(h, "name") == "Kart over Bø");
  CHECK(DispositionParam("attachment; filename=plain.pdf ; name=x", "filename") == "plain.pdf");
  CHECK(DispositionParam("attachment; xfilename=\"no\"", "filename").empty());
  CHECK(DispositionParam("attachment; filename=\"unterminated", "filename") == "unterminated");
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
