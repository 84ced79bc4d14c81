// The integration point's HTTP API treated as hostile (docs/security.md, "The HTTP API"): a web
// page in a browser on the same host must not use it (cross-origin requests, DNS rebinding),
// and no body, chunked or without a length, may make the point hold more than its limits. Each
// case runs against a real integration point over a raw socket, so the test controls every
// header and streams the body itself; each failed before the server checked Host and Origin
// and refused unbounded bodies.
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <string>

#include "common/clock.h"
#include "common/uuid.h"
#include "tests/integration/harness.h"

namespace bud::test {
namespace {

using nlohmann::json;

int PortOf(const std::string& base) { return std::stoi(base.substr(base.rfind(':') + 1)); }

// One HTTP/1.1 connection to 127.0.0.1:port. Every wait has a deadline.
class RawHttp {
 public:
  explicit RawHttp(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~RawHttp() { ::close(fd_); }
  RawHttp(const RawHttp&) = delete;
  RawHttp& operator=(const RawHttp&) = delete;

  // False once the peer has closed or reset the connection (or it stays full for 10 s).
  bool Send(std::string_view data) {
    while (!data.empty()) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, 10000) <= 0) return false;
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  bool Readable(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) > 0;
  }
  // Reads until the headers and Content-Length bytes of body are in, the peer closes, or the
  // deadline passes.
  std::string Response(Millis timeout = Millis(20000)) {
    std::string got;
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto end = got.find("\r\n\r\n");
      if (end != std::string::npos) {
        auto cl = Lower(got.substr(0, end)).find("content-length:");
        if (cl != std::string::npos) {
          size_t n = std::stoul(got.substr(cl + 15));
          if (got.size() >= end + 4 + n) return got;
        }
      }
      const auto left = std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !Readable(static_cast<int>(left.count()))) return got;
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return got;
      got.append(buf, static_cast<size_t>(n));
    }
  }

  static std::string Lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

 private:
  int fd_ = -1;
};

int StatusOf(const std::string& response) {
  if (!response.starts_with("HTTP/1.1 ") || response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

std::string BodyOf(const std::string& response) {
  auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

// One complete request on a fresh connection; the response.
std::string Exchange1(int port, const std::string& request) {
  RawHttp c(port);
  REQUIRE(c.Send(request));
  return c.Response();
}

std::string Request(const std::string& method, const std::string& path, int port,
                    const std::vector<std::string>& headers, const std::string& body = "",
                    const std::string& host = "") {
  std::string r = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", method, path,
                              host.empty() ? fmt::format("127.0.0.1:{}", port) : host);
  for (const auto& h : headers) r += h + "\r\n";
  if (method != "GET") r += fmt::format("Content-Length: {}\r\n", body.size());
  return r + "\r\n" + body;
}

std::string Sbd(const std::string& message_id) {
  json sbd = {
      {"standardBusinessDocumentHeader",
       {{"headerVersion", "1.0"},
        {"sender", {{{"identifier", {{"value", std::string("0192:") + kAgencyA},
                                     {"authority", "iso6523-actorid-upis"}}}}}},
        {"receiver", {{{"identifier", {{"value", std::string("0192:") + kAgencyB},
                                       {"authority", "iso6523-actorid-upis"}}}}}},
        {"documentIdentification",
         {{"standard", kDocumentType},
          {"typeVersion", "1.0"},
          {"instanceIdentifier", message_id},
          {"type", "arkivmelding"}}},
        {"businessScope",
         {{"scope",
           {{{"type", "ConversationId"},
             {"instanceIdentifier", NewUuid()},
             {"identifier", kProcess},
             {"scopeInformation",
              {{{"expectedResponseDateTime",
                 FormatTime(NowMs() + 7LL * 24 * 3600 * 1000)}}}}}}}}}}},
      {"arkivmelding", {{"hoveddokument", "test.pdf"}, {"sikkerhetsnivaa", 3}}}};
  return sbd.dump();
}

// VmHWM or VmRSS of a process, in bytes.
int64_t ProcBytes(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(key + ":")) return std::stoll(line.substr(key.size() + 1)) * 1024;
  }
  return -1;
}

ExchangeOptions WithHttp() {
  ExchangeOptions o;
  o.http = true;
  return o;
}

