// The clients of several brokers and registries, with real processes (issue 17, client part):
//
// - an integration point with two broker endpoints (both brokers on one PostgreSQL store, run one
//   at a time) moves to the second when the first is killed, and messages keep flowing, a
//   streamed one included that was under way when the first died;
// - with every registry down, organisations the broker and the points knew keep connecting and
//   exchanging messages for the configured stale time, one the broker never saw is refused, and
//   after the stale time the point's /health says the registry is unavailable;
// - two registries on one PostgreSQL store serve the same data, a change made through one is
//   seen through the other, and with the first killed lookups go to the second.
#include <httplib.h>
#include <signal.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/registry_client.h"
#include "common/uuid.h"
#include "common/wire/curve.h"
#include "tests/integration/harness.h"
#include "tests/support/postgres.h"

namespace bud::test {
namespace {

constexpr const char* kAgencyC = "974760673";  // registered, but not running before the outage

std::string Send(Exchange& ex, const std::string& from, const std::string& to,
                 const std::string& name, const Files& files) {
  const std::string id = NewUuid();
  nlohmann::json meta = Exchange::Metadata(to);
  meta["messageId"] = id;
  ex.DropFolder(from, name, meta.dump(), files);
  return id;
}

void ExpectDelivered(Exchange& ex, const std::string& to, const std::string& id, const Files& files,
                     Millis timeout = Millis(40000)) {
  ex.WaitForInbox(to, id, timeout);
  for (const auto& [name, bytes] : files) {
    INFO("attachment " << name << " of " << id);
    CHECK(ReadFile(ex.Inbox(to) + "/" + id + "/" + name) == bytes);
  }
}

// GET base + path: status and body; status -1 when nothing answered.
std::pair<int, std::string> Get(const std::string& base, const std::string& path) {
  httplib::Client c(base);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(20, 0);
  auto r = c.Get(path);
  if (!r) return {-1, ""};
  return {r->status, r->body};
}

// The value of an unlabelled Prometheus sample, or -1.
double Sample(const std::string& metrics, const std::string& name) {
  for (size_t at = metrics.find("\n" + name + " "); at != std::string::npos;) {
    return std::stod(metrics.substr(at + name.size() + 2));
  }
  return -1;
}

TEST_CASE(
    "clients: a point with two broker endpoints moves to the second when the first dies, "
    "a streamed message carried across",
    "[integration][ha-clients]") {
  PostgresServer pg;
  ExchangeOptions options;
  options.broker_pg_url = pg.ConnString();
  options.broker_pg_password_file = pg.PasswordFile();
  options.brokers = 2;  // the second is configured everywhere, not running
  options.ip_settings = {{"outbox.stream_threshold_bytes", "65536"},
                         {"broker.failover_backoff_ms", "200"}};
  Exchange ex(options);
  REQUIRE_FALSE(ex.broker_at(1).Running());

  Files small = {{"a.txt", "before the move\n"}};
  const std::string first = Send(ex, kAgencyA, kAgencyB, "m1", small);
  ExpectDelivered(ex, kAgencyB, first, small);

  // A streamed message; the first broker is killed while its chunks move.
  const Files large = {{"big.bin", SeededBytes(24 << 20, 17)}};
  const std::string streamed = Send(ex, kAgencyA, kAgencyB, "big", large);
  WaitUntil("the upload under way", Millis(30000), [&] {
    for (const auto& m : Exchange::Find(ex.Status(kAgencyA), streamed)) {
      if (m.contains("transfer") && m["transfer"].value("bytes", 0) > 0) return true;
    }
    return false;
  });
  ex.broker_at(0).Kill();
  ex.StartBrokerAt(1);

  // Both points find the second broker by themselves; the stream ends there, byte for byte.
  ExpectDelivered(ex, kAgencyB, streamed, large, Millis(60000));
  const Files after = {{"b.txt", "after the move\n"}};
  const std::string later = Send(ex, kAgencyA, kAgencyB, "m2", after);
  ExpectDelivered(ex, kAgencyB, later, after);
  ex.WaitForStatus(kAgencyA, later, "MOTTATT");

  for (const char* org : {kAgencyA, kAgencyB}) {
    const std::string log = ex.ip(org).LogSinceStart();
    INFO(org << " log:\n" << ex.ip(org).LogTail(30));
    CHECK(CountOccurrences(log, "moving to broker " + ex.broker_endpoints()[1]) >= 1);
    CHECK(CountOccurrences(log, "connected to broker " + ex.broker_endpoints()[1]) >= 1);
  }
  ex.CheckAlive();
}

TEST_CASE(
    "clients: with every registry down known organisations keep exchanging for the stale "
    "time, an unknown one is refused, then the point reports the registry unavailable",
    "[integration][ha-clients]") {
  ExchangeOptions options;
  options.agencies = {kAgencyA, kAgencyB, kAgencyC};
  options.start_ips = false;
  options.http = true;
  constexpr int kStaleMs = 25000;
  options.ip_settings = {{"registry.cache_ms", "500"},
                         {"registry.timeout_ms", "300"},
                         {"registry.stale_ms", std::to_string(kStaleMs)}};
  // The broker's stale time counts from its last answer about a key (when the point first
  // connected), so it gets more room than the points'.
  options.broker_registry_settings = {
      {"key_cache_ms", "500"}, {"timeout_ms", "300"}, {"stale_ms", "120000"}};
  Exchange ex(options);
  ex.StartIp(kAgencyA);
  ex.StartIp(kAgencyB);

  // Everyone known: a message each way warms the caches (points: each other's entries, broker:
  // both CURVE keys).
  const Files f1 = {{"1.txt", "one\n"}};
  ExpectDelivered(ex, kAgencyB, Send(ex, kAgencyA, kAgencyB, "w1", f1), f1);
  ExpectDelivered(ex, kAgencyA, Send(ex, kAgencyB, kAgencyA, "w2", f1), f1);
  {
    auto [code, body] = Get(ex.HttpBase(kAgencyA), "/health");
    INFO(body);
    CHECK(code == 200);
    CHECK(nlohmann::json::parse(body)["registry"] == "ok");
  }

  // The registry goes away; its answers are past their cache time from now on.
  const auto outage = std::chrono::steady_clock::now();
  ex.registry().Stop();
  std::this_thread::sleep_for(Millis(1000));

  // The broker stalls long enough for both points to give it up, so they connect again: new
  // CURVE handshakes, which ZAP admits from the stale cache.
  const std::string log_a = ex.ip(kAgencyA).LogSinceStart();
  ::kill(ex.broker().pid(), SIGSTOP);
  std::this_thread::sleep_for(Millis(2500));
  ::kill(ex.broker().pid(), SIGCONT);
  WaitUntil("A connected again", Millis(20000), [&] {
    return CountOccurrences(ex.ip(kAgencyA).LogSinceStart(), "connected to broker") >
           CountOccurrences(log_a, "connected to broker");
  });

  const Files f2 = {{"2.txt", "during the outage\n"}};
  const std::string during = Send(ex, kAgencyA, kAgencyB, "d1", f2);
  ExpectDelivered(ex, kAgencyB, during, f2);
  ex.WaitForStatus(kAgencyA, during, "MOTTATT");
  {
    auto [code, body] = Get(ex.HttpBase(kAgencyA), "/health");
    INFO(body);
    CHECK(code == 200);  // it can still do its job
    CHECK(nlohmann::json::parse(body)["registry"].get<std::string>().starts_with("stale"));
    auto [mcode, metrics] = Get(ex.HttpBase(kAgencyA), "/metrics");
    CHECK(Sample(metrics, "bud_ip_registry_served_stale_total") > 0);
    auto [bcode, broker_metrics] = Get(ex.BrokerHttpBase(), "/metrics");
    CHECK(Sample(broker_metrics, "bud_broker_registry_served_stale_total") > 0);
  }

  // C is registered, but the broker never saw its key: with no registry it is refused.
  ex.ip(kAgencyC).Start();
  ex.broker().WaitForLog("cannot look up CURVE key", Millis(20000));
  std::this_thread::sleep_for(Millis(1500));
  CHECK(CountOccurrences(ex.ip(kAgencyC).LogSinceStart(), "connected to broker") == 0);

  // After the stale time, nothing is served from the cache: the point says so.
  WaitUntil("A's /health to say the registry is unavailable", Millis(kStaleMs + 20000), [&] {
    auto [code, body] = Get(ex.HttpBase(kAgencyA), "/health");
    if (code != 503) return false;
    auto j = nlohmann::json::parse(body);
    return j["status"] == "DOWN" && j["registry"].get<std::string>().starts_with("unavailable");
  });
  // Its last fresh answer came just before the outage: not much sooner than the stale time.
  CHECK(std::chrono::steady_clock::now() - outage >= Millis(kStaleMs - 2000));
  ex.CheckAlive();
}

TEST_CASE(
    "clients: two registries on one PostgreSQL store serve the same data; with the first "
    "killed, lookups go to the second",
    "[integration][ha-clients]") {
  PostgresServer pg;
  ExchangeOptions options;
  options.registry_store_url = pg.ConnString();
  options.registry_store_password_file = pg.PasswordFile();
  options.registries = 2;
  options.ip_settings = {{"registry.cache_ms", "500"}, {"registry.timeout_ms", "500"}};
  options.broker_registry_settings = {{"key_cache_ms", "500"}, {"timeout_ms", "500"}};
  Exchange ex(options);

  for (size_t i = 0; i < 2; ++i) {
    auto h = RunCommand({BUD_REGISTRY_BIN, "health", "--config", ex.RegistryConfig(i)});
    INFO(h.out << h.err);
    CHECK(h.exit_code == 0);
    CHECK(nlohmann::json::parse(h.out)["status"] == "UP");
  }

  // A client of both, as the points are (agency A's CURVE keys, which both registries admit).
  zmq::context_t ctx;
  auto keys = wire::LoadCurveKeyFile(ex.CurveKeyFile(kAgencyA));
  REQUIRE(keys.ok());
  auto client_of = [&](std::vector<std::string> endpoints) {
    return std::make_unique<RegistryClient>(
        ctx, RegistryClientOptions{.endpoints = std::move(endpoints),
                                   .timeout_ms = 1000,
                                   .cache_ms = 0,
                                   .stale_ms = 0,
                                   .curve = *keys,
                                   .server_key = ex.registry_public_key()});
  };
  auto first = client_of({ex.registry_endpoints()[0]});
  auto second = client_of({ex.registry_endpoints()[1]});
  const Orgnr b = *Orgnr::Parse(kAgencyB);
  auto via_first = first->Lookup(b);
  auto via_second = second->Lookup(b);
  REQUIRE(via_first.ok());
  REQUIRE(via_second.ok());
  CHECK(via_first->SerializeAsString() == via_second->SerializeAsString());

  // A change made through the second registry's config is what the first serves.
  auto set =
      RunCommand({BUD_REGISTRY_BIN, "set-brokers", "--config", ex.RegistryConfig(1), "--orgnr",
                  kAgencyB, "--broker", ex.broker_endpoint(), "--broker", "tcp://127.0.0.1:9"});
  INFO(set.out << set.err);
  REQUIRE(set.exit_code == 0);
  via_first = first->Lookup(b);
  REQUIRE(via_first.ok());
  CHECK(BrokerEndpointsOf(*via_first) ==
        std::vector<std::string>{ex.broker_endpoint(), "tcp://127.0.0.1:9"});

  // The first registry dies: a client of both moves to the second; so do the points.
  ex.registry_at(0).Kill();
  auto both = client_of(ex.registry_endpoints());
  auto moved = both->Lookup(b);
  INFO(moved.status().ToString());
  REQUIRE(moved.ok());
  CHECK(both->endpoint_moves() == 1);
  CHECK(both->current_endpoint() == ex.registry_endpoints()[1]);
  auto h = RunCommand(
      {BUD_REGISTRY_BIN, "health", "--config", ex.RegistryConfig(0), "--timeout-ms", "500"});
  CHECK(h.exit_code == 1);
  CHECK(nlohmann::json::parse(h.out)["status"] == "DOWN");

  std::this_thread::sleep_for(Millis(600));  // the points' cached entries are old now
  const Files f = {{"x.txt", "through the second registry\n"}};
  const std::string id = Send(ex, kAgencyA, kAgencyB, "r2", f);
  ExpectDelivered(ex, kAgencyB, id, f);
  ex.WaitForStatus(kAgencyA, id, "MOTTATT");
  CHECK(CountOccurrences(ex.ip(kAgencyA).LogSinceStart(),
                         "trying the next endpoint " + ex.registry_endpoints()[1]) >= 1);
  ex.CheckAlive();
}

}  // namespace
}  // namespace bud::test
