// What real clients send the API (integration-point/api/multipart.h): Content-Disposition quoted
// and unquoted, RFC 2047 encoded words (B and Q), RFC 5987 filename* (preferred over filename),
// UTF-8 names with æøå; multipart bodies as Spring/Java, curl and .NET write them; hostile ones
// refused with a message naming what is wrong. Then the same bodies over a real server.
#include <catch2/catch.hpp>

#include "common/http_server.h"
#include "integration-point/api/multipart.h"
#include "integration-point/api/routes.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;

std::string Param(const std::string& header, const std::string& key) {
  auto p = ParseHeaderParams(header);
  INFO(header << ": " << (p.ok() ? "" : p.status().message()));
  REQUIRE(p.ok());
  return p->Get(key);
}

TEST_CASE("Content-Disposition as clients write it", "[ip][api][multipart]") {
  // Spring/Java, curl.
  CHECK(Param(R"(form-data; name="sbd"; filename="x.pdf")", "filename") == "x.pdf");
  CHECK(Param(R"(form-data; name="sbd")", "name") == "sbd");
  // .NET: unquoted tokens.
  CHECK(Param("form-data; name=sbd", "name") == "sbd");
  CHECK(Param("form-data; name=Hoveddokument; filename=x.pdf", "filename") == "x.pdf");
  CHECK(Param("FORM-DATA;NAME=sbd", "name") == "sbd");
  CHECK(ParseHeaderParams("Form-Data; name=sbd")->type == "form-data");
  // RFC 2047, base64 and quoted-printable; "vedtak æøå.pdf".
  CHECK(Param(R"(attachment; filename="=?utf-8?B?dmVkdGFrIMOmw7jDpS5wZGY=?=")", "filename") ==
        "vedtak æøå.pdf");
  CHECK(Param(R"(attachment; filename="=?UTF-8?Q?vedtak_=C3=A6=C3=B8=C3=A5.pdf?=")", "filename") ==
        "vedtak æøå.pdf");
  CHECK(Param(R"(attachment; filename="=?iso-8859-1?Q?bl=E5b=E6r.txt?=")", "filename") ==
        "blåbær.txt");
  // Two words: the space between them goes; text around them stays.
  CHECK(Param(R"(attachment; filename="=?utf-8?B?w6b DuA==?= =?utf-8?Q?=C3=A5?=.pdf")",
              "filename") == "=?utf-8?B?w6b DuA==?= å.pdf");  // a space inside: not a word
  CHECK(Param(R"(attachment; filename="=?utf-8?B?w6Y=?= =?utf-8?B?w7g=?= x")", "filename") ==
        "æø x");
  // RFC 5987: preferred over filename, whichever comes first.
  CHECK(Param("attachment; filename=\"fallback.pdf\"; filename*=utf-8''k%C3%A5ta.pdf",
              "filename") == "kåta.pdf");
  CHECK(Param("attachment; filename*=UTF-8'no'k%C3%A5ta.pdf; filename=\"fallback.pdf\"",
              "filename") == "kåta.pdf");
  CHECK(Param("attachment; filename*=iso-8859-1''bl%E5.txt", "filename") == "blå.txt");
  // Already %-decoded UTF-8 (as cpp-httplib hands a PUT's header to the route).
  CHECK(Param("attachment; filename*=utf-8''k\xc3\xa5ta.pdf", "filename") == "kåta.pdf");
  // Plain UTF-8, quoted and escaped.
  CHECK(Param(R"(attachment; name="Kart over Bø"; filename="a \"b\".pdf")", "filename") ==
        R"(a "b".pdf)");
  CHECK(Param(R"(attachment; filename="æøå.pdf")", "filename") == "æøå.pdf");
  CHECK(Param("attachment; filename=plain.pdf ;", "filename") == "plain.pdf");
  CHECK(Param("attachment", "filename").empty());
}

