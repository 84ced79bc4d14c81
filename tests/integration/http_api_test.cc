// The integration point's HTTP API (Next Move paths), end to end: real processes, real sockets,
// curl and cpp-httplib's client as archive systems, libzip reading what pop returns.
#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/uuid.h"
#include "tests/integration/harness.h"
#include "tests/support/zip_read.h"

namespace bud::test {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

std::string Join(const Strings& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : " ") + p;
  return out;
}

// eFormidling's documented arkivmelding SBD (the example of the Next Move API documentation),
// with our test agencies as parties.
std::string ExampleSbd(const std::string& sender, const std::string& receiver,
                       const std::string& message_id, const std::string& conversation_id) {
  return json::parse(fmt::format(R"({{
  "standardBusinessDocumentHeader": {{
    "headerVersion": "1.0",
    "sender": [{{"identifier": {{"value": "0192:{}", "authority": "iso6523-actorid-upis"}}}}],
    "receiver": [{{"identifier": {{"value": "0192:{}", "authority": "iso6523-actorid-upis"}}}}],
    "documentIdentification": {{
      "standard": "urn:no:difi:arkivmelding:xsd::arkivmelding",
      "typeVersion": "1.0",
      "instanceIdentifier": "{}",
      "type": "arkivmelding"
    }},
    "businessScope": {{"scope": [{{
      "type": "ConversationId",
      "instanceIdentifier": "{}",
      "identifier": "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0",
      "scopeInformation": [{{"expectedResponseDateTime": "{}"}}]
    }}]}}
  }},
  "arkivmelding": {{"hoveddokument": "test.pdf", "sikkerhetsnivaa": 3}}
}})",
                                 sender, receiver, message_id, conversation_id,
                                 // Within the 90 days a message may live.
                                 FormatTime(NowMs() + 30LL * 24 * 3600 * 1000)))
      .dump(2);
}

struct Reply {
  int status = 0;
  std::string body;
  json Json() const { return json::parse(body); }
};

// curl as an archive system would run it: -w prints the HTTP status after the body.
Reply Curl(const Strings& args, const std::string& out_file = "") {
  Strings argv = {"/usr/bin/curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}"};
  if (!out_file.empty()) {
    argv.push_back("-o");
    argv.push_back(out_file);
  }
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv, Millis(30000));
  INFO("curl " << Join(args) << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  auto nl = r.out.rfind('\n');
  REQUIRE(nl != std::string::npos);
  return {std::stoi(r.out.substr(nl + 1)), r.out.substr(0, nl)};
}

httplib::Client Client(const std::string& base) {
  httplib::Client c(base);
  c.set_connection_timeout(5);
  c.set_read_timeout(20);
  c.set_write_timeout(20);
  return c;
}

Reply Get(const std::string& base, const std::string& path) {
  auto c = Client(base);
  auto r = c.Get(path.c_str());
  REQUIRE(r);
  return {r->status, r->body};
}

Reply Send(const std::string& base, const std::string& method, const std::string& path,
           const std::string& body = "", const std::string& type = "application/json",
           const httplib::Headers& headers = {}) {
  auto c = Client(base);
  httplib::Result r = method == "POST"     ? c.Post(path.c_str(), headers, body, type.c_str())
                      : method == "PUT"    ? c.Put(path.c_str(), headers, body, type.c_str())
                      : method == "DELETE" ? c.Delete(path.c_str(), headers)
                                           : c.Get(path.c_str(), headers);
  REQUIRE(r);
  return {r->status, r->body};
}

Strings StatusNames(const json& page) {
  Strings out;
  for (const auto& s : page.at("content")) out.push_back(s.at("status"));
  return out;
}

// Waits until GET path answers 200 and returns the body.
json WaitFor200(const std::string& base, const std::string& path, Millis timeout = kDefaultWait) {
  json body;
  WaitUntil(
      "GET " + path + " to answer 200", timeout,
      [&] {
        Reply r = Get(base, path);
        if (r.status != 200) return false;
        body = r.Json();
        return true;
      },
      {}, Millis(100));
  return body;
}

// Waits until the message's statuses (GET /api/statuses/{id}) include `status`.
Strings WaitForApiStatus(const std::string& base, const std::string& id,
                         const std::string& status) {
  Strings names;
  WaitUntil(
      "status " + status + " of " + id + " in " + base, kDefaultWait,
      [&] {
        Reply r = Get(base, "/api/statuses/" + id);
        if (r.status != 200) return false;
        names = StatusNames(r.Json());
        return std::find(names.begin(), names.end(), status) != names.end();
      },
      [&] { return "statuses so far: " + Join(names); }, Millis(100));
  return names;
}

// The entries of a zip (name -> bytes); an ASiC-E has `mimetype` first.
std::map<std::string, std::string> Unzip(const std::string& bytes) {
  auto entries = ZipEntriesInOrder(bytes);
  REQUIRE(!entries.empty());
  CHECK(entries.front().first == "mimetype");  // ASiC: first entry, stored
  return {entries.begin(), entries.end()};
}

