// What admins and operators see: the status page in a real headless Chromium, /metrics parsed
// as Prometheus text on the integration point and the broker, and /healthz.
#include <httplib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/uuid.h"
#include "tests/integration/harness.h"

namespace bud::test {
namespace {

using nlohmann::json;

// A strict reader of the Prometheus text format (0.0.4): every line is a # HELP, a # TYPE or a
// sample; names and label names are valid; label values are quoted and escaped; values parse;
// each family is typed once, before its samples; histogram buckets are cumulative and end with
// le="+Inf" equal to _count. Returns series ("name{a=\"b\"}") -> value; fails the test on
// anything else.
std::map<std::string, double> ParsePrometheus(const std::string& text) {
  static const std::regex kName("[a-zA-Z_:][a-zA-Z0-9_:]*");
  static const std::regex kLabelName("[a-zA-Z_][a-zA-Z0-9_]*");
  std::map<std::string, double> out;
  std::map<std::string, std::string> types;  // family -> type
  std::set<std::string> sampled_families;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  REQUIRE(!text.empty());
  REQUIRE(text.back() == '\n');
  while (std::getline(in, line)) {
    ++n;
    INFO("line " << n << ": " << line);
    REQUIRE(!line.empty());
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      std::istringstream parts(line.substr(7));
      std::string name, rest;
      parts >> name;
      REQUIRE(std::regex_match(name, kName));
      if (line[2] == 'T') {
        parts >> rest;
        REQUIRE((rest == "counter" || rest == "gauge" || rest == "histogram" || rest == "summary" ||
                 rest == "untyped"));
        REQUIRE(!types.contains(name));
        REQUIRE(!sampled_families.contains(name));
        types[name] = rest;
      }
      continue;
    }
    REQUIRE(line[0] != '#');
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    const std::string name = line.substr(0, i);
    REQUIRE(std::regex_match(name, kName));
    std::string series = name;
    if (i < line.size() && line[i] == '{') {
      series += '{';
      ++i;
      bool first = true;
      while (line.at(i) != '}') {
        if (!first) {
          REQUIRE(line.at(i) == ',');
          ++i;
        }
        first = false;
        size_t eq = line.find('=', i);
        REQUIRE(eq != std::string::npos);
        const std::string label = line.substr(i, eq - i);
        REQUIRE(std::regex_match(label, kLabelName));
        REQUIRE(line.at(eq + 1) == '"');
        size_t j = eq + 2;
        std::string value;
        while (line.at(j) != '"') {
          if (line[j] == '\\') {
            char e = line.at(j + 1);
            REQUIRE((e == '\\' || e == '"' || e == 'n'));
            value += e == 'n' ? '\n' : e;
            j += 2;
          } else {
            value += line[j++];
          }
        }
        series += label + "=\"" + value + "\",";
        i = j + 1;
      }
      if (series.back() == ',') series.pop_back();
      series += '}';
      ++i;
    }
    REQUIRE(line.at(i) == ' ');
    const std::string value_text = line.substr(i + 1);
    double value;
    if (value_text == "+Inf")
      value = INFINITY;
    else if (value_text == "-Inf")
      value = -INFINITY;
    else if (value_text == "NaN")
      value = NAN;
    else {
      size_t used = 0;
      value = std::stod(value_text, &used);
      REQUIRE(used == value_text.size());
    }
    // The family this sample belongs to must have been typed before it.
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (name.ends_with(suffix) && types.contains(name.substr(0, name.size() - strlen(suffix))) &&
          types[name.substr(0, name.size() - strlen(suffix))] == "histogram") {
        family = name.substr(0, name.size() - strlen(suffix));
      }
    }
    REQUIRE(types.contains(family));
    sampled_families.insert(family);
    REQUIRE(!out.contains(series));
    out[series] = value;
  }
  // Histograms: cumulative buckets ending in +Inf == _count.
  for (const auto& [family, type] : types) {
    if (type != "histogram") continue;
    INFO("histogram " << family);
    double last = 0;
    bool inf = false;
    for (const auto& [series, v] : out) {
      if (!series.starts_with(family + "_bucket{")) continue;
      if (series.find("le=\"+Inf\"") != std::string::npos) {
        inf = true;
        REQUIRE(v == out.at(family + "_count"));
      }
    }
    REQUIRE(inf);
    // Bucket order by le value.
    std::vector<std::pair<double, double>> buckets;
    for (const auto& [series, v] : out) {
      if (!series.starts_with(family + "_bucket{")) continue;
      auto le = series.substr(series.find("le=\"") + 4);
      le = le.substr(0, le.find('"'));
      buckets.emplace_back(le == "+Inf" ? INFINITY : std::stod(le), v);
    }
    std::sort(buckets.begin(), buckets.end());
    for (const auto& [le, v] : buckets) {
      REQUIRE(v >= last);
      last = v;
    }
  }
  return out;
}