TEST_CASE("Content-Disposition that is malformed is refused, naming why", "[ip][api][multipart]") {
  struct Bad {
    std::string header, phrase;
  } bad[] = {
      {R"(attachment; filename="open)", "quoted value is not closed"},
      {R"(attachment; filename="a"x)", "text after the quoted value"},
      {"attachment; filename=a; filename=b", "'filename' is given twice"},
      {"attachment; filename*=utf-8''a; filename*=utf-8''b", "'filename' is given twice"},
      {"attachment; filename*=a.pdf", "charset'language'value"},
      {"attachment; filename*=koi8-r''a.pdf", "charset 'koi8-r' is not read"},
      {"attachment; filename*=utf-8''%C3", "not valid in its charset"},
      {"attachment; filename*=utf-8''%G1", "bad %XX escape"},
      {"attachment; filename*=utf-8''a b", "must be %-encoded"},
      {"attachment; filename*=utf-8''a\x01b", "must be %-encoded"},
      {"attachment; filename*=utf-8''\xff", "not valid in its charset"},
      {"attachment; filename*=\"utf-8''a\"", "must not be quoted"},
      {R"(attachment; filename="=?utf-8?B?!!!?=")", "not valid base64"},
      {R"(attachment; filename="=?utf-8?Q?=Z1?=")", "bad =XX escape"},
      {R"(attachment; filename="=?koi8-r?B?w6Y=?=")", "charset 'koi8-r'"},
      {R"(attachment; filename="=?utf-8?B?/w==?=")", "is not valid utf-8"},
      {"attachment; filename=\"\xff\xfe.pdf\"", "not UTF-8"},
      {"attachment; filename=\"\xc3\xa6\xed\xa0\x80\"", "not UTF-8"},  // a surrogate
      {"attachment; filename=\"\xc0\xaf\"", "not UTF-8"},              // overlong '/'
      {"attachment; =x", "has no '=value'"},
      {"attachment; filename", "has no '=value'"},
      {"attach ment; filename=x", "is not a disposition"},
      {"attachment; filename=\"" + std::string(2000, 'a') + "\"", "longer than 1024 bytes"},
      {"attachment" + std::string(9000, ' '), "longer than 8192"},
  };
  for (const auto& b : bad) {
    CAPTURE(b.header.substr(0, 80));
    auto p = ParseHeaderParams(b.header);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().code() == Code::kInvalidArgument);
    CHECK_THAT(p.status().message(), Catch::Contains(b.phrase));
  }
  std::string many = "attachment";
  for (int i = 0; i < 40; ++i) many += fmt::format("; p{}=v", i);
  CHECK_THAT(ParseHeaderParams(many).status().message(), Catch::Contains("more than 32"));
}

const std::string kBoundary = "Xx-8d1f";
const std::string kCt = "multipart/form-data; boundary=" + kBoundary;

std::string Part(const std::string& disposition, const std::string& type, const std::string& data) {
  std::string p = "--" + kBoundary + "\r\nContent-Disposition: " + disposition + "\r\n";
  if (!type.empty()) p += "Content-Type: " + type + "\r\n";
  return p + "\r\n" + data + "\r\n";
}

TEST_CASE("multipart bodies as .NET, Java and curl send them", "[ip][api][multipart]") {
  // .NET MultipartFormDataContent: unquoted names, RFC 2047 and RFC 5987 file names, a quoted
  // boundary in the Content-Type.
  const std::string binary = std::string("%PDF\0\r\n--Xx-8d1fX not a boundary\r\n", 34) + "\n--";
  std::string body =
      Part("form-data; name=sbd", "application/json; charset=utf-8", R"({"a":1})") +
      Part(
          "form-data; name=Hoveddokument; filename=\"=?utf-8?B?dmVkdGFrIMOmw7jDpS5wZGY=?=\"; "
          "filename*=utf-8''vedtak%20%C3%A6%C3%B8%C3%A5.pdf",
          "application/pdf", binary) +
      Part("form-data; name=\"Vedlegg\"; filename=\"vedlegg.txt\"", "", "") + "--" + kBoundary +
      "--\r\nepilogue";
  auto parts = ParseMultipart("multipart/form-data; boundary=\"" + kBoundary + "\"", body);
  INFO((parts.ok() ? "" : parts.status().message()));
  REQUIRE(parts.ok());
  REQUIRE(parts->size() == 3);
  CHECK((*parts)[0].name == "sbd");
  CHECK((*parts)[0].filename.empty());
  CHECK((*parts)[0].content_type == "application/json; charset=utf-8");
  CHECK((*parts)[0].data == R"({"a":1})");
  CHECK((*parts)[1].name == "Hoveddokument");
  CHECK((*parts)[1].filename == "vedtak æøå.pdf");
  CHECK((*parts)[1].data == binary);
  CHECK((*parts)[2].filename == "vedlegg.txt");
  CHECK((*parts)[2].data.empty());
  // A preamble, bare LF line ends, padding after a boundary.
  std::string lf = "preamble\n--" + kBoundary +
                   "  \nContent-Disposition: form-data; name=sbd\n\n{}\n--" + kBoundary + "--";
  auto lf_parts = ParseMultipart(kCt, lf);
  REQUIRE(lf_parts.ok());
  REQUIRE(lf_parts->size() == 1);
  CHECK((*lf_parts)[0].data == "{}");
}