ExchangeOptions ApiExchange() {
  ExchangeOptions o;
  o.http = true;
  // A sends through the API and keeps the folder; B waits for the API with incoming messages.
  o.agency_settings[kAgencyB] = {{"incoming.delivery", "\"api\""}};
  return o;
}

TEST_CASE("curl: multipart SBD out, peek, pop and delete in; the sender sees LEVERT",
          "[integration][http]") {
  Exchange ex(ApiExchange());
  const std::string a = ex.HttpBase(kAgencyA), b = ex.HttpBase(kAgencyB);
  const std::string id = NewUuid(), conversation = NewUuid();
  const std::string dir = ex.root();
  WriteFile(dir + "/sbd.json", ExampleSbd(kAgencyA, kAgencyB, id, conversation));
  const std::string pdf = "%PDF-1.7\n" + SeededBytes(150000, 7) + "\n%%EOF\n";
  WriteFile(dir + "/test.pdf", pdf);
  WriteFile(dir + "/vedlegg æøå.txt", "Vedlegg i sak 2026/17\n");

  // Capabilities of the receiver, as a client checks before sending.
  Reply caps = Curl({a + "/api/capabilities/0192:" + std::string(kAgencyB)});
  REQUIRE(caps.status == 200);
  INFO(caps.body);
  CHECK(caps.Json().at("capabilities").at(0).at("process") == kProcess);
  CHECK(caps.Json()["capabilities"][0]["documentTypes"][0]["type"] == "arkivmelding");

  Reply sent = Curl({"-F", "sbd=@" + dir + "/sbd.json;type=application/json", "-F",
                     "hoveddokument=@" + dir + "/test.pdf;type=application/pdf", "-F",
                     "vedlegg=@" + dir + "/vedlegg æøå.txt;type=text/plain",
                     a + "/api/messages/out/multipart"});
  INFO(sent.body);
  REQUIRE(sent.status == 200);
  json echoed = sent.Json();
  CHECK(echoed["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"] ==
        id);
  CHECK(echoed["standardBusinessDocumentHeader"]["documentIdentification"].contains(
      "creationDateAndTime"));

  // The receiver's archive system polls: peek locks and returns the SBD.
  json sbd;
  WaitUntil(
      "the message to be peekable at B", kDefaultWait,
      [&] {
        Reply r = Curl({b + "/api/messages/in/peek"});
        if (r.status == 204) return false;
        REQUIRE(r.status == 200);
        sbd = r.Json();
        return true;
      },
      {}, Millis(200));
  const json& header = sbd["standardBusinessDocumentHeader"];
  CHECK(header["documentIdentification"]["instanceIdentifier"] == id);
  CHECK(header["sender"][0]["identifier"]["value"] == "0192:" + std::string(kAgencyA));
  CHECK(header["businessScope"]["scope"][0]["instanceIdentifier"] == conversation);
  CHECK(sbd["arkivmelding"]["hoveddokument"] == "test.pdf");
  // Locked: a second peek gets nothing.
  CHECK(Curl({b + "/api/messages/in/peek"}).status == 204);

  Reply pop = Curl({b + "/api/messages/in/pop/" + id}, dir + "/popped.asice");
  REQUIRE(pop.status == 200);
  auto entries = Unzip(ReadFile(dir + "/popped.asice"));
  CHECK(entries["mimetype"] == "application/vnd.etsi.asic-e+zip");
  CHECK(entries["test.pdf"] == pdf);
  CHECK(entries["vedlegg æøå.txt"] == "Vedlegg i sak 2026/17\n");
  CHECK(entries["META-INF/manifest.xml"].find("application/pdf") != std::string::npos);
  // eFormidling's ASiC-E: the root manifest names the main document, and the receiving point's
  // CAdES signature over the ASiCManifest verifies with openssl against the exchange's CA.
  CHECK(entries["manifest.xml"].find("<hoveddokument href=\"test.pdf\"") != std::string::npos);
  REQUIRE(entries.count("META-INF/signature.p7s") == 1);
  WriteFile(dir + "/signature.p7s", entries["META-INF/signature.p7s"]);
  WriteFile(dir + "/ASiCManifest.xml", entries["META-INF/ASiCManifest.xml"]);
  CommandResult verified =
      RunCommand({"/usr/bin/openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                  dir + "/signature.p7s", "-content", dir + "/ASiCManifest.xml", "-CAfile",
                  dir + "/ca/ca.pem", "-purpose", "any", "-out", "/dev/null"});
  INFO(verified.err);
  CHECK(verified.exit_code == 0);

  Reply del = Curl({"-X", "DELETE", b + "/api/messages/in/" + id});
  CHECK(del.status == 200);
  CHECK(Curl({b + "/api/messages/in/peek"}).status == 204);

  Strings history = WaitForApiStatus(a, id, "LEVERT");
  CHECK(history == Strings{"OPPRETTET", "SENDT", "MOTTATT", "LEVERT"});
  Reply one = Curl({a + "/api/statuses/" + id});
  REQUIRE(one.status == 200);
  const json last = one.Json()["content"].back();
  CHECK(last["status"] == "LEVERT");
  CHECK(last["messageId"] == id);
  CHECK(last["conversationId"] == conversation);
  CHECK(StatusNames(Get(b, "/api/statuses/" + id).Json()) ==
        Strings{"INNKOMMENDE_MOTTATT", "INNKOMMENDE_LEVERT"});

  // One store: the CLI view shows the API's message with the same history.
  auto entry = Exchange::Find(ex.Status(kAgencyA), id);
  REQUIRE(entry.size() == 1);
  CHECK(Exchange::History(entry[0]) == history);
  // Nothing was written to B's inbox folder: it waits for the API.
  CHECK(!std::filesystem::exists(ex.Inbox(kAgencyB) + "/" + id));
}