std::map<std::string, double> Scrape(const std::string& base) {
  httplib::Client c(base);
  c.set_connection_timeout(5);
  c.set_read_timeout(20);
  auto r = c.Get("/metrics");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(r->get_header_value("Content-Type").starts_with("text/plain; version=0.0.4"));
  return ParsePrometheus(r->body);
}

double Value(const std::map<std::string, double>& m, const std::string& series) {
  auto it = m.find(series);
  return it == m.end() ? 0 : it->second;
}

json Health(const std::string& base, int* status) {
  httplib::Client c(base);
  c.set_connection_timeout(5);
  c.set_read_timeout(10);
  auto r = c.Get("/healthz");
  REQUIRE(r);
  *status = r->status;
  return json::parse(r->body);
}

std::string Send(Exchange& ex, const std::string& from, const std::string& to,
                 const std::string& title) {
  const std::string id = NewUuid();
  auto m = Exchange::Metadata(to);
  m["messageId"] = id;
  m["title"] = title;
  ex.DropFolder(from, "m-" + id, m.dump(), {{"doc.txt", "content of " + title}});
  return id;
}

TEST_CASE("/metrics parses as Prometheus text and moves when messages flow; /healthz answers",
          "[integration][http]") {
  ExchangeOptions o;
  o.http = true;
  // The id index merges what waits in memory at each checkpoint_ms too (seen_index.h).
  o.broker_settings = {{"checkpoint_ms", "300"}};
  Exchange ex(o);
  const std::string a = ex.HttpBase(kAgencyA), b = ex.HttpBase(kAgencyB),
                    broker = ex.BrokerHttpBase();
  // Wait for A's session so that the first scrape sees it connected.
  WaitUntil("A connected to the broker", kDefaultWait,
            [&] { return Value(Scrape(a), "bud_ip_broker_connected") == 1; });
  auto ip_before = Scrape(a);
  auto broker_before = Scrape(broker);
  CHECK(Value(ip_before, "bud_ip_certificate_expiry_days{certificate=\"signing\"}") > 30);
  CHECK(Value(broker_before, "bud_broker_up") == 1);
  int status = 0;
  CHECK(Health(a, &status)["status"] == "UP");
  CHECK(status == 200);
  CHECK(Health(broker, &status)["status"] == "UP");
  CHECK(status == 200);

  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Send(ex, kAgencyA, kAgencyB, "m" + std::to_string(i)));
  for (const auto& id : ids) ex.WaitForStatus(kAgencyA, id, "MOTTATT");
  auto ip_after = Scrape(a);
  auto broker_after = Scrape(broker);
  const std::string mottatt = "bud_ip_messages{direction=\"OUTGOING\",status=\"MOTTATT\"}";
  CHECK(Value(ip_after, mottatt) - Value(ip_before, mottatt) == 3);
  CHECK(Value(ip_after, "bud_ip_accepted_total") - Value(ip_before, "bud_ip_accepted_total") == 3);
  CHECK(Value(ip_after, "bud_ip_submit_to_accept_seconds_count") -
            Value(ip_before, "bud_ip_submit_to_accept_seconds_count") ==
        3);
  CHECK(Value(ip_after, "bud_ip_submit_to_accept_seconds_sum") > 0);
  CHECK(Value(broker_after, "bud_broker_accepted_total") -
            Value(broker_before, "bud_broker_accepted_total") ==
        3);
  CHECK(Value(broker_after, "bud_broker_deliveries_total") -
            Value(broker_before, "bud_broker_deliveries_total") ==
        3);
  CHECK(Value(broker_after, "bud_broker_submit_to_accept_seconds_count") -
            Value(broker_before, "bud_broker_submit_to_accept_seconds_count") ==
        3);
  CHECK(Value(broker_after, "bud_broker_commits_total") >
        Value(broker_before, "bud_broker_commits_total"));
  // The sessions by organisation, and refused submits by reason (none refused here: each
  // reason is there, at 0, and they add up to the REJECTED and queue-full counts).
  CHECK(Value(broker_after, "bud_broker_session{org=\"0192:" + std::string(kAgencyA) + "\"}") == 1);
  CHECK(Value(broker_after, "bud_broker_session{org=\"0192:" + std::string(kAgencyB) + "\"}") == 1);
  double refused = 0;
  for (const char* reason : {"envelope", "too_large", "routing", "id_conflict", "queue_full"}) {
    const std::string series =
        std::string("bud_broker_submits_refused_total{reason=\"") + reason + "\"}";
    CHECK(broker_after.contains(series));
    refused += Value(broker_after, series);
  }
  CHECK(refused == Value(broker_after, "bud_broker_rejected_total") +
                       Value(broker_after, "bud_broker_queue_full_total"));
  // The id index (SQLite): the three ids went to memory, then a merge wrote them to its file.
  WaitUntil("the id index merged the new ids into its file", kDefaultWait, [&] {
    auto m = Scrape(broker);
    return Value(m, "bud_broker_id_index_merges_total") >
               Value(broker_before, "bud_broker_id_index_merges_total") &&
           Value(m, "bud_broker_id_index_in_memory") == 0;
  });
  auto merged = Scrape(broker);
  CHECK(Value(merged, "bud_broker_id_index_merge_failures_total") == 0);
  CHECK(merged.contains("bud_broker_id_index_in_memory"));
  CHECK(merged.contains("bud_broker_id_index_file_reads_total"));
  CHECK(merged.contains("bud_broker_id_index_level_merges_total"));
  CHECK(Value(merged, "bud_broker_id_index_filter_ready") == 1);
  auto b_metrics = Scrape(b);
  CHECK(Value(b_metrics,
              "bud_ip_messages{direction=\"INCOMING\",status=\"INNKOMMENDE_MOTTATT\"}") == 3);
  CHECK(Value(b_metrics, "bud_ip_deliveries_total") == 3);

  // With the receiver down, its queue at the broker grows and ages.
  ex.ip(kAgencyB).Stop();
  const std::string queue =
      "bud_broker_queue_depth{receiver=\"0192:" + std::string(kAgencyB) + "\"}";
  for (int i = 0; i < 2; ++i) ids.push_back(Send(ex, kAgencyA, kAgencyB, "queued"));
  WaitUntil("two messages queued for B at the broker", kDefaultWait,
            [&] { return Value(Scrape(broker), queue) == 2; });
  std::this_thread::sleep_for(Millis(1100));
  auto queued = Scrape(broker);
  CHECK(Value(queued, "bud_broker_queue_oldest_age_seconds{receiver=\"0192:" +
                          std::string(kAgencyB) + "\"}") >= 1.0);
  CHECK(Value(queued, "bud_broker_messages_queued") == 2);
  ex.StartIp(kAgencyB);
  for (size_t i = 3; i < ids.size(); ++i) ex.WaitForStatus(kAgencyA, ids[i], "MOTTATT");
  WaitUntil("B's queue at the broker empty", kDefaultWait,
            [&] { return Value(Scrape(broker), queue) == 0; });

  // A broker that is gone: the integration point says so in both /healthz and /metrics.
  ex.broker().Stop();
  WaitUntil("A to notice the broker is gone", kDefaultWait,
            [&] { return Health(a, &status)["broker"] == "disconnected"; });
  CHECK(status == 200);  // the store works: degraded, not down
  CHECK(Health(a, &status)["status"] == "DEGRADED");
  CHECK(Value(Scrape(a), "bud_ip_broker_connected") == 0);
}