TEST_CASE("a cross-origin request and a foreign Host are refused; the API's own still work",
          "[integration][http][hostile]") {
  Exchange ex(WithHttp());
  const int port = PortOf(ex.HttpBase(kAgencyA));
  const std::string id = NewUuid();

  // A form on another site posting text/plain (a "simple" request: no preflight).
  const std::string csrf = Exchange1(
      port, Request("POST", "/api/messages/out", port,
                    {"Origin: https://evil.example", "Content-Type: text/plain",
                     "Sec-Fetch-Site: cross-site"},
                    Sbd(id)));
  INFO(csrf);
  CHECK(StatusOf(csrf) == 403);
  CHECK_THAT(BodyOf(csrf), Catch::Contains("cross-origin request from 'https://evil.example'"));
  // Another port on the same host is another origin; an older browser sends no Sec-Fetch-Site.
  const std::string other_port = Exchange1(
      port, Request("POST", "/api/messages/out", port, {"Origin: http://127.0.0.1:1",
                                                         "Content-Type: text/plain"},
                    Sbd(id)));
  CHECK(StatusOf(other_port) == 403);
  // An <img> on another site: a GET with no Origin, but the browser says where it comes from.
  const std::string img = Exchange1(
      port, Request("GET", "/api/messages/in/peek", port, {"Sec-Fetch-Site: cross-site"}));
  CHECK(StatusOf(img) == 403);

  // DNS rebinding: the page's own name, now resolving to 127.0.0.1, arrives as Host.
  for (const std::string& host :
       {fmt::format("rebound.evil.example:{}", port), fmt::format("127.0.0.1.evil.example:{}", port)}) {
    INFO(host);
    const std::string rebound =
        Exchange1(port, Request("GET", "/api/statuses", port, {}, "", host));
    CHECK(StatusOf(rebound) == 403);
    CHECK_THAT(BodyOf(rebound), Catch::Contains("DNS rebinding"));
  }

  // Nothing was created by the refused POSTs: the same id is still free.
  const std::string own = Exchange1(
      port, Request("POST", "/api/messages/out", port,
                    {fmt::format("Origin: http://127.0.0.1:{}", port),
                     "Content-Type: application/json", "Sec-Fetch-Site: same-origin"},
                    Sbd(id)));
  INFO(own);
  CHECK(StatusOf(own) == 200);
  const std::string program = Exchange1(
      port, Request("GET", "/api/statuses", port, {}, "", fmt::format("localhost:{}", port)));
  CHECK(StatusOf(program) == 200);
}

TEST_CASE("a 300 MB chunked body is refused early and the point's memory stays bounded",
          "[integration][http][hostile]") {
  Exchange ex(WithHttp());
  const int port = PortOf(ex.HttpBase(kAgencyA));
  const pid_t pid = ex.ip(kAgencyA).pid();
  const int64_t hwm_before = ProcBytes(pid, "VmHWM");
  REQUIRE(hwm_before > 0);

  // Streamed from here 1 MiB at a time; the answer is looked for after every chunk.
  constexpr int64_t kTotal = 300LL << 20;
  const std::string chunk = fmt::format("{:x}\r\n", 1 << 20) + std::string(1 << 20, '[') + "\r\n";
  RawHttp c(port);
  REQUIRE(c.Send(fmt::format("POST /api/messages/out HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n"
                             "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                             port)));
  int64_t sent = 0;
  bool answered = false;
  while (sent < kTotal) {
    if (c.Readable(0)) {
      answered = true;
      break;
    }
    if (!c.Send(chunk)) break;  // closed by the point
    sent += 1 << 20;
  }
  if (sent >= kTotal) (void)c.Send("0\r\n\r\n");
  const std::string response = c.Response();
  INFO("sent " << sent << " bytes; answer: " << response);
  CHECK(StatusOf(response) == 411);
  CHECK_THAT(BodyOf(response), Catch::Contains("Content-Length"));
  CHECK(sent < (32LL << 20));
  (void)answered;

  // The same without any length: read until the connection closes, in the old code.
  RawHttp d(port);
  REQUIRE(d.Send(fmt::format("POST /api/messages/out HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n"
                             "Content-Type: text/plain\r\n\r\n[[[[",
                             port)));
  const std::string lengthless = d.Response();
  INFO(lengthless);
  CHECK(StatusOf(lengthless) == 411);

  const int64_t hwm_after = ProcBytes(pid, "VmHWM");
  INFO("VmHWM " << hwm_before << " -> " << hwm_after << ", VmRSS " << ProcBytes(pid, "VmRSS"));
  CHECK(hwm_after - hwm_before < (48LL << 20));
  CHECK(ex.ip(kAgencyA).Running());
}

TEST_CASE("a text/plain POST of deeply nested JSON gets 400 and the point lives",
          "[integration][http][hostile]") {
  Exchange ex(WithHttp());
  const int port = PortOf(ex.HttpBase(kAgencyA));
  // A valid SBD whose business message holds 100,000 nested arrays: the old code parsed it,
  // then overflowed its stack copying and dumping it.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  std::string nested = Sbd(NewUuid());
  nested.insert(nested.rfind('}'), ",\"vedlegg\":" + deep);
  for (const std::string& body : {nested, deep}) {
    const std::string r = Exchange1(
        port, Request("POST", "/api/messages/out", port, {"Content-Type: text/plain"}, body));
    INFO(r.substr(0, 500));
    CHECK(StatusOf(r) == 400);
    CHECK_THAT(BodyOf(r), Catch::Contains("deep"));
  }
  // Multipart: the same SBD as the part 'sbd'.
  const std::string boundary = "grense";
  const std::string multipart =
      "--" + boundary + "\r\nContent-Disposition: form-data; name=\"sbd\"\r\n"
      "Content-Type: application/json\r\n\r\n" + nested + "\r\n--" + boundary + "--\r\n";
  const std::string m = Exchange1(
      port, Request("POST", "/api/messages/out/multipart", port,
                    {"Content-Type: multipart/form-data; boundary=" + boundary}, multipart));
  CHECK(StatusOf(m) == 400);
  ex.CheckAlive();
  CHECK(ex.ip(kAgencyA).Running());
  const std::string health = Exchange1(port, Request("GET", "/healthz", port, {}));
  CHECK(StatusOf(health) == 200);
}

}  // namespace
}  // namespace bud::test