TEST_CASE("a peeked message that is never popped can be peeked again after the lease",
          "[integration][http]") {
  ExchangeOptions o = ApiExchange();
  o.agency_settings[kAgencyB]["http.peek_lock_ms"] = "1500";
  Exchange ex(o);
  const std::string a = ex.HttpBase(kAgencyA), b = ex.HttpBase(kAgencyB);
  const std::string id = NewUuid();
  ex.DropFolder(kAgencyA, "lease",
                [&] {
                  auto m = Exchange::Metadata(kAgencyB);
                  m["messageId"] = id;
                  return m.dump();
                }(),
                {{"doc.txt", "lease test"}});

  json first = WaitFor200(b, "/api/messages/in/peek");
  CHECK(first["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"] ==
        id);
  CHECK(Get(b, "/api/messages/in/peek").status == 204);
  std::this_thread::sleep_for(Millis(1700));
  // The lock ran out: pop and delete are refused, and the message is peekable again.
  // eFormidling answers 400 (MessageNotLockedException).
  Reply pop = Get(b, "/api/messages/in/pop/" + id);
  CHECK(pop.status == 400);
  CHECK(pop.Json()["message"].get<std::string>().find("not locked") != std::string::npos);
  CHECK(pop.Json()["exception"] ==
        "no.difi.meldingsutveksling.exceptions.MessageNotLockedException");
  CHECK(Send(b, "DELETE", "/api/messages/in/" + id).status == 400);
  json again = WaitFor200(b, "/api/messages/in/peek", Millis(5000));
  CHECK(again["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"] ==
        id);
  CHECK(Get(b, "/api/messages/in/pop/" + id).status == 200);
  CHECK(Send(b, "DELETE", "/api/messages/in/" + id).status == 200);
  WaitForApiStatus(a, id, "LEVERT");
  // Deleted once; a second delete says so.
  Reply twice = Send(b, "DELETE", "/api/messages/in/" + id);
  CHECK(twice.status == 404);
  CHECK(twice.Json()["message"].get<std::string>().find("already deleted") != std::string::npos);
}

TEST_CASE("the large-message flow: create, upload each attachment, send", "[integration][http]") {
  ExchangeOptions o;
  o.http = true;  // B writes to its inbox folder
  Exchange ex(o);
  const std::string a = ex.HttpBase(kAgencyA);
  const std::string id = NewUuid();
  json sbd = json::parse(ExampleSbd(kAgencyA, kAgencyB, id, NewUuid()));
  sbd["arkivmelding"]["hoveddokument"] = "plan.pdf";

  Reply created = Send(a, "POST", "/api/messages/out", sbd.dump());
  INFO(created.body);
  REQUIRE(created.status == 200);
  CHECK(created.Json()["standardBusinessDocumentHeader"]["documentIdentification"].contains(
      "creationDateAndTime"));
  // Created but not sent: no status yet, visible as an outgoing message.
  CHECK(Get(a, "/api/statuses/" + id).Json()["totalElements"] == 0);
  CHECK(Get(a, "/api/messages/out/" + id).status == 200);
  // Creating the same id again: eFormidling's 400 MessageAlreadyExistsException.
  CHECK(Send(a, "POST", "/api/messages/out", sbd.dump()).status == 400);

  const std::string plan = SeededBytes(2 * 1024 * 1024, 3);
  const std::string annex = "annex æøå\n";
  Reply up1 = Send(a, "PUT", "/api/messages/out/" + id, plan, "application/pdf",
                   {{"Content-Disposition", "attachment; name=\"Plan\"; filename=\"plan.pdf\""}});
  CHECK(up1.status == 200);
  Reply up2 = Send(a, "PUT", "/api/messages/out/" + id, annex, "text/plain",
                   {{"Content-Disposition", "attachment; name=Vedlegg; filename=\"annex.txt\""}});
  CHECK(up2.status == 200);
  // Bad uploads say what is wrong.
  Reply no_name = Send(a, "PUT", "/api/messages/out/" + id, "x", "text/plain");
  CHECK(no_name.status == 400);
  CHECK(no_name.Json()["message"].get<std::string>().find("Content-Disposition") !=
        std::string::npos);
  Reply bad_name = Send(a, "PUT", "/api/messages/out/" + id, "x", "text/plain",
                        {{"Content-Disposition", "attachment; filename=\"../escape.txt\""}});
  CHECK(bad_name.status == 400);
  CHECK(Send(a, "PUT", "/api/messages/out/" + NewUuid(), "x", "text/plain",
             {{"Content-Disposition", "attachment; filename=\"a.txt\""}})
            .status == 404);

  Reply sent = Send(a, "POST", "/api/messages/out/" + id);
  INFO(sent.body);
  REQUIRE(sent.status == 200);
  json mj = ex.WaitForInbox(kAgencyB, id);
  CHECK(ReadFile(ex.Inbox(kAgencyB) + "/" + id + "/plan.pdf") == plan);
  CHECK(ReadFile(ex.Inbox(kAgencyB) + "/" + id + "/annex.txt") == annex);
  // The receiver's message.json carries the sender's SBD as its metadata.
  CHECK(mj["senderMetadata"]["arkivmelding"]["hoveddokument"] == "plan.pdf");
  WaitForApiStatus(a, id, "MOTTATT");
  // Sent: gone from /api/messages/out (DELETE removes nothing and answers 200, as eFormidling),
  // and not sent again.
  CHECK(Send(a, "GET", "/api/messages/out/" + id).status == 404);
  CHECK(Send(a, "DELETE", "/api/messages/out/" + id).status == 200);
  CHECK(Send(a, "POST", "/api/messages/out/" + id).status == 404);

  // An unsent draft can be deleted.
  const std::string other = NewUuid();
  json sbd2 = json::parse(ExampleSbd(kAgencyA, kAgencyB, other, NewUuid()));
  REQUIRE(Send(a, "POST", "/api/messages/out", sbd2.dump()).status == 200);
  CHECK(Send(a, "DELETE", "/api/messages/out/" + other).status == 200);
  CHECK(Get(a, "/api/messages/out/" + other).status == 404);
}

