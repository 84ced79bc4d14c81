// Receipts, the status queue and ids in any case, end to end (issue 18): two real integration
// points with the Next Move API, a real broker and registry; curl and cpp-httplib's client as
// the archive systems on both sides, as eFormidling's documentation describes them.
#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/uuid.h"
#include "tests/integration/harness.h"
#include "tests/support/zip_read.h"

namespace bud::test {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

constexpr const char* kResponseProcess = "urn:no:difi:profile:arkivmelding:response:ver1.0";
constexpr const char* kReceiptType = "urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering";

std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

struct Reply {
  int status = 0;
  std::string body;
  json Json() const { return json::parse(body); }
};

// curl as the documentation runs it; -w prints the HTTP status after the body.
Reply Curl(const Strings& args) {
  Strings argv = {"/usr/bin/curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv, Millis(30000));
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  auto nl = r.out.rfind('\n');
  REQUIRE(nl != std::string::npos);
  return {std::stoi(r.out.substr(nl + 1)), r.out.substr(0, nl)};
}

Reply Call(const std::string& base, const std::string& method, const std::string& path,
           const std::string& body = "") {
  httplib::Client c(base);
  c.set_connection_timeout(5);
  c.set_read_timeout(20);
  httplib::Result r = method == "POST"     ? c.Post(path.c_str(), body, "application/json")
                      : method == "DELETE" ? c.Delete(path.c_str())
                                           : c.Get(path.c_str());
  REQUIRE(r);
  return {r->status, r->body};
}

Strings StatusNames(const json& page) {
  Strings out;
  for (const auto& s : page.at("content")) out.push_back(s.at("status"));
  return out;
}

// Waits until GET /api/statuses/{id} lists `status`; the names.
Strings WaitForStatus(const std::string& base, const std::string& id, const std::string& status) {
  Strings names;
  WaitUntil(
      "status " + status + " of " + id + " at " + base, kDefaultWait,
      [&] {
        Reply r = Call(base, "GET", "/api/statuses/" + id + "?size=50");
        if (r.status != 200) return false;
        names = StatusNames(r.Json());
        return std::find(names.begin(), names.end(), status) != names.end();
      },
      [&] {
        std::string s;
        for (const auto& n : names) s += n + " ";
        return "statuses so far: " + s;
      },
      Millis(100));
  return names;
}

// Peeks until an incoming message is there; its SBD.
json WaitForPeek(const std::string& base) {
  json sbd;
  WaitUntil(
      "an incoming message at " + base, kDefaultWait,
      [&] {
        Reply r = Call(base, "GET", "/api/messages/in/peek");
        if (r.status != 200) return false;
        sbd = r.Json();
        return true;
      },
      {}, Millis(100));
  return sbd;
}

std::string Sbd(const std::string& from, const std::string& to, const std::string& id,
                const std::string& conversation, const std::string& process,
                const std::string& standard) {
  json sbd = {
      {"standardBusinessDocumentHeader",
       {{"headerVersion", "1.0"},
        {"sender",
         json::array({{{"identifier",
                        {{"value", "0192:" + from}, {"authority", "iso6523-actorid-upis"}}}}})},
        {"receiver",
         json::array(
             {{{"identifier", {{"value", "0192:" + to}, {"authority", "iso6523-actorid-upis"}}}}})},
        {"documentIdentification",
         {{"standard", standard},
          {"typeVersion", "2.0"},
          {"instanceIdentifier", id},
          {"type", standard.substr(standard.rfind(':') + 1)}}},
        {"businessScope",
         {{"scope",
           json::array({{{"type", "ConversationId"},
                         {"instanceIdentifier", conversation},
                         {"identifier", process},
                         {"scopeInformation",
                          json::array({{{"expectedResponseDateTime",
                                         FormatTime(NowMs() + 7LL * 86400000)}}})}}})}}}}}};
  return sbd.dump();
}

ExchangeOptions ReceiptExchange() {
  ExchangeOptions o;
  o.http = true;
  o.processes = {kProcess, kResponseProcess};
  o.document_types = {kDocumentType, kReceiptType};
  o.ip_settings = {{"incoming.delivery", "\"api\""}};
  return o;
}

// A multipart body as .NET's MultipartFormDataContent writes it: a boundary of its own, parameter
// values unquoted where it can, `charset` on the JSON part.
constexpr const char* kDotNetBoundary = "8c1f3a52-6b0e-4c49-9d4e-5e3a2b1c0d9f";
std::string DotNetPart(const std::string& disposition, const std::string& type,
                       const std::string& body) {
  return std::string("--") + kDotNetBoundary + "\r\nContent-Disposition: " + disposition +
         "\r\nContent-Type: " + type + "\r\n\r\n" + body + "\r\n";
}
Reply PostDotNet(const std::string& base, const std::string& body) {
  httplib::Client c(base);
  c.set_connection_timeout(5);
  c.set_read_timeout(20);
  const std::string type = std::string("multipart/form-data; boundary=") + kDotNetBoundary;
  httplib::Result r =
      c.Post("/api/messages/out/multipart", body + "--" + kDotNetBoundary + "--\r\n", type.c_str());
  REQUIRE(r);
  return {r->status, r->body};
}

// The receiving archive's arkivmelding_kvittering for `related` (as it was peeked), sent from
// `from` to `to` as a multipart body with only its sbd part; the receipt's id.
std::string SendReceipt(const std::string& base, const std::string& from, const std::string& to,
                        const std::string& related, const std::string& conversation,
                        const std::string& text) {
  const std::string receipt_id = NewUuid();
  json receipt =
      json::parse(Sbd(from, to, receipt_id, conversation, kResponseProcess, kReceiptType));
  receipt["arkivmelding_kvittering"] = {
      {"receiptType", "OK"},
      {"relatedToMessageId", related},
      {"messages", json::array({{{"code", "200"}, {"text", text}}})}};
  Reply sent = PostDotNet(
      base, DotNetPart("form-data; name=sbd", "application/json; charset=utf-8", receipt.dump()));
  INFO(sent.body);
  REQUIRE(sent.status == 200);
  return receipt_id;
}

// Peek + DELETE until 204: each status as "<STATUS> <message id in lower case>", oldest first.
// Checks that a peek removes nothing, that ids come in order, and that a deleted id is gone.
Strings DrainStatusQueue(const std::string& base) {
  Strings drained;
  std::vector<int64_t> ids;
  for (int i = 0; i < 100; ++i) {
    Reply head = Call(base, "GET", "/api/statuses/peek");
    if (head.status == 204) break;
    REQUIRE(head.status == 200);
    const json h = head.Json();
    CHECK(Call(base, "GET", "/api/statuses/peek").Json()["id"] == h["id"]);
    const int64_t sid = h["id"];
    CHECK((ids.empty() || sid > ids.back()));  // FIFO
    ids.push_back(sid);
    drained.push_back(h["status"].get<std::string>() + " " + Lower(h["messageId"]));
    REQUIRE(Call(base, "DELETE", "/api/statuses/" + std::to_string(sid)).status == 200);
  }
  CHECK(Call(base, "GET", "/api/statuses/peek").status == 204);
  if (!ids.empty())
    CHECK(Call(base, "DELETE", "/api/statuses/" + std::to_string(ids.front())).status == 404);
  return drained;
}

TEST_CASE(
    "an arkivmelding and its receipt, both ways through the Next Move API: LEST, pop 204, "
    "the status queue drained, finished",
    "[integration][http][receipts]") {
  Exchange ex(ReceiptExchange());
  const std::string a = ex.HttpBase(kAgencyA);
  const std::string b = ex.HttpBase(kAgencyB);

  // A: create with an upper-case id, PUT the file under the id in lower case, send with the
  // documentation's curl (no body, no Content-Length) under the upper-case id.
  const std::string id = Upper(NewUuid());
  const std::string conversation = Upper(NewUuid());
  json sbd = json::parse(Sbd(kAgencyA, kAgencyB, id, conversation, kProcess, kDocumentType));
  sbd["arkivmelding"] = {{"hoveddokument", "test.pdf"}, {"sikkerhetsnivaa", 3}};
  Reply created = Call(a, "POST", "/api/messages/out", sbd.dump());
  REQUIRE(created.status == 200);
  CHECK(created.Json()["standardBusinessDocumentHeader"]["documentIdentification"]
                      ["instanceIdentifier"] == id);
  WriteFile(ex.root() + "/test.pdf", "%PDF-1.7 vedtak");
  Reply put =
      Curl({"-X", "PUT", "-T", ex.root() + "/test.pdf", "-H", "Content-Type: application/pdf", "-H",
            "Content-Disposition: attachment; name=Vedtak; filename=test.pdf",
            a + "/api/messages/out/" + Lower(id)});
  REQUIRE(put.status == 200);
  const auto t0 = std::chrono::steady_clock::now();
  Reply sent = Curl({"-X", "POST", a + "/api/messages/out/" + id});
  const auto send_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  INFO(sent.body);
  REQUIRE(sent.status == 200);
  CHECK(send_ms < 5000);

  // B: peek, pop, delete (LEVERT back to A), then send the receipt as multipart with only its
  // sbd part.
  json peeked = WaitForPeek(b);
  const std::string seen_id =
      peeked["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"];
  CHECK(Lower(seen_id) == Lower(id));
  REQUIRE(Call(b, "GET", "/api/messages/in/pop/" + seen_id).status == 200);
  REQUIRE(Call(b, "DELETE", "/api/messages/in/" + seen_id).status == 200);
  WaitForStatus(a, id, "LEVERT");

  const std::string receipt_id =
      SendReceipt(b, kAgencyB, kAgencyA, seen_id, Lower(conversation), "Journalført som 2026/42-1");

  // A: the original ends at LEST with the receipt as its raw receipt; finished.
  Strings history = WaitForStatus(a, Lower(id), "LEST");
  CHECK(history == Strings{"OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"});
  json lest = Call(a, "GET", "/api/statuses?status=LEST&messageId=" + Lower(id)).Json();
  REQUIRE(lest["content"].size() == 1);
  CHECK(lest["content"][0]["messageId"] == id);  // as the client spelled it
  CHECK(lest["content"][0]["conversationId"] == conversation);
  CHECK_THAT(lest["content"][0]["description"].get<std::string>(),
             Catch::Matchers::Contains("Journalført som 2026/42-1"));
  CHECK(json::parse(lest["content"][0]["rawReceipt"].get<std::string>())["receiptType"] == "OK");
  json conv = Call(a, "GET", "/api/conversations/messageId/" + Lower(id)).Json();
  CHECK(conv["messageId"] == id);
  CHECK(conv["status"] == "LEST");
  CHECK(conv["finished"] == true);
  CHECK(Call(a, "GET", "/api/conversations?conversationId=" + Lower(conversation))
            .Json()["totalElements"] >= 1);

  // A: the receipt arrives as a message without files: peek, pop answers 204, delete.
  json receipt_peeked = WaitForPeek(a);
  CHECK(receipt_peeked["standardBusinessDocumentHeader"]["documentIdentification"]
                      ["instanceIdentifier"] == receipt_id);
  CHECK(receipt_peeked["arkivmelding_kvittering"]["relatedToMessageId"] == seen_id);
  Reply pop = Call(a, "GET", "/api/messages/in/pop/" + receipt_id);
  CHECK(pop.status == 204);
  CHECK(pop.body.empty());
  REQUIRE(Call(a, "DELETE", "/api/messages/in/" + Upper(receipt_id)).status == 200);
  WaitForStatus(b, receipt_id, "LEVERT");

  // A's status queue: peek + DELETE until 204, every status of both messages once, oldest
  // first.
  Strings drained = DrainStatusQueue(a);
  const std::string o = " " + Lower(id), r = " " + receipt_id;
  std::multiset<std::string> expected = {"OPPRETTET" + o,
                                         "SENDT" + o,
                                         "MOTTATT" + o,
                                         "LEVERT" + o,
                                         "LEST" + o,
                                         "INNKOMMENDE_MOTTATT" + r,
                                         "INNKOMMENDE_LEVERT" + r};
  CHECK(std::multiset<std::string>(drained.begin(), drained.end()) == expected);
  // Nothing left unfinished at A: the arkivmelding is LEST, the receipt INNKOMMENDE_LEVERT.
  CHECK(Call(a, "GET", "/api/conversations/queue").Json()["totalElements"] == 0);
  ex.CheckAlive();
}

TEST_CASE(
    "an archive system on both sides as eFormidling documents it: .NET-shaped bodies with æøå "
    "names and filename*, peek by service identifier, pop, delete, kvittering, LEST, queues "
    "drained",
    "[integration][http][receipts]") {
  Exchange ex(ReceiptExchange());
  const std::string a = ex.HttpBase(kAgencyA);
  const std::string b = ex.HttpBase(kAgencyB);
  struct Sent {
    std::string id, conversation, file, bytes, disposition;
    std::string receipt_id;
  };
  std::vector<Sent> sent = {
      // .NET: unquoted parameters, an RFC 2047 file name.
      {NewUuid(), NewUuid(), "vedtak æøå.pdf", "%PDF-1.7 vedtak æøå\n",
       "form-data; name=Hoveddokument; filename=\"=?utf-8?B?dmVkdGFrIMOmw7jDpS5wZGY=?=\"", ""},
      // RFC 5987 beside an ASCII fallback, as Java's and other clients send it.
      {NewUuid(), NewUuid(), "søknad.pdf", "%PDF-1.7 søknad\n",
       "form-data; name=\"Hoveddokument\"; filename=\"s_knad.pdf\"; "
       "filename*=UTF-8''s%C3%B8knad.pdf",
       ""}};
  // The first carries the arkivmelding.xml an archive system writes beside its documents: its
  // public title and journal post reference show in the conversations.
  const std::string arkivmelding =
      "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<arkivmelding "
      "xmlns=\"http://www.arkivverket.no/standarder/noark5/arkivmelding\" "
      "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><mappe xsi:type=\"saksmappe\">"
      "<systemID>sak-2026-42</systemID><basisregistrering xsi:type=\"journalpost\">"
      "<journalpostnummer>7</journalpostnummer><offentligTittel>Vedtak om løyve</offentligTittel>"
      "</basisregistrering></mappe></arkivmelding>";
  for (auto& m : sent) {
    json sbd = json::parse(Sbd(kAgencyA, kAgencyB, m.id, m.conversation, kProcess, kDocumentType));
    sbd["arkivmelding"] = {{"hoveddokument", m.file}, {"sikkerhetsnivaa", 3}};
    std::string body =
        DotNetPart("form-data; name=sbd", "application/json; charset=utf-8", sbd.dump()) +
        DotNetPart(m.disposition, "application/pdf", m.bytes);
    if (&m == &sent[0]) {
      body += DotNetPart("form-data; name=Arkivmelding; filename=arkivmelding.xml",
                         "application/xml", arkivmelding);
    }
    Reply r = PostDotNet(a, body);
    INFO(r.body);
    REQUIRE(r.status == 200);
  }
  {
    json with = Call(a, "GET", "/api/conversations/messageId/" + sent[0].id).Json();
    CHECK(with["messageTitle"] == "Vedtak om løyve");
    CHECK(with["messageReference"] == "sak-2026-42-7");
    CHECK(with["sender"] == std::string("0192:") + kAgencyA);
    CHECK(with["receiver"] == std::string("0192:") + kAgencyB);
    json without = Call(a, "GET", "/api/conversations/messageId/" + sent[1].id).Json();
    CHECK(without["messageReference"] == sent[1].conversation);
    json found = Call(a, "GET", "/api/conversations?messageReference=sak-2026-42-7").Json();
    REQUIRE(found["totalElements"] == 1);
    CHECK(found["content"][0]["messageId"] == sent[0].id);
  }
  for (const auto& m : sent) WaitForStatus(a, m.id, "MOTTATT");

  // B: a consumer of another service (DPE) sees nothing and locks nothing; DPO peeks take each
  // message, pop gives its files under their names, delete, and the kvittering goes back.
  CHECK(Call(b, "GET", "/api/messages/in/peek?serviceIdentifier=DPE").status == 204);
  for (size_t i = 0; i < sent.size(); ++i) {
    Reply peek = Call(b, "GET", "/api/messages/in/peek?serviceIdentifier=DPO");
    REQUIRE(peek.status == 200);
    const json peeked = peek.Json();
    const std::string id =
        peeked["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"];
    auto m = std::find_if(sent.begin(), sent.end(), [&](const Sent& s) { return s.id == id; });
    REQUIRE(m != sent.end());
    CHECK(peeked["arkivmelding"]["hoveddokument"] == m->file);
    httplib::Client c(b);
    c.set_read_timeout(20);
    httplib::Result pop = c.Get(("/api/messages/in/pop/" + id).c_str());
    REQUIRE(pop);
    REQUIRE(pop->status == 200);
    auto entries = ZipEntries(pop->body);
    CHECK(entries[m->file] == m->bytes);
    CHECK(entries["manifest.xml"].find("<hoveddokument href=\"" + m->file + "\"") !=
          std::string::npos);
    REQUIRE(Call(b, "DELETE", "/api/messages/in/" + id).status == 200);
    // The archive answers once A knows the message was taken (LEVERT): the receipt is its own
    // message and could otherwise overtake the LEVERT report on its way to A.
    WaitForStatus(a, id, "LEVERT");
    m->receipt_id =
        SendReceipt(b, kAgencyB, kAgencyA, id, m->conversation, "Journalført: " + m->file);
  }
  CHECK(Call(b, "GET", "/api/messages/in/peek?serviceIdentifier=DPO").status == 204);
  // B's conversation of the first has the sender's title (the reference is the sending side's).
  json at_b =
      Call(b, "GET", "/api/conversations?direction=INCOMING&messageId=" + sent[0].id).Json();
  REQUIRE(at_b["totalElements"] == 1);
  CHECK(at_b["content"][0]["messageTitle"] == "Vedtak om løyve");
  CHECK(at_b["content"][0]["sender"] == std::string("0192:") + kAgencyA);

  // A: each original ends at LEST and is finished; each receipt pops as 204 and is deleted.
  for (const auto& m : sent) {
    CHECK(WaitForStatus(a, m.id, "LEST") ==
          Strings{"OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"});
    json conv = Call(a, "GET", "/api/conversations/messageId/" + m.id).Json();
    CHECK(conv["status"] == "LEST");
    CHECK(conv["finished"] == true);
    // Status items name their conversation by its numeric id too; its statuses carry theirs.
    json items = Call(a, "GET", "/api/statuses/" + m.id).Json();
    for (const auto& item : items["content"]) CHECK(item["convId"] == conv["id"]);
    REQUIRE(conv["messageStatuses"].size() == items["content"].size());
    CHECK(conv["messageStatuses"][0]["id"] == items["content"][0]["id"]);
    // Sent: gone from /api/messages/out; DELETE there removes nothing and answers 200.
    CHECK(Call(a, "GET", "/api/messages/out/" + m.id).status == 404);
    CHECK(Call(a, "DELETE", "/api/messages/out/" + m.id).status == 200);
    CHECK(Call(a, "GET", "/api/conversations/messageId/" + m.id).Json()["status"] == "LEST");
  }
  for (size_t i = 0; i < sent.size(); ++i) {
    json receipt = WaitForPeek(a);
    const std::string rid =
        receipt["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"];
    CHECK(receipt["arkivmelding_kvittering"]["receiptType"] == "OK");
    Reply pop = Call(a, "GET", "/api/messages/in/pop/" + rid);
    CHECK(pop.status == 204);
    CHECK(pop.body.empty());
    REQUIRE(Call(a, "DELETE", "/api/messages/in/" + rid).status == 200);
  }
  for (const auto& m : sent) WaitForStatus(b, m.receipt_id, "LEVERT");

  // Both status queues drain to 204, each status once.
  std::multiset<std::string> expected_a, expected_b;
  for (const auto& m : sent) {
    for (const char* st : {"OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"})
      expected_a.insert(std::string(st) + " " + m.id);
    for (const char* st : {"INNKOMMENDE_MOTTATT", "INNKOMMENDE_LEVERT"}) {
      expected_a.insert(std::string(st) + " " + m.receipt_id);
      expected_b.insert(std::string(st) + " " + m.id);
    }
    for (const char* st : {"OPPRETTET", "SENDT", "MOTTATT", "LEVERT"})
      expected_b.insert(std::string(st) + " " + m.receipt_id);
  }
  Strings drained_a = DrainStatusQueue(a), drained_b = DrainStatusQueue(b);
  CHECK(std::multiset<std::string>(drained_a.begin(), drained_a.end()) == expected_a);
  CHECK(std::multiset<std::string>(drained_b.begin(), drained_b.end()) == expected_b);
  CHECK(Call(a, "GET", "/api/conversations/queue").Json()["totalElements"] == 0);
  // A is done with the first: DELETE its conversation, gone from A's views, B's kept.
  CHECK(Call(a, "DELETE", "/api/conversations/messageId/" + sent[0].id).status == 200);
  CHECK(Call(a, "GET", "/api/conversations/messageId/" + sent[0].id).status == 404);
  CHECK(Call(a, "GET", "/api/statuses/" + sent[0].id).Json()["totalElements"] == 0);
  CHECK(Call(b, "GET", "/api/conversations?messageId=" + sent[0].id).Json()["totalElements"] == 1);
  ex.CheckAlive();
}

TEST_CASE("a receipt that names a message the point did not send to its sender changes nothing",
          "[integration][http][receipts][hostile]") {
  Exchange ex(ReceiptExchange());
  const std::string a = ex.HttpBase(kAgencyA);
  const std::string b = ex.HttpBase(kAgencyB);
  // A sends to itself (not to B); B claims to have read it.
  const std::string own = NewUuid();
  json sbd = json::parse(Sbd(kAgencyA, kAgencyA, own, NewUuid(), kProcess, kDocumentType));
  WriteFile(ex.root() + "/sbd.json", sbd.dump());
  WriteFile(ex.root() + "/brev.txt", "brev");
  REQUIRE(
      Curl({"-F", "sbd=@" + ex.root() + "/sbd.json;type=application/json", "-F",
            "brev=@" + ex.root() + "/brev.txt;type=text/plain", a + "/api/messages/out/multipart"})
          .status == 200);
  WaitForStatus(a, own, "MOTTATT");
  const std::string receipt_id = NewUuid();
  json receipt =
      json::parse(Sbd(kAgencyB, kAgencyA, receipt_id, NewUuid(), kResponseProcess, kReceiptType));
  receipt["arkivmelding_kvittering"] = {{"receiptType", "ERROR"}, {"relatedToMessageId", own}};
  Reply sent = Call(b, "POST", "/api/messages/out", receipt.dump());
  REQUIRE(sent.status == 200);
  REQUIRE(Curl({"-X", "POST", b + "/api/messages/out/" + receipt_id}).status == 200);
  ex.ip(kAgencyA).WaitForLog("receipt for message " + own + " ignored");
  Strings names = StatusNames(Call(a, "GET", "/api/statuses/" + own + "?size=50").Json());
  CHECK(std::find(names.begin(), names.end(), "FEIL") == names.end());
  CHECK(Call(a, "GET", "/api/conversations/messageId/" + own).Json()["status"] != "FEIL");
  // An arkivmelding with no files is still refused.
  json empty = json::parse(Sbd(kAgencyA, kAgencyB, NewUuid(), NewUuid(), kProcess, kDocumentType));
  WriteFile(ex.root() + "/empty.json", empty.dump());
  Reply refused = Curl({"-F", "sbd=@" + ex.root() + "/empty.json;type=application/json",
                        a + "/api/messages/out/multipart"});
  CHECK(refused.status == 400);
  CHECK(refused.body.find("no attachments") != std::string::npos);
  ex.CheckAlive();
}

TEST_CASE("a receipt through the folder contract: message.json alone, LEST at the sender",
          "[integration][receipts]") {
  ExchangeOptions o;
  o.processes = {kProcess, kResponseProcess};
  o.document_types = {kDocumentType, kReceiptType};
  Exchange ex(o);
  const std::string id = NewUuid();
  json meta = Exchange::Metadata(kAgencyB);
  meta["messageId"] = id;
  // A real arkivmelding (one eFormidling can read: a saksmappe with a journalpost); one that is
  // not refuses the folder (docs/http-api.md, "arkivmelding.xml").
  ex.DropFolder(
      kAgencyA, "vedtak", meta.dump(),
      {{"arkivmelding.xml",
        "<arkivmelding xmlns=\"http://www.arkivverket.no/standarder/noark5/arkivmelding\" "
        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><mappe "
        "xsi:type=\"saksmappe\"><basisregistrering xsi:type=\"journalpost\"/></mappe>"
        "</arkivmelding>"}});
  ex.WaitForInbox(kAgencyB, id);
  // B's archive takes it out (LEVERT) and answers with a receipt folder without files.
  std::filesystem::remove_all(ex.Inbox(kAgencyB) + "/" + id);
  ex.WaitForStatus(kAgencyA, id, "LEVERT");
  const std::string receipt_id = NewUuid();
  json receipt = {
      {"receiver", "0192:" + std::string(kAgencyA)},
      {"process", kResponseProcess},
      {"documentType", kReceiptType},
      {"messageId", receipt_id},
      {"arkivmelding_kvittering",
       {{"receiptType", "WARNING"},
        {"relatedToMessageId", id},
        {"messages", json::array({{{"code", "W1"}, {"text", "Arkivert med merknad"}}})}}}};
  ex.DropFolder(kAgencyB, "kvittering", receipt.dump(), {});
  json in_a = ex.WaitForInbox(kAgencyA, receipt_id);
  CHECK(std::filesystem::directory_iterator(ex.Inbox(kAgencyA) + "/" + receipt_id)
            ->path()
            .filename() == "message.json");
  CHECK(in_a.value("documentType", "") == kReceiptType);
  json entry = ex.WaitForStatus(kAgencyA, id, "LEST");
  CHECK(Exchange::History(entry) == Strings{"OPPRETTET", "SENDT", "MOTTATT", "LEVERT", "LEST"});
  CHECK(entry.dump().find("Arkivert med merknad") != std::string::npos);
  // A's archive takes the receipt out: LEVERT for the receipt at B.
  std::filesystem::remove_all(ex.Inbox(kAgencyA) + "/" + receipt_id);
  ex.WaitForStatus(kAgencyB, receipt_id, "LEVERT");
  ex.CheckAlive();
}

}  // namespace
}  // namespace bud::test