TEST_CASE("multipart bodies that are malformed are refused, naming why", "[ip][api][multipart]") {
  const std::string end = "--" + kBoundary + "--\r\n";
  struct Bad {
    std::string content_type, body, phrase;
  } bad[] = {
      {"application/json", "{}", "is not multipart/form-data"},
      {"multipart/form-data", "x", "needs a boundary"},
      {"multipart/form-data; boundary=" + std::string(71, 'b'), "x", "needs a boundary"},
      {kCt, "no boundary here", "has no boundary line"},
      {kCt, end, "has no parts"},
      {kCt, Part("form-data; name=sbd", "", "{}"), "without its closing boundary"},
      {kCt, Part("form-data", "", "{}") + end, "with a name"},
      {kCt, Part("attachment; name=sbd", "", "{}") + end, "must be form-data"},
      {kCt, Part("form-data; name=\"sbd", "", "{}") + end, "quoted value is not closed"},
      {kCt, "--" + kBoundary + "\r\nno colon\r\n\r\n{}\r\n" + end, "is not a header line"},
      {kCt, "--" + kBoundary + "x\r\n", "followed by text"},
      {kCt,
       "--" + kBoundary +
           "\r\nContent-Disposition: form-data; name=a\r\nContent-Disposition: "
           "form-data; name=b\r\n\r\n\r\n" +
           end,
       "two Content-Disposition headers"},
      {kCt, "--" + kBoundary + "\r\nX: " + std::string(20000, 'h') + "\r\n\r\n" + end,
       "do not end within 16384 bytes"},
  };
  for (const auto& b : bad) {
    CAPTURE(b.content_type, b.body.substr(0, 120));
    auto p = ParseMultipart(b.content_type, b.body);
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().code() == Code::kInvalidArgument);
    CHECK_THAT(p.status().message(), Catch::Contains(b.phrase));
  }
  std::string many;
  for (int i = 0; i < 5; ++i) many += Part(fmt::format("form-data; name=p{}", i), "", "x");
  MultipartLimits limits;
  limits.max_parts = 4;
  CHECK_THAT(ParseMultipart(kCt, many + end, limits).status().message(),
             Catch::Contains("more than 4 parts"));
  std::string headers = "--" + kBoundary + "\r\n";
  for (int i = 0; i < 20; ++i) headers += fmt::format("X-{}: y\r\n", i);
  CHECK_THAT(ParseMultipart(kCt, headers + "\r\n\r\n" + end).status().message(),
             Catch::Contains("more than 16 headers"));
}

struct Served : ApiFixture {
  std::unique_ptr<HttpServer> server;
  std::unique_ptr<httplib::Client> client;
  Served() {
    server = Serve();
    client = std::make_unique<httplib::Client>("http://" + server->address());
  }
  // The names of the attachments of our outgoing message `id`.
  std::vector<std::string> Names(const std::string& id) {
    auto row = store->Run([&](PointStore& s) { return s.outgoing.Get(id); });
    REQUIRE(row.ok());
    REQUIRE(*row);
    wire::Payload p;
    REQUIRE(p.ParseFromString((*row)->payload));
    std::vector<std::string> names;
    for (const auto& a : p.attachments()) names.push_back(a.name());
    return names;
  }
};