TEST_CASE("the status page in headless Chromium lists messages and their statuses",
          "[integration][http][browser]") {
  const std::string chromium = "/usr/bin/chromium";
  INFO("Debian's chromium package is needed (scripts/test installs it)");
  REQUIRE(PathExists(chromium));
  ExchangeOptions o;
  o.http = true;
  Exchange ex(o);
  const std::string a = ex.HttpBase(kAgencyA);
  const std::string out1 = Send(ex, kAgencyA, kAgencyB, "Byggesak 2026/17");
  const std::string out2 = Send(ex, kAgencyA, kAgencyB, "Tilsyn æøå");
  const std::string in1 = Send(ex, kAgencyB, kAgencyA, "Svar på søknad");
  ex.WaitForStatus(kAgencyA, out1, "MOTTATT");
  ex.WaitForStatus(kAgencyA, out2, "MOTTATT");
  ex.WaitForStatus(kAgencyA, in1, "INNKOMMENDE_MOTTATT");

  auto render = [&](const std::string& query) {
    CommandResult r = RunCommand(
        {chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--user-data-dir=" + ex.root() + "/chromium",
         "--virtual-time-budget=8000", "--dump-dom", a + "/" + query},
        Millis(90000));
    INFO("chromium stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
  };
  auto row_of = [](const std::string& dom, const std::string& id) {
    auto pos = dom.find("data-message-id=\"" + id + "\"");
    if (pos == std::string::npos) return std::string();
    return dom.substr(pos, dom.find("</tr>", pos) - pos);
  };

  const std::string dom = render("");
  INFO(dom);
  CHECK(dom.find("3 message(s)") != std::string::npos);
  const std::string r1 = row_of(dom, out1), r2 = row_of(dom, out2), r3 = row_of(dom, in1);
  REQUIRE(!r1.empty());
  REQUIRE(!r2.empty());
  REQUIRE(!r3.empty());
  CHECK(r1.find("data-status=\"MOTTATT\"") != std::string::npos);
  CHECK(r1.find("Byggesak 2026/17") != std::string::npos);
  CHECK(r1.find("OPPRETTET") != std::string::npos);  // history
  CHECK(r1.find("SENDT") != std::string::npos);
  CHECK(r2.find("Tilsyn æøå") != std::string::npos);
  CHECK(r3.find("data-status=\"INNKOMMENDE_MOTTATT\"") != std::string::npos);
  CHECK(r3.find("0192:" + std::string(kAgencyB)) != std::string::npos);

  // Filters from the page's own query string.
  const std::string incoming = render("?direction=INCOMING");
  CHECK(incoming.find("1 message(s)") != std::string::npos);
  CHECK(!row_of(incoming, in1).empty());
  CHECK(row_of(incoming, out1).empty());
  const std::string by_status = render("?status=INNKOMMENDE_MOTTATT");
  CHECK(!row_of(by_status, in1).empty());
  CHECK(row_of(by_status, out2).empty());
  const std::string future = render("?fromDateTime=2099-01-01T00:00");
  CHECK(future.find("0 message(s)") != std::string::npos);
}

// Headless Chromium on the point's page: the DOM once the page's scripts have run (virtual
// time), and optionally a screenshot. TZ=Europe/Oslo so that times show an offset of +01:00 or
// +02:00 whatever the machine's zone.
std::string RenderPage(Exchange& ex, const std::string& url, const std::string& lang,
                       const std::string& screenshot = "") {
  const std::string chromium = "/usr/bin/chromium";
  INFO("Debian's chromium package is needed (scripts/test installs it)");
  REQUIRE(PathExists(chromium));
  std::vector<std::string> argv = {"/usr/bin/env",
                                   "TZ=Europe/Oslo",
                                   chromium,
                                   "--headless",
                                   "--no-sandbox",
                                   "--disable-gpu",
                                   "--disable-dev-shm-usage",
                                   "--no-first-run",
                                   "--lang=" + lang,
                                   "--user-data-dir=" + ex.root() + "/chromium-" + lang,
                                   "--virtual-time-budget=8000"};
  if (screenshot.empty()) {
    argv.push_back("--dump-dom");
  } else {
    argv.push_back("--screenshot=" + screenshot);
    argv.push_back("--window-size=1280,1400");
  }
  argv.push_back(url);
  CommandResult r = RunCommand(argv, Millis(90000));
  INFO("chromium stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  return r.out;
}

// The overview card with data-key=`key` in a dumped DOM ("" when absent), up to the next card.
std::string CardOf(const std::string& dom, const std::string& key) {
  auto pos = dom.find("data-key=\"" + key + "\"");
  if (pos == std::string::npos) return "";
  auto end = dom.find("class=\"card", pos);
  return dom.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
}

// The text of the card's main value (<div class="value" data-value="">...</div>).
std::string CardValue(const std::string& card) {
  const std::string open = "data-value=\"\">";
  auto pos = card.find(open);
  if (pos == std::string::npos) return "";
  pos += open.size();
  return card.substr(pos, card.find("</div>", pos) - pos);
}

json GetJson(const std::string& base, const std::string& path) {
  httplib::Client c(base);
  c.set_connection_timeout(5);
  c.set_read_timeout(20);
  auto r = c.Get(path);
  REQUIRE(r);
  INFO(path << ": " << r->body);
  REQUIRE(r->status == 200);
  return json::parse(r->body);
}

CommandResult IpStatus(Exchange& ex, const std::string& org, std::vector<std::string> extra) {
  std::vector<std::string> argv = {"/usr/bin/env", "TZ=Europe/Oslo", BUD_IP_BIN,
                                   "status",       "--config",       ex.IpConfig(org)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  CommandResult r = RunCommand(argv);
  INFO("bud-ip status: " << r.out << r.err);
  REQUIRE(r.exit_code == 0);
  return r;
}

// A receiver whose organisation number has a wrong check digit: refused at intake.
std::string WrongCheckDigit(const std::string& orgnr) {
  std::string bad = orgnr;
  bad.back() = static_cast<char>('0' + (bad.back() - '0' + 1) % 10);
  return bad;
}

TEST_CASE(
    "a refused outbox folder is shown by bud-ip status --failed, the page and /metrics, "
    "and leaves the list once fixed and sent",
    "[integration][http][browser][refusals]") {
  ExchangeOptions o;
  o.http = true;
  Exchange ex(o);
  const std::string a = ex.HttpBase(kAgencyA);
  auto meta = Exchange::Metadata(kAgencyB);
  const std::string id = NewUuid();
  meta["messageId"] = id;
  meta["title"] = "Brev med feil mottaker";
  meta["receiver"] = "0192:" + WrongCheckDigit(kAgencyB);
  ex.DropFolder(kAgencyA, "brev-feil", meta.dump(), {{"brev.txt", "Hei"}});
  const std::string failed = ex.AgencyDir(kAgencyA) + "/outbox/.failed/brev-feil";
  WaitUntil("the folder moved to .failed", kDefaultWait,
            [&] { return PathExists(failed + "/error.txt"); });
  const std::string reason = ReadFileOrEmpty(failed + "/error.txt");
  INFO("error.txt: " << reason);
  CHECK(reason.find("check digit") != std::string::npos);
  // The refusal is recorded in the store just after the folder is moved (outbox_intake.cc).
  WaitUntil("the refusal recorded", kDefaultWait,
            [&] { return GetJson(a, "/api/refusals")["open"] == 1; });

  // bud-ip status --failed: the name, the reason, local time with its offset; in both languages.
  const std::string en = IpStatus(ex, kAgencyA, {"--failed", "--lang", "en"}).out;
  CHECK(en.find("brev-feil") != std::string::npos);
  CHECK(en.find("check digit") != std::string::npos);
  CHECK(en.find("1 refused, not sent") != std::string::npos);
  CHECK(std::regex_search(en, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0[12]:00  metadata)")));
  const std::string nb = IpStatus(ex, kAgencyA, {"--failed", "--lang", "nb"}).out;
  CHECK(nb.find("AVVIST (lokal tid)") != std::string::npos);
  CHECK(nb.find("1 avvist, ikke sendt") != std::string::npos);
  json as_json = json::parse(IpStatus(ex, kAgencyA, {"--failed", "--json"}).out);
  REQUIRE(as_json.size() == 1);
  CHECK(as_json[0]["name"] == "brev-feil");
  CHECK(as_json[0]["class"] == "metadata");
  CHECK(as_json[0]["refused"].get<std::string>().ends_with("Z"));  // JSON: ISO in UTC

  // /metrics and the JSON for tools.
  auto m = Scrape(a);
  CHECK(Value(m, "bud_ip_intake_refused_total{class=\"metadata\"}") == 1);
  CHECK(Value(m, "bud_ip_intake_refused_open") == 1);
  json api = GetJson(a, "/api/refusals");
  CHECK(api["open"] == 1);
  REQUIRE(api["content"].size() == 1);
  CHECK(api["content"][0]["name"] == "brev-feil");

  // The page: the count in the header and the refusal in its own view.
  std::string dom = RenderPage(ex, a + "/?view=refused&lang=en", "en");
  INFO(dom);
  CHECK(dom.find("id=\"refusalCount\" data-count=\"1\"") != std::string::npos);
  CHECK(dom.find("refused: 1") != std::string::npos);
  CHECK(dom.find("data-name=\"brev-feil\" data-class=\"metadata\"") != std::string::npos);
  CHECK(dom.find("check digit") != std::string::npos);

  // Fixed and moved back: taken in, sent, and gone from the list (kept with --all).
  meta["receiver"] = "0192:" + std::string(kAgencyB);
  const std::string back = ex.AgencyDir(kAgencyA) + "/outbox/brev-feil";
  REQUIRE(::rename(failed.c_str(), (ex.AgencyDir(kAgencyA) + "/brev-feil.fixing").c_str()) == 0);
  WriteFile(ex.AgencyDir(kAgencyA) + "/brev-feil.fixing/message.json", meta.dump());
  REQUIRE(::rename((ex.AgencyDir(kAgencyA) + "/brev-feil.fixing").c_str(), back.c_str()) == 0);
  ex.WaitForStatus(kAgencyA, id, "MOTTATT");
  const std::string after = IpStatus(ex, kAgencyA, {"--failed", "--lang", "en"}).out;
  CHECK(after.find("no refused folders or requests") != std::string::npos);
  const std::string all = IpStatus(ex, kAgencyA, {"--failed", "--all", "--lang", "en"}).out;
  CHECK(all.find("taken in as message " + id) != std::string::npos);
  m = Scrape(a);
  CHECK(Value(m, "bud_ip_intake_refused_open") == 0);
  CHECK(Value(m, "bud_ip_intake_refused_total{class=\"metadata\"}") == 1);  // a counter
  dom = RenderPage(ex, a + "/?view=refused&lang=en", "en");
  CHECK(dom.find("id=\"refusalCount\" data-count=\"0\"") != std::string::npos);
  CHECK(dom.find("data-name=\"brev-feil\"") == std::string::npos);
}

TEST_CASE(
    "a refused Next Move API request is kept for the admin, resolved when its id is sent "
    "right, and one without an id can be dismissed",
    "[integration][http][refusals]") {
  ExchangeOptions o;
  o.http = true;
  Exchange ex(o);
  const std::string a = ex.HttpBase(kAgencyA);
  httplib::Client c(a);
  c.set_connection_timeout(5);
  c.set_read_timeout(20);
  const std::string id = NewUuid();
  const std::string boundary = "grense";
  auto multipart = [&](const std::string& receiver) {
    json sbd = {{"standardBusinessDocumentHeader",
                 {{"headerVersion", "1.0"},
                  {"sender", json::array({{{"identifier",
                                            {{"value", "0192:" + std::string(kAgencyA)},
                                             {"authority", "iso6523-actorid-upis"}}}}})},
                  {"receiver", json::array({{{"identifier",
                                              {{"value", "0192:" + receiver},
                                               {"authority", "iso6523-actorid-upis"}}}}})},
                  {"documentIdentification",
                   {{"standard", kDocumentType},
                    {"typeVersion", "2.0"},
                    {"instanceIdentifier", id},
                    {"type", "arkivmelding"}}},
                  {"businessScope",
                   {{"scope", json::array({{{"type", "ConversationId"},
                                            {"instanceIdentifier", NewUuid()},
                                            {"identifier", kProcess}}})}}}}},
                {"arkivmelding", {{"hoveddokument", "brev.txt"}, {"sikkerhetsnivaa", 3}}}};
    return "--" + boundary +
           "\r\nContent-Disposition: form-data; name=sbd\r\nContent-Type: "
           "application/json\r\n\r\n" +
           sbd.dump() + "\r\n--" + boundary +
           "\r\nContent-Disposition: form-data; name=brev; filename=brev.txt\r\n\r\nHei\r\n--" +
           boundary + "--\r\n";
  };
  const std::string type = "multipart/form-data; boundary=" + boundary;
  // A receiver with a wrong check digit, and a body that is no SBD at all.
  auto refused = c.Post("/api/messages/out/multipart", multipart(WrongCheckDigit(kAgencyB)), type);
  REQUIRE(refused);
  CHECK(refused->status == 400);
  auto garbage = c.Post("/api/messages/out", "[]", "application/json");
  REQUIRE(garbage);
  CHECK(garbage->status == 400);

  json listed = json::parse(IpStatus(ex, kAgencyA, {"--failed", "--json"}).out);
  REQUIRE(listed.size() == 2);  // newest first
  CHECK(listed[0]["name"] == "POST /api/messages/out");
  CHECK(listed[0]["messageId"] == "");
  CHECK(listed[1]["name"] == "POST /api/messages/out/multipart");
  CHECK(listed[1]["messageId"] == id);
  CHECK(listed[1]["class"] == "api");
  CHECK_THAT(listed[1]["reason"].get<std::string>(), Catch::StartsWith("400: "));
  const std::string en = IpStatus(ex, kAgencyA, {"--failed", "--lang", "en"}).out;
  CHECK(en.find("POST /api/messages/out/multipart (" + id + ")") != std::string::npos);
  CHECK(en.find("2 refused, not sent") != std::string::npos);
  auto m = Scrape(a);
  CHECK(Value(m, "bud_ip_intake_refused_total{class=\"api\"}") == 2);
  CHECK(Value(m, "bud_ip_intake_refused_open") == 2);

  // The archive system sends the same id to the right receiver: taken in, the refusal resolved.
  auto sent = c.Post("/api/messages/out/multipart", multipart(kAgencyB), type);
  REQUIRE(sent);
  CHECK(sent->status == 200);
  ex.WaitForStatus(kAgencyA, id, "MOTTATT");
  listed = json::parse(IpStatus(ex, kAgencyA, {"--failed", "--json"}).out);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["messageId"] == "");
  // The admin dismisses the one without an id; a second dismissal of it is an error.
  const std::string number = std::to_string(listed[0]["id"].get<int64_t>());
  CHECK(IpStatus(ex, kAgencyA, {"--dismiss", number}).out.find("dismissed") != std::string::npos);
  CHECK(json::parse(IpStatus(ex, kAgencyA, {"--failed", "--json"}).out).empty());
  const std::string all = IpStatus(ex, kAgencyA, {"--failed", "--all", "--lang", "en"}).out;
  CHECK(all.find("taken in as message " + id) != std::string::npos);
  CHECK(all.find("dismissed ") != std::string::npos);
  CommandResult again = RunCommand(
      {BUD_IP_BIN, "status", "-c", ex.IpConfig(kAgencyA), "--dismiss", number}, Millis(30000));
  CHECK(again.exit_code == 1);
  CHECK(again.err.find("no open refusal " + number) != std::string::npos);
  CHECK(Value(Scrape(a), "bud_ip_intake_refused_open") == 0);
  ex.CheckAlive();
}

TEST_CASE(
    "the page's overview in Norwegian and English matches the store; a stopped broker "
    "shows red",
    "[integration][http][browser][overview]") {
  ExchangeOptions o;
  o.http = true;
  Exchange ex(o);
  const std::string a = ex.HttpBase(kAgencyA);
  const std::string out1 = Send(ex, kAgencyA, kAgencyB, "Søknad om byggetillatelse");
  const std::string out2 = Send(ex, kAgencyA, kAgencyB, "Tilsynsrapport");
  ex.WaitForStatus(kAgencyA, out1, "MOTTATT");
  ex.WaitForStatus(kAgencyA, out2, "MOTTATT");
  auto meta = Exchange::Metadata(kAgencyB);
  meta["receiver"] = "0192:" + WrongCheckDigit(kAgencyB);
  ex.DropFolder(kAgencyA, "avvist", meta.dump(), {{"a.txt", "x"}});
  WaitUntil("the refusal recorded", kDefaultWait,
            [&] { return GetJson(a, "/api/refusals")["open"] == 1; });
  ex.broker().Stop();
  WaitUntil("the point to see the broker gone", kDefaultWait,
            [&] { return GetJson(a, "/api/overview")["broker"]["connected"] == false; });

  // What the store says, through the overview's JSON.
  json ov = GetJson(a, "/api/overview");
  INFO(ov.dump(2));
  CHECK(ov["messages"]["total"]["MOTTATT"] == 2);
  CHECK(ov["messages"]["today"]["MOTTATT"] == 2);
  CHECK(ov["refusals"]["open"] == 1);
  CHECK(ov["hourly"].size() == 24);
  int64_t hourly_out = 0;  // two messages, in this hour or (at an hour's turn) two
  for (const auto& h : ov["hourly"]) hourly_out += h["out"].get<int64_t>();
  CHECK(hourly_out == 2);
  CHECK(ov["certificates"].size() >= 2);
  bool broker_alert = false, refusal_alert = false;
  for (const auto& al : ov["alerts"]) {
    broker_alert |= al["what"] == "broker";
    refusal_alert |= al["what"] == "refusals";
  }
  CHECK(broker_alert);
  CHECK(refusal_alert);
  const std::string signing_days = std::to_string(ov["certificates"][0]["daysToExpiry"].get<int>());

  const std::string shots = ex.root() + "/screenshots";
  std::filesystem::create_directories(shots);
  for (const std::string lang : {"nb", "en"}) {
    const std::string dom = RenderPage(ex, a + "/?lang=" + lang, lang);
    INFO(lang << ": " << dom);
    CHECK(dom.find("<html lang=\"" + lang + "\"") != std::string::npos);
    const std::string broker = CardOf(dom, "broker");
    REQUIRE(!broker.empty());
    CHECK(broker.find("data-alert=\"true\"") != std::string::npos);
    CHECK(CardValue(broker) == (lang == "nb" ? "IKKE tilkoblet" : "NOT connected"));
    CHECK(CardValue(CardOf(dom, "today")) == "2");
    CHECK(CardValue(CardOf(dom, "total")) == "2");
    CHECK(CardOf(dom, "today").find("MOTTATT 2") != std::string::npos);
    const std::string refusals = CardOf(dom, "refusals");
    CHECK(CardValue(refusals) == "1");
    CHECK(refusals.find("data-alert=\"true\"") != std::string::npos);
    CHECK(CardOf(dom, "registry").find("data-alert=\"false\"") != std::string::npos);
    // The spool is not made before the first large message: its disk is its parent's.
    CHECK(CardOf(dom, "disk").find("No such file") == std::string::npos);
    CHECK(CardOf(dom, "certificates").find("signing: " + signing_days) != std::string::npos);
    // The chart's bars carry their counts: two outgoing messages in all (in one hour's bar, or
    // two at an hour's turn), nothing incoming.
    int64_t bars = 0;
    static const std::regex kCount("data-hour=\"[^\"]*\" data-count=\"(\\d+)\"");
    for (auto it = std::sregex_iterator(dom.begin(), dom.end(), kCount);
         it != std::sregex_iterator(); ++it) {
      bars += std::stoll((*it)[1].str());
    }
    CHECK(bars == 2);
    CHECK(std::regex_search(dom, std::regex(R"(\d\d:\d\d:\d\d \+0[12]:00)")));
    CHECK(dom.find(lang == "nb" ? "Meldinger per time, siste 24 timer"
                                : "Messages per hour, last 24 hours") != std::string::npos);
    const std::string png = shots + "/status-" + lang + ".png";
    RenderPage(ex, a + "/?lang=" + lang, lang, png);
    const std::string bytes = ReadFileOrEmpty(png);
    CHECK(bytes.size() > 10000);
    CHECK(bytes.substr(0, 8) == "\x89PNG\r\n\x1a\n");
  }
  // The language from the browser alone (Accept-Language / navigator.language).
  CHECK(RenderPage(ex, a + "/", "nb").find("I dag") != std::string::npos);
}

TEST_CASE("bud-ip status --lang nb prints Norwegian headings and local times with their offset",
          "[integration][refusals]") {
  Exchange ex;
  const std::string out1 = Send(ex, kAgencyA, kAgencyB, "Melding");
  ex.WaitForStatus(kAgencyA, out1, "MOTTATT");
  const std::string nb = IpStatus(ex, kAgencyA, {"--lang", "nb"}).out;
  CHECK(nb.find("RETN ID  AVSENDER -> MOTTAKER  STATUS  SAMTALE") != std::string::npos);
  CHECK(nb.find("1 melding(er)") != std::string::npos);
  CHECK(nb.find("samtale ") != std::string::npos);
  CHECK(std::regex_search(nb, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0[12]:00  MOTTATT)")));
  const std::string en = IpStatus(ex, kAgencyA, {"--lang", "en"}).out;
  CHECK(en.find("DIR ID  SENDER -> RECEIVER  STATUS  CONVERSATION") != std::string::npos);
  CHECK(en.find("1 message(s)") != std::string::npos);
  // The environment's language when --lang is not given.
  CommandResult env = RunCommand({"/usr/bin/env", "LANG=nb_NO.UTF-8", "TZ=Europe/Oslo", BUD_IP_BIN,
                                  "status", "--config", ex.IpConfig(kAgencyA)});
  CHECK(env.out.find("1 melding(er)") != std::string::npos);
  CommandResult bad =
      RunCommand({BUD_IP_BIN, "status", "--config", ex.IpConfig(kAgencyA), "--lang", "de"});
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find("--lang 'de' is not nb or en") != std::string::npos);
}

}  // namespace
}  // namespace bud::test
