// HTTP Basic authentication of the API (common/http_auth.h, [http] basic_auth_file) over a real
// server on an OS-picked loopback port with the API's routes: the right password is let in, a
// wrong one or none gets 401 with a Basic challenge, /manage/health and the status page's shell
// stay open, and the bearer token still works beside it.
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "common/fs.h"
#include "common/http_auth.h"
#include "common/http_server.h"
#include "integration-point/api/routes.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;

std::string BasicHeader(const std::string& user_password) {
  std::string out(4 * ((user_password.size() + 2) / 3) + 1, '\0');
  out.resize(static_cast<size_t>(EVP_EncodeBlock(
      reinterpret_cast<unsigned char*>(out.data()),
      reinterpret_cast<const unsigned char*>(user_password.data()), user_password.size())));
  return "Basic " + out;
}

struct AuthServed : ApiFixture {
  std::unique_ptr<HttpServer> server;
  std::unique_ptr<httplib::Client> client;
  explicit AuthServed(bool with_token) {
    HttpOptions o;
    o.basic_auth_file = dir / "basic-auth";
    // Cost 2^10: the test's own speed; the default is 2^15.
    REQUIRE(WriteBasicAuthFile(o.basic_auth_file, "arkiv", "hemmelig æøå", 10).ok());
    if (with_token) {
      o.token_file = dir / "token";
      REQUIRE(WriteFileSynced(o.token_file, "0123456789abcdef0123\n", 0600).ok());
    }
    server = Serve(o);
    client = std::make_unique<httplib::Client>("http://" + server->address());
  }
  httplib::Result Get(const std::string& path, const std::string& authorization = "") {
    httplib::Headers h;
    if (!authorization.empty()) h.emplace("Authorization", authorization);
    return client->Get(path.c_str(), h);
  }
};

TEST_CASE("basic auth: right password 200, wrong 401, none 401, /manage/health open",
          "[ip][api][auth]") {
  AuthServed s(false);
  auto right = s.Get("/api/statuses", BasicHeader("arkiv:hemmelig æøå"));
  REQUIRE(right);
  CHECK(right->status == 200);
  // Again: the remembered header, same answer.
  auto again = s.Get("/api/statuses", BasicHeader("arkiv:hemmelig æøå"));
  REQUIRE(again);
  CHECK(again->status == 200);
  for (const std::string& wrong :
       {BasicHeader("arkiv:hemmelig"), BasicHeader("arkiv:hemmelig æøå "),
        BasicHeader("Arkiv:hemmelig æøå"), BasicHeader("arkiv"), BasicHeader(":"),
        std::string("Basic !!!!"), std::string("Basic"), std::string("Bearer abc"),
        std::string("Basic ") + std::string(5000, 'A')}) {
    CAPTURE(wrong.substr(0, 40));
    auto refused = s.Get("/api/statuses", wrong);
    REQUIRE(refused);
    CHECK(refused->status == 401);
    CHECK(refused->get_header_value("WWW-Authenticate") ==
          R"(Basic realm="budstikke", charset="UTF-8")");
    auto body = json::parse(refused->body);
    CHECK(body["status"] == 401);
    CHECK(body["exception"] ==
          "org.springframework.security.authentication.BadCredentialsException");
  }
  auto none = s.Get("/api/messages/in/peek");
  REQUIRE(none);
  CHECK(none->status == 401);
  CHECK_THAT(json::parse(none->body)["message"].get<std::string>(),
             Catch::Contains("http.basic_auth_file"));
  // Open: health for monitoring, the status page's shell.
  auto health = s.Get("/manage/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body) == json{{"status", "UP"}});
  auto page = s.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  // A POST with a body and the wrong password: refused before anything is taken in.
  httplib::Headers h{{"Authorization", BasicHeader("arkiv:feil")}};
  auto post =
      s.client->Post("/api/messages/out", h,
                     ExampleSbd("b0000000-0000-4000-8000-0000000000a1").dump(), "application/json");
  REQUIRE(post);
  CHECK(post->status == 401);
  CHECK(s.OutStatus("b0000000-0000-4000-8000-0000000000a1").empty());
}

TEST_CASE("basic auth beside a bearer token: either is let in", "[ip][api][auth]") {
  AuthServed s(true);
  auto basic = s.Get("/api/statuses", BasicHeader("arkiv:hemmelig æøå"));
  REQUIRE(basic);
  CHECK(basic->status == 200);
  auto bearer = s.Get("/api/statuses", "Bearer 0123456789abcdef0123");
  REQUIRE(bearer);
  CHECK(bearer->status == 200);
  auto neither = s.Get("/api/statuses", "Bearer 0123456789abcdef0124");
  REQUIRE(neither);
  CHECK(neither->status == 401);
  CHECK(neither->get_header_value_count("WWW-Authenticate") == 2);
}

TEST_CASE("the basic auth file: written by the verb's function, checked when read",
          "[ip][api][auth]") {
  bud::test::TempDir dir;
  auto line = MakeBasicAuthLine("arkiv", "pw", 10);
  REQUIRE(line.ok());
  auto parsed = ParseBasicAuthLine(*line);
  REQUIRE(parsed.ok());
  CHECK(parsed->user == "arkiv");
  CHECK(parsed->log2_n == 10);
  CHECK(line->find("pw") == std::string::npos);
  BasicAuth auth(*parsed);
  CHECK(auth.Check(BasicHeader("arkiv:pw")));
  CHECK_FALSE(auth.Check(BasicHeader("arkiv:pW")));
  // Two files of the same password differ (salt).
  CHECK(*MakeBasicAuthLine("arkiv", "pw", 10) != *line);

  CHECK_FALSE(MakeBasicAuthLine("ar:kiv", "pw", 10).ok());
  CHECK_FALSE(MakeBasicAuthLine("arkiv", "", 10).ok());
  CHECK_FALSE(MakeBasicAuthLine("arkiv", "pw", 9).ok());
  struct Bad {
    std::string line, phrase;
  } bad[] = {
      {"arkiv:pw", "7 ':'-separated fields"},
      {"arkiv:bcrypt:10:8:1:00112233445566778899aabbccddeeff:00", "unknown hash 'bcrypt'"},
      {"arkiv:scrypt:40:8:1:00112233445566778899aabbccddeeff:00", "log2 N must be 10 to 20"},
      {"arkiv:scrypt:10:8:1:zz:00", "the salt"},
      {"arkiv:scrypt:10:8:1:00112233445566778899aabbccddeeff:0011", "the hash must be 32 bytes"},
      {":scrypt:10:8:1:00112233445566778899aabbccddeeff:00", "user name"},
  };
  for (const auto& b : bad) {
    CAPTURE(b.line);
    auto p = ParseBasicAuthLine(b.line);
    REQUIRE_FALSE(p.ok());
    CHECK_THAT(p.status().message(), Catch::Contains(b.phrase));
  }
  // A file others can read is refused; the verb's file is 0600.
  REQUIRE(WriteBasicAuthFile(dir / "auth", "arkiv", "pw", 10).ok());
  struct stat st;
  REQUIRE(::stat((dir / "auth").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(LoadBasicAuthFile(dir / "auth").ok());
  REQUIRE(::chmod((dir / "auth").c_str(), 0644) == 0);
  CHECK_FALSE(LoadBasicAuthFile(dir / "auth").ok());
}

}  // namespace
}  // namespace bud::ip::api::test