TEST_CASE("a .NET-shaped multipart POST and RFC 5987 / 2047 PUTs over HTTP",
          "[ip][api][multipart]") {
  Served s;
  const std::string id = "b0000000-0000-4000-8000-0000000000c1";
  json sbd = ExampleSbd(id);
  sbd["arkivmelding"]["hoveddokument"] = "vedtak æøå.pdf";
  const std::string body =
      Part("form-data; name=sbd", "application/json; charset=utf-8", sbd.dump()) +
      Part("form-data; name=Hoveddokument; filename=\"=?utf-8?B?dmVkdGFrIMOmw7jDpS5wZGY=?=\"",
           "application/pdf", "%PDF-1.7") +
      Part("form-data; name=Vedlegg; filename*=utf-8''bl%C3%A5b%C3%A6r.txt", "text/plain",
           "vedlegg") +
      "--" + kBoundary + "--\r\n";
  auto r = s.client->Post("/api/messages/out/multipart", body, kCt.c_str());
  REQUIRE(r);
  INFO(r->body);
  CHECK(r->status == 200);
  CHECK(s.OutStatus(id) == "OPPRETTET");
  CHECK(s.Names(id) == std::vector<std::string>{"vedtak æøå.pdf", "blåbær.txt"});

  // The same id again: eFormidling's 400 with its exception.
  auto again = s.client->Post("/api/messages/out/multipart", body, kCt.c_str());
  REQUIRE(again);
  CHECK(again->status == 400);
  CHECK(json::parse(again->body)["exception"] ==
        "no.difi.meldingsutveksling.exceptions.MessageAlreadyExistsException");
  // A malformed body: 400 naming why.
  auto broken = s.client->Post("/api/messages/out/multipart", body.substr(0, 200), kCt.c_str());
  REQUIRE(broken);
  CHECK(broken->status == 400);
  CHECK_THAT(json::parse(broken->body)["message"].get<std::string>(),
             Catch::Contains("closing boundary"));
  // A file over the attachment limit: 400 as eFormidling answers it.
  const std::string big_id = "b0000000-0000-4000-8000-0000000000c2";
  json big_sbd = ExampleSbd(big_id);
  const std::string big = Part("form-data; name=sbd", "", big_sbd.dump()) +
                          Part("form-data; name=x; filename=test.pdf", "", std::string(600, 'x')) +
                          "--" + kBoundary + "--\r\n";
  auto too_big = s.client->Post("/api/messages/out/multipart", big, kCt.c_str());
  REQUIRE(too_big);
  CHECK(too_big->status == 400);
  CHECK(json::parse(too_big->body)["exception"] ==
        "no.difi.meldingsutveksling.exceptions.MultipartFileToLargeException");

  // PUT with filename* (and a fallback), then with an RFC 2047 name; a broken header is a 400.
  const std::string draft = "b0000000-0000-4000-8000-0000000000c3";
  json draft_sbd = ExampleSbd(draft);
  draft_sbd["arkivmelding"]["hoveddokument"] = "kåta.pdf";
  REQUIRE(s.client->Post("/api/messages/out", draft_sbd.dump(), "application/json")->status == 200);
  httplib::Headers ext = {{"Content-Disposition",
                           "attachment; name=Hoved; filename=\"k_ta.pdf\"; "
                           "filename*=UTF-8''k%C3%A5ta.pdf"}};
  auto put = s.client->Put(("/api/messages/out/" + draft).c_str(), ext, "%PDF", "application/pdf");
  REQUIRE(put);
  INFO(put->body);
  CHECK(put->status == 200);
  httplib::Headers words = {
      {"Content-Disposition", "attachment; name=V; filename=\"=?utf-8?Q?bl=C3=A5.txt?=\""}};
  auto put2 = s.client->Put(("/api/messages/out/" + draft).c_str(), words, "x", "text/plain");
  REQUIRE(put2);
  CHECK(put2->status == 200);
  auto files = s.store->Run([&](PointStore& st) { return st.outgoing.DraftFiles(draft); });
  REQUIRE(files.ok());
  std::vector<std::string> names;
  for (const auto& f : *files) names.push_back(f.name);
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"blå.txt", "kåta.pdf"});
  httplib::Headers broken_header = {{"Content-Disposition", "attachment; filename=\"open"}};
  auto put3 =
      s.client->Put(("/api/messages/out/" + draft).c_str(), broken_header, "x", "text/plain");
  REQUIRE(put3);
  CHECK(put3->status == 400);
  CHECK_THAT(json::parse(put3->body)["message"].get<std::string>(),
             Catch::Contains("Content-Disposition: parameter 'filename'"));
}

}  // namespace
}  // namespace bud::ip::api::test