// Lists a directory's entries ("" entries when it does not exist).
Strings DirEntries(const std::string& dir) {
  Strings out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST_CASE(
    "uploads over outbox.max_message_bytes get 413 and leave the draft as it was; pop of "
    "an unknown id is 404",
    "[integration][http]") {
  ExchangeOptions o = ApiExchange();
  o.agency_settings[kAgencyA] = {{"outbox.max_message_bytes", "4194304"},
                                 {"http.max_upload_bytes", "1048576"}};
  Exchange ex(o);
  const std::string a = ex.HttpBase(kAgencyA), b = ex.HttpBase(kAgencyB);
  const std::string id = NewUuid(), dir = ex.root();
  json sbd = json::parse(ExampleSbd(kAgencyA, kAgencyB, id, NewUuid()));
  REQUIRE(Send(a, "POST", "/api/messages/out", sbd.dump()).status == 200);
  WriteFile(dir + "/five.bin", SeededBytes(5 << 20, 11));
  WriteFile(dir + "/three.bin", SeededBytes(3 << 20, 12));
  WriteFile(dir + "/two.bin", SeededBytes(2 << 20, 13));
  const std::string url = a + "/api/messages/out/" + id;
  auto put = [&](const std::string& file, const Strings& extra = {}) {
    Strings args = {"-T", dir + "/" + file, "-H",
                    "Content-Disposition: attachment; filename=\"" + file + "\""};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(url);
    return Curl(args);
  };
  const std::string drafts = ex.AgencyDir(kAgencyA) + "/spool/drafts/" + id;

  // Announced too large (Content-Length): refused before the body is sent.
  Reply announced = put("five.bin");
  INFO(announced.body);
  CHECK(announced.status == 413);
  CHECK(announced.Json()["message"].get<std::string>().find("outbox.max_message_bytes") !=
        std::string::npos);
  // Chunked, so only counting tells: refused once the limit is passed, nothing kept.
  Reply chunked = put("five.bin", {"-H", "Transfer-Encoding: chunked"});
  INFO(chunked.body);
  CHECK(chunked.status == 413);
  CHECK(chunked.Json()["message"].get<std::string>().find("nothing of it was kept") !=
        std::string::npos);
  CHECK(DirEntries(drafts).empty());

  // 3 MiB fits; 2 MiB more would not (the limit is per message) and leaves the 3 MiB as it was.
  CHECK(put("three.bin").status == 200);
  Strings kept = DirEntries(drafts);
  CHECK(kept.size() == 1);
  Reply over = put("two.bin", {"-H", "Transfer-Encoding: chunked"});
  CHECK(over.status == 413);
  CHECK(DirEntries(drafts) == kept);
  // The same name again replaces the file (the old one goes after the commit).
  CHECK(put("three.bin").status == 200);
  CHECK(DirEntries(drafts).size() == 1);
  CHECK(DirEntries(drafts) != kept);
  CHECK(Get(a, "/api/messages/out/" + id).status == 200);

  // The one-shot multipart request stays bounded by http.max_upload_bytes.
  WriteFile(dir + "/sbd.json", sbd.dump());
  Reply multipart = Curl({"-F", "sbd=@" + dir + "/sbd.json;type=application/json", "-F",
                          "hoveddokument=@" + dir + "/two.bin", a + "/api/messages/out/multipart"});
  CHECK(multipart.status == 413);
  CHECK(multipart.Json()["message"].get<std::string>().find("http.max_upload_bytes") !=
        std::string::npos);

  // Deleting the draft removes its files.
  CHECK(Send(a, "DELETE", "/api/messages/out/" + id).status == 200);
  CHECK(!std::filesystem::exists(drafts));

  Reply unknown = Get(b, "/api/messages/in/pop/" + NewUuid());
  CHECK(unknown.status == 404);
  CHECK(unknown.Json()["message"].get<std::string>().find("no incoming message") !=
        std::string::npos);
}

TEST_CASE("a draft sent streamed survives a crash between placing its files and the commit",
          "[integration][http]") {
  ExchangeOptions o;
  o.http = true;  // B writes to its inbox folder
  // Above 512 KiB a draft goes streamed: the 1 MiB file below takes that way.
  o.agency_settings[kAgencyA] = {{"outbox.stream_threshold_bytes", "524288"}};
  Exchange ex(o);
  const std::string id = NewUuid(), dir = ex.root(), agency = ex.AgencyDir(kAgencyA);
  json sbd = json::parse(ExampleSbd(kAgencyA, kAgencyB, id, NewUuid()));
  REQUIRE(Send(ex.HttpBase(kAgencyA), "POST", "/api/messages/out", sbd.dump()).status == 200);
  const std::string pdf = SeededBytes(1 << 20, 21);
  REQUIRE(Send(ex.HttpBase(kAgencyA), "PUT", "/api/messages/out/" + id, pdf, "application/pdf",
               {{"Content-Disposition", "attachment; filename=\"test.pdf\""}})
              .status == 200);
  const std::string drafts = agency + "/spool/drafts/" + id;
  const Strings files = DirEntries(drafts);
  REQUIRE(files.size() == 1);

  // What a crash right after the rename into the spool leaves: spool/src/<id>/ linked to the
  // draft's file, the draft not yet sent; and the files of a draft that is gone.
  ex.ip(kAgencyA).Stop();
  const std::string src = agency + "/spool/src/" + id;
  std::filesystem::create_directories(src);
  std::filesystem::create_hard_link(drafts + "/" + files[0], src + "/test.pdf");
  const std::string orphan = agency + "/spool/drafts/" + NewUuid();
  std::filesystem::create_directories(orphan);
  WriteFile(orphan + "/f-x", "left by a send that committed");
  ex.StartIp(kAgencyA);
  const std::string a = ex.HttpBase(kAgencyA);
  // The staged folder is gone (not moved to the outbox as a large folder would be), the draft
  // and its file are as they were, the orphan is gone.
  CHECK(!std::filesystem::exists(src));
  CHECK(DirEntries(ex.Outbox(kAgencyA)).empty());
  CHECK(DirEntries(drafts) == files);
  CHECK(!std::filesystem::exists(orphan));
  CHECK(Get(a, "/api/messages/out/" + id).status == 200);

  Reply sent = Send(a, "POST", "/api/messages/out/" + id);
  INFO(sent.body);
  REQUIRE(sent.status == 200);
  ex.ip(kAgencyA).WaitForLog("message " + id + " sealed as a stream");
  json mj = ex.WaitForInbox(kAgencyB, id);
  CHECK(mj["streamed"] == true);
  CHECK(ReadFile(ex.Inbox(kAgencyB) + "/" + id + "/test.pdf") == pdf);
  CHECK(!std::filesystem::exists(drafts));
}

TEST_CASE("bad requests get a JSON error a developer can act on", "[integration][http]") {
  ExchangeOptions o = ApiExchange();
  Exchange ex(o);
  const std::string a = ex.HttpBase(kAgencyA);
  auto error_of = [&](const Reply& r) {
    INFO(r.body);
    json j = json::parse(r.body);
    CHECK(j["status"] == r.status);
    CHECK(j.contains("timestamp"));
    return j["message"].get<std::string>();
  };
  json sbd = json::parse(ExampleSbd(kAgencyA, kAgencyB, NewUuid(), NewUuid()));

  Reply not_json = Send(a, "POST", "/api/messages/out", "{not json");
  CHECK(not_json.status == 400);
  CHECK(error_of(not_json).find("not valid JSON") != std::string::npos);

  json no_receiver = sbd;
  no_receiver["standardBusinessDocumentHeader"].erase("receiver");
  Reply r1 = Send(a, "POST", "/api/messages/out", no_receiver.dump());
  CHECK(r1.status == 400);
  CHECK(error_of(r1).find("receiver[0].identifier.value' is missing") != std::string::npos);

  json bad_check = sbd;
  bad_check["standardBusinessDocumentHeader"]["receiver"][0]["identifier"]["value"] =
      "0192:910075919";
  Reply r2 = Send(a, "POST", "/api/messages/out", bad_check.dump());
  CHECK(r2.status == 400);
  CHECK(error_of(r2).find("check digit") != std::string::npos);

  json unknown = sbd;
  unknown["standardBusinessDocumentHeader"]["receiver"][0]["identifier"]["value"] =
      "0192:974760673";
  Reply r3 = Send(a, "POST", "/api/messages/out", unknown.dump());
  CHECK(r3.status == 400);
  CHECK(error_of(r3).find("not in the address registry") != std::string::npos);

  json wrong_process = sbd;
  wrong_process["standardBusinessDocumentHeader"]["businessScope"]["scope"][0]["identifier"] =
      "urn:no:difi:profile:avtalt:avtalt:ver1.0";
  Reply r4 = Send(a, "POST", "/api/messages/out", wrong_process.dump());
  CHECK(r4.status == 400);
  CHECK(error_of(r4).find("does not accept process") != std::string::npos);

  json wrong_type = sbd;
  wrong_type["standardBusinessDocumentHeader"]["documentIdentification"]["type"] = "innsynskrav";
  Reply r5 = Send(a, "POST", "/api/messages/out", wrong_type.dump());
  CHECK(r5.status == 400);
  CHECK(error_of(r5).find("names 'arkivmelding'") != std::string::npos);

  json past = sbd;
  past["standardBusinessDocumentHeader"]["businessScope"]["scope"][0]["scopeInformation"][0]
      ["expectedResponseDateTime"] = "2001-01-01T00:00:00Z";
  Reply r6 = Send(a, "POST", "/api/messages/out", past.dump());
  CHECK(r6.status == 400);
  CHECK(error_of(r6).find("in the past") != std::string::npos);

  json other_sender = sbd;
  other_sender["standardBusinessDocumentHeader"]["sender"][0]["identifier"]["value"] =
      "0192:" + std::string(kAgencyB);
  Reply r7 = Send(a, "POST", "/api/messages/out", other_sender.dump());
  CHECK(r7.status == 400);
  CHECK(error_of(r7).find("sends for") != std::string::npos);

  // Multipart without files, without sbd, and with the main document missing.
  httplib::MultipartFormDataItems only_sbd = {{"sbd", sbd.dump(), "", "application/json"}};
  auto c = Client(a);
  auto m1 = c.Post("/api/messages/out/multipart", only_sbd);
  REQUIRE(m1);
  CHECK(m1->status == 400);
  CHECK(error_of({m1->status, m1->body}).find("no attachments") != std::string::npos);
  httplib::MultipartFormDataItems no_sbd = {{"file", "x", "a.txt", "text/plain"}};
  auto m2 = c.Post("/api/messages/out/multipart", no_sbd);
  REQUIRE(m2);
  CHECK(m2->status == 400);
  CHECK(error_of({m2->status, m2->body}).find("no part named 'sbd'") != std::string::npos);
  httplib::MultipartFormDataItems wrong_main = {{"sbd", sbd.dump(), "", "application/json"},
                                                {"file", "x", "other.pdf", "application/pdf"}};
  auto m3 = c.Post("/api/messages/out/multipart", wrong_main);
  REQUIRE(m3);
  CHECK(m3->status == 400);
  CHECK(error_of({m3->status, m3->body}).find("hoveddokument names 'test.pdf'") !=
        std::string::npos);
  Reply not_multipart = Send(a, "POST", "/api/messages/out/multipart", sbd.dump());
  CHECK(not_multipart.status == 400);

  // The same message id twice: the second is a conflict, the first goes.
  httplib::MultipartFormDataItems ok = {{"sbd", sbd.dump(), "", "application/json"},
                                        {"file", "%PDF", "test.pdf", "application/pdf"}};
  auto first = c.Post("/api/messages/out/multipart", ok);
  REQUIRE(first);
  CHECK(first->status == 200);
  auto second = c.Post("/api/messages/out/multipart", ok);
  REQUIRE(second);
  CHECK(second->status == 400);
  CHECK(nlohmann::json::parse(second->body)["exception"] ==
        "no.difi.meldingsutveksling.exceptions.MessageAlreadyExistsException");
  // The same new id from 8 connections at once (handed to the engine in one turn or several):
  // exactly one is taken in.
  {
    nlohmann::json again = sbd;
    again["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"] =
        NewUuid();
    httplib::MultipartFormDataItems same = {{"sbd", again.dump(), "", "application/json"},
                                            {"file", "%PDF", "test.pdf", "application/pdf"}};
    std::vector<int> answers(8, 0);
    std::vector<std::thread> posters;
    for (size_t i = 0; i < answers.size(); ++i) {
      posters.emplace_back([&, i] {
        auto pc = Client(a);
        auto r = pc.Post("/api/messages/out/multipart", same);
        answers[i] = r ? r->status : -1;
      });
    }
    for (auto& t : posters) t.join();
    CHECK(std::count(answers.begin(), answers.end(), 200) == 1);
    CHECK(std::count(answers.begin(), answers.end(), 400) == 7);
  }

  // Queries and paths.
  Reply bad_status = Get(a, "/api/statuses?status=DONE");
  CHECK(bad_status.status == 400);
  CHECK(error_of(bad_status).find("'DONE' is not a known status") != std::string::npos);
  Reply bad_time = Get(a, "/api/statuses?fromDateTime=yesterday");
  CHECK(bad_time.status == 400);
  CHECK(error_of(bad_time).find("fromDateTime") != std::string::npos);
  // size=0 falls back to the default (Spring's pageable, as eFormidling's).
  Reply zero_size = Get(a, "/api/conversations?size=0");
  CHECK(zero_size.status == 200);
  CHECK(zero_size.Json()["size"] == 10);
  CHECK(Get(a, "/api/nothing").status == 404);
  CHECK(error_of(Get(a, "/api/nothing")).find("no such endpoint") != std::string::npos);
  CHECK(Get(a, "/api/conversations/messageId/" + NewUuid()).status == 404);
  CHECK(Get(a, "/api/messages/in/pop/" + NewUuid()).status == 404);
  CHECK(Send(a, "DELETE", "/api/messages/in/" + NewUuid()).status == 404);
  CHECK(Get(a, "/api/capabilities/12345").status == 400);
  // An unknown receiver: 404, as eFormidling.
  Reply none = Get(a, "/api/capabilities/974760673");
  CHECK(none.status == 404);
  CHECK(error_of(none).find("is not in the address registry") != std::string::npos);
  ex.CheckAlive();
}

TEST_CASE("statuses and conversations: filters, paging, both ways of sending in one view",
          "[integration][http]") {
  ExchangeOptions o;
  o.http = true;
  Exchange ex(o);
  const std::string a = ex.HttpBase(kAgencyA);
  // Two through the folder, one through the API, one refused.
  Strings ids;
  for (int i = 0; i < 2; ++i) {
    ids.push_back(NewUuid());
    auto m = Exchange::Metadata(kAgencyB);
    m["messageId"] = ids.back();
    m["title"] = "folder " + std::to_string(i);
    ex.DropFolder(kAgencyA, "f" + std::to_string(i), m.dump(), {{"a.txt", "x"}});
  }
  ids.push_back(NewUuid());
  json sbd = json::parse(ExampleSbd(kAgencyA, kAgencyB, ids.back(), NewUuid()));
  sbd["arkivmelding"]["tittel"] = "through the API";
  auto c = Client(a);
  auto posted =
      c.Post("/api/messages/out/multipart",
             httplib::MultipartFormDataItems{{"sbd", sbd.dump(), "", "application/json"},
                                             {"f", "%PDF", "test.pdf", "application/pdf"}});
  REQUIRE(posted);
  REQUIRE(posted->status == 200);
  for (const auto& id : ids) WaitForApiStatus(a, id, "MOTTATT");

  json all = Get(a, "/api/conversations?direction=OUTGOING").Json();
  CHECK(all["totalElements"] == 3);
  json api_one = Get(a, "/api/conversations/messageId/" + ids[2]).Json();
  CHECK(api_one["messageTitle"] == "through the API");
  CHECK(api_one["direction"] == "OUTGOING");
  CHECK(api_one["receiverIdentifier"] == "0192:" + std::string(kAgencyB));
  CHECK(api_one["finished"] == false);
  Strings hist;
  for (const auto& s : api_one["messageStatuses"]) hist.push_back(s["status"]);
  CHECK(hist == Strings{"OPPRETTET", "SENDT", "MOTTATT"});
  CHECK(Get(a, "/api/conversations/" + std::to_string(api_one["id"].get<int64_t>()))
            .Json()["messageId"] == ids[2]);
  // The folder's messages are in the API, the API's message in `bud-ip status`.
  CHECK(Get(a, "/api/conversations/messageId/" + ids[0]).Json()["messageTitle"] == "folder 0");
  CHECK(Exchange::Find(ex.Status(kAgencyA), ids[2]).size() == 1);

  // Paging: 3 messages x 3 statuses.
  json page0 = Get(a, "/api/statuses?size=4&page=0&direction=OUTGOING").Json();
  json page2 = Get(a, "/api/statuses?size=4&page=2&direction=OUTGOING").Json();
  CHECK(page0["totalElements"] == 9);
  CHECK(page0["totalPages"] == 3);
  CHECK(page0["content"].size() == 4);
  CHECK(page2["content"].size() == 1);
  CHECK(page2["last"] == true);
  CHECK(Get(a, "/api/statuses?status=SENDT").Json()["totalElements"] == 3);
  CHECK(Get(a, "/api/statuses?fromDateTime=2099-01-01T00:00:00Z").Json()["totalElements"] == 0);
  // The status queue's head: the oldest status not yet removed (FIFO, as Next Move's).
  json head = Get(a, "/api/statuses/peek").Json();
  CHECK(head["status"] == "OPPRETTET");
  CHECK((head["messageId"] == ids[0] || head["messageId"] == ids[1]));  // a folder's, taken first
  // Conversations by organisation and unfinished (MOTTATT is not final: all three queue).
  CHECK(Get(a, "/api/conversations?orgnr=" + std::string(kAgencyB)).Json()["totalElements"] == 3);
  CHECK(Get(a, "/api/conversations?orgnr=974760673").Json()["totalElements"] == 0);
  CHECK(Get(a, "/api/conversations/queue").Json()["totalElements"] == 3);
  CHECK(Get(a, "/api/conversations?status=LEVERT").Json()["totalElements"] == 0);
  // Outgoing messages not yet sent, as eFormidling's list: all three were sent.
  json out = Get(a, "/api/messages/out?size=10").Json();
  CHECK(out["totalElements"] == 0);
  CHECK(out.contains("pageable"));
}

TEST_CASE("with a token file the API answers only with the bearer token", "[integration][http]") {
  ExchangeOptions o;
  o.http = true;
  o.start_ips = false;
  Exchange ex(o);
  WriteFile(ex.AgencyDir(kAgencyA) + "/api.token", "s3cret-token-0123456789abcdef\n");
  std::string cfg = ReadFile(ex.IpConfig(kAgencyA));
  auto pos = cfg.find("[http]\n");
  REQUIRE(pos != std::string::npos);
  cfg.insert(pos + 7, "token_file = \"api.token\"\n");
  WriteFile(ex.IpConfig(kAgencyA), cfg);
  ex.StartIp(kAgencyA);
  ex.ip(kAgencyA).WaitForLog("bearer token required");
  const std::string a = ex.HttpBase(kAgencyA);

  Reply none = Get(a, "/api/statuses");
  CHECK(none.status == 401);
  CHECK(none.Json()["message"].get<std::string>().find("bearer token") != std::string::npos);
  CHECK(Send(a, "GET", "/api/statuses", "", "", {{"Authorization", "Bearer wrong"}}).status == 401);
  CHECK(Send(a, "GET", "/metrics", "", "", {{"Authorization", "Bearer wrong"}}).status == 401);
  CHECK(Send(a, "GET", "/api/statuses", "", "",
             {{"Authorization", "Bearer s3cret-token-0123456789abcdef"}})
            .status == 200);
  // The page itself and the health check need no token.
  CHECK(Get(a, "/").status == 200);
  CHECK(Get(a, "/healthz").status == 200);
}

TEST_CASE("with a basic auth file from `bud-ip http-user` the API asks for Basic",
          "[integration][http]") {
  ExchangeOptions o;
  o.http = true;
  o.start_ips = false;
  Exchange ex(o);
  const std::string file = ex.AgencyDir(kAgencyA) + "/api-user";
  // The verb reads the password from stdin; the harness gives it none: refused, nothing written.
  CommandResult empty = RunCommand({BUD_IP_BIN, "http-user", "--file", file, "--user", "arkiv"});
  CHECK(empty.exit_code == 1);
  CHECK(empty.err.find("the password is empty") != std::string::npos);
  CommandResult made = RunCommand({"/bin/sh", "-c",
                                   std::string("echo 'hemmelig æøå' | ") + BUD_IP_BIN +
                                       " http-user --cost 10 --user arkiv --file " + file});
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  std::string cfg = ReadFile(ex.IpConfig(kAgencyA));
  auto pos = cfg.find("[http]\n");
  REQUIRE(pos != std::string::npos);
  cfg.insert(pos + 7, "basic_auth_file = \"api-user\"\n");
  WriteFile(ex.IpConfig(kAgencyA), cfg);
  ex.StartIp(kAgencyA);
  ex.ip(kAgencyA).WaitForLog("Basic authentication required");
  const std::string a = ex.HttpBase(kAgencyA);
  // "arkiv:hemmelig æøå" in base64.
  const std::string right = "Basic YXJraXY6aGVtbWVsaWcgw6bDuMOl";
  CHECK(Send(a, "GET", "/api/statuses", "", "", {{"Authorization", right}}).status == 200);
  CHECK(Send(a, "GET", "/api/statuses", "", "", {{"Authorization", "Basic YXJraXY6ZmVpbA=="}})
            .status == 401);
  Reply none = Get(a, "/api/statuses");
  CHECK(none.status == 401);
  CHECK(none.Json()["exception"] ==
        "org.springframework.security.authentication.BadCredentialsException");
  Reply health = Get(a, "/manage/health");
  CHECK(health.status == 200);
  CHECK(health.Json()["status"] == "UP");
}

TEST_CASE("with tls_cert and tls_key the API speaks HTTPS only", "[integration][http]") {
  ExchangeOptions o;
  o.http = true;
  o.start_ips = false;
  Exchange ex(o);
  const std::string dir = ex.AgencyDir(kAgencyA);
  CommandResult made = RunCommand(
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", dir + "/tls.key", "-out", dir + "/tls.pem", "-days", "2", "-subj",
       "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"},
      Millis(30000));
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  std::string cfg = ReadFile(ex.IpConfig(kAgencyA));
  auto pos = cfg.find("[http]\n");
  REQUIRE(pos != std::string::npos);
  cfg.insert(pos + 7, "tls_cert = \"tls.pem\"\ntls_key = \"tls.key\"\n");
  WriteFile(ex.IpConfig(kAgencyA), cfg);
  ex.StartIp(kAgencyA);
  ex.ip(kAgencyA).WaitForLog("listening on https://");
  std::string addr = ReadFile(dir + "/http.addr");
  addr.erase(addr.find_last_not_of("\n ") + 1);
  // Verified against the server's certificate: the health check and a status query answer.
  Reply health = Curl({"--cacert", dir + "/tls.pem", "https://" + addr + "/healthz"});
  CHECK(health.status == 200);
  CHECK(Curl({"--cacert", dir + "/tls.pem", "https://" + addr + "/api/statuses"}).status == 200);
  // Plain HTTP to the same port gets no API answer.
  CommandResult plain = RunCommand({"/usr/bin/curl", "-sS", "--max-time", "5", "-o", "/dev/null",
                                    "-w", "%{http_code}", "http://" + addr + "/api/statuses"},
                                   Millis(15000));
  CHECK(plain.out != "200");
}

}  // namespace
}  // namespace bud::test
