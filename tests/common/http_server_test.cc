// common/http_server.h: which hosts count as loopback, and which requests a browser page of
// another site (or a rebound DNS name) could make that the server refuses. The same checks
// against a running integration point are in tests/integration/hostile_http_test.cc.
#include "common/http_server.h"

#include <catch2/catch.hpp>

namespace bud {
namespace {

TEST_CASE("IsLoopback takes loopback literals and localhost, not names that start like them",
          "[common][http]") {
  for (const char* h : {"localhost", "127.0.0.1", "127.1.2.3", "127.255.255.254", "::1", "[::1]",
                        "0:0:0:0:0:0:0:1"}) {
    INFO(h);
    CHECK(IsLoopback(h));
  }
  for (const char* h : {"127.0.0.1.evil.example", "127.evil.example", "127.", "127.1", "0.0.0.0",
                        "10.0.0.1", "::", "[::1", "localhost.evil.example", "evil.example",
                        "128.0.0.1", " 127.0.0.1", "127.0.0.1 ", ""}) {
    INFO("'" << h << "'");
    CHECK_FALSE(IsLoopback(h));
  }
}

httplib::Request Req(const std::string& method, const std::string& path,
                     std::initializer_list<std::pair<std::string, std::string>> headers) {
  httplib::Request r;
  r.method = method;
  r.path = path;
  for (const auto& [k, v] : headers) r.headers.emplace(k, v);
  return r;
}

TEST_CASE("CrossSiteRefusal: foreign Host names and other origins are refused", "[common][http]") {
  HttpOptions loopback;
  loopback.listen = "127.0.0.1:9093";
  // Served: programs (no Origin), the API's own page, a link to the status page.
  CHECK(CrossSiteRefusal(Req("POST", "/api/messages/out", {{"Host", "127.0.0.1:9093"}}),
                         loopback, false) == "");
  CHECK(CrossSiteRefusal(Req("GET", "/api/statuses", {{"Host", "localhost:9093"}}), loopback,
                         false) == "");
  CHECK(CrossSiteRefusal(Req("GET", "/healthz", {{"Host", "[::1]:9093"}}), loopback, false) == "");
  CHECK(CrossSiteRefusal(Req("POST", "/api/messages/out",
                             {{"Host", "127.0.0.1:9093"},
                              {"Origin", "http://127.0.0.1:9093"},
                              {"Sec-Fetch-Site", "same-origin"}}),
                         loopback, false) == "");
  CHECK(CrossSiteRefusal(Req("GET", "/", {{"Host", "127.0.0.1:9093"},
                                          {"Sec-Fetch-Site", "cross-site"}}),
                         loopback, false) == "");
  CHECK(CrossSiteRefusal(Req("GET", "/api/statuses", {{"Host", "127.0.0.1:9093"},
                                                      {"Sec-Fetch-Site", "none"}}),
                         loopback, false) == "");

  // Refused.
  CHECK_THAT(CrossSiteRefusal(Req("GET", "/api/messages/in/peek",
                                  {{"Host", "rebound.evil.example:9093"}}),
                              loopback, false),
             Catch::Matchers::Contains("DNS rebinding"));
  CHECK_THAT(CrossSiteRefusal(Req("GET", "/", {{"Host", "127.0.0.1.evil.example:9093"}}),
                              loopback, false),
             Catch::Matchers::Contains("DNS rebinding"));
  CHECK_THAT(CrossSiteRefusal(Req("GET", "/", {{"Host", "127.0.0.1:90x"}}), loopback, false),
             Catch::Matchers::Contains("DNS rebinding"));
  CHECK_THAT(CrossSiteRefusal(Req("POST", "/api/messages/out",
                                  {{"Host", "127.0.0.1:9093"}, {"Origin", "https://evil.example"}}),
                              loopback, false),
             Catch::Matchers::Contains("cross-origin"));
  CHECK_THAT(CrossSiteRefusal(Req("POST", "/api/messages/out",
                                  {{"Host", "127.0.0.1:9093"}, {"Origin", "null"}}),
                              loopback, false),
             Catch::Matchers::Contains("cross-origin"));
  // Another port of the same host is another origin.
  CHECK_THAT(CrossSiteRefusal(Req("DELETE", "/api/messages/in/x",
                                  {{"Host", "127.0.0.1:9093"}, {"Origin", "http://127.0.0.1:8080"}}),
                              loopback, false),
             Catch::Matchers::Contains("cross-origin"));
  // The scheme counts too.
  CHECK_THAT(CrossSiteRefusal(Req("POST", "/api/messages/out",
                                  {{"Host", "127.0.0.1:9093"}, {"Origin", "http://127.0.0.1:9093"}}),
                              loopback, true),
             Catch::Matchers::Contains("cross-origin"));
  // An image or form on another site carries no Origin on GET, but a browser's Sec-Fetch-Site.
  CHECK_THAT(CrossSiteRefusal(Req("GET", "/api/messages/in/peek",
                                  {{"Host", "127.0.0.1:9093"}, {"Sec-Fetch-Site", "cross-site"}}),
                              loopback, false),
             Catch::Matchers::Contains("Sec-Fetch-Site"));
  CHECK_THAT(CrossSiteRefusal(Req("GET", "/api/messages/in/peek",
                                  {{"Host", "127.0.0.1:9093"}, {"Sec-Fetch-Site", "same-site"}}),
                              loopback, false),
             Catch::Matchers::Contains("Sec-Fetch-Site"));

  // Listening beyond loopback: any Host unless http.allowed_hosts names them.
  HttpOptions wide;
  wide.listen = "0.0.0.0:9093";
  CHECK(CrossSiteRefusal(Req("GET", "/api/statuses", {{"Host", "ip.agency.example:9093"}}), wide,
                         true) == "");
  wide.allowed_hosts = {"ip.agency.example"};
  CHECK(CrossSiteRefusal(Req("GET", "/api/statuses", {{"Host", "IP.Agency.Example:9093"}}), wide,
                         true) == "");
  CHECK_FALSE(CrossSiteRefusal(Req("GET", "/api/statuses", {{"Host", "other.example"}}), wide,
                               true) == "");
}

}  // namespace
}  // namespace bud
