// The chaos test (issue 17): a whole highly available exchange on loopback, as real processes,
// while its parts fail one after another. Three PostgreSQL 15 nodes (a primary and two streaming
// standbys, the primary's COMMITs waiting for ANY 1 of them), three brokers and two registries
// on that cluster (every host listed in their connection strings, target_session_attrs =
// read-write), four sending integration points and one receiving point, each point with the
// three brokers in its own seeded order (so they start spread over the brokers and messages
// cross from one broker to another) and both registries. While the senders' outboxes fill:
//
//   ~20 %  SIGKILL of one broker          ~65 %  both killed brokers started again
//   ~35 %  SIGKILL of a second broker     ~70 %  SIGKILL of one registry (left down)
//   ~50 %  SIGKILL of the PostgreSQL      ~80 %  SIGKILL of the receiving point, started
//          primary, the most advanced            again after a seeded down time
//          standby promoted
//
// (percentages of the messages dropped into the outboxes). Afterwards every message is in the
// receiver's inbox exactly once, byte for byte; every sender lists each of its messages once,
// MOTTATT; the receiver lists each once; no outbox holds anything; and the brokers' store holds
// nothing pending: no queued message, no status notice, no upload or chunk (`bud-broker stats
// --json` and the tables on the promoted node). Every process not killed on purpose still runs,
// and the restarted ones answer /health.
//
// Seeded like the crash test (std::mt19937, seed printed) and scaled by the environment:
//   BUD_CHAOS_MESSAGES  messages per sender (4 senders; default 100)
//   BUD_CHAOS_SEED      the seed (default 20261203)
// A longer run is one command, e.g. 4000 messages:
//   BUD_CHAOS_MESSAGES=1000 build/bin/integration_tests "[chaos]"
// What is seeded: the burst sizes and pauses, the messages, each point's broker order, which
// brokers and which registry are killed, the moments (a few percent around the marks above) and
// the down times. What the processes do between those moments depends on the machine, so a
// failure names the seed and the exchange's directory (BUD_KEEP_TEST_DIRS=1 keeps it).
#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/support/postgres.h"

namespace bud::test {
namespace {

using Strings = std::vector<std::string>;
using SteadyClock = std::chrono::steady_clock;

// Five organisation numbers with valid mod-11 check digits: four senders, one receiver.
constexpr const char* kSenders[] = {"910076787", "910075918", "974760673", "991825827"};
constexpr const char* kReceiver = "889640782";

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  try {
    return std::stoi(v);
  } catch (const std::exception&) {
    throw HarnessError(std::string(name) + "='" + v + "' is not a number");
  }
}

// lo..hi inclusive, from mt19937's output alone (fixed by the standard, unlike the
// distributions'), so a seed gives the same schedule everywhere.
uint32_t Uniform(std::mt19937& rng, uint32_t lo, uint32_t hi) {
  return lo + static_cast<uint32_t>(rng() % (static_cast<uint64_t>(hi) - lo + 1));
}

// A version 4 UUID drawn from `rng`.
std::string SeededUuid(std::mt19937& rng) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (int i = 0; i < 32; ++i) hex += kHex[rng() & 0xf];
  hex[12] = '4';
  hex[16] = kHex[8 + (rng() & 3)];
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string FirstLines(const Strings& lines, size_t n = 20) {
  std::string out;
  for (size_t i = 0; i < lines.size() && i < n; ++i) out += lines[i] + "\n";
  if (lines.size() > n) out += fmt::format("... and {} more\n", lines.size() - n);
  return out;
}

// messageId -> every entry `bud-ip status --json` lists with it.
std::map<std::string, std::vector<nlohmann::json>> ByMessageId(const nlohmann::json& status) {
  std::map<std::string, std::vector<nlohmann::json>> out;
  for (const auto& m : status) out[m.value("messageId", "")].push_back(m);
  return out;
}

struct Outgoing {
  std::string sender;
  std::string folder;
  std::string message_json;
  Files files;
};

// The receiver's inbox against `want`: exactly these folders, nothing left in inbox/.tmp, each
// folder its attachments byte for byte plus a message.json naming the message.
Strings InboxDifferences(const std::string& inbox, const std::map<std::string, Outgoing>& want) {
  Strings problems;
  const Strings listed = ListDir(inbox);
  const std::set<std::string> listed_set(listed.begin(), listed.end());
  for (const auto& name : listed) {
    if (!want.contains(name)) problems.push_back("unexpected inbox folder " + name);
  }
  for (const auto& name : ListDir(inbox + "/.tmp", /*include_hidden=*/true)) {
    problems.push_back("leftover inbox/.tmp/" + name);
  }
  for (const auto& [id, m] : want) {
    if (!listed_set.contains(id)) {
      problems.push_back("message " + id + " is not in the inbox");
      continue;
    }
    const std::string folder = inbox + "/" + id;
    Strings names = {"message.json"};
    for (const auto& [name, bytes] : m.files) names.push_back(name);
    std::sort(names.begin(), names.end());
    if (ListDir(folder, /*include_hidden=*/true) != names) {
      problems.push_back("message " + id + ": the folder holds other files than sent");
    }
    for (const auto& [name, bytes] : m.files) {
      if (ReadFileOrEmpty(folder + "/" + name) != bytes) {
        problems.push_back("message " + id + ": " + name + " differs from what was sent");
      }
    }
    const auto mj = nlohmann::json::parse(ReadFileOrEmpty(folder + "/message.json"), nullptr,
                                          /*allow_exceptions=*/false);
    if (!mj.is_object() || mj.value("messageId", "") != id) {
      problems.push_back("message " + id + ": message.json does not name it");
    }
  }
  return problems;
}

// Waits until every id of `ids` is listed by `org` with status `status` now; fails at once on a
// final FEIL or LEVETID_UTLOPT.
void WaitForAll(Exchange& ex, const std::string& org, const Strings& ids, const std::string& status,
                Millis timeout) {
  size_t missing = ids.size();
  std::string example;
  WaitUntil(
      fmt::format("{} message(s) to be {} at {}", ids.size(), status, org), timeout,
      [&] {
        ex.CheckAlive();
        const auto by_id = ByMessageId(ex.Status(org));
        missing = 0;
        example.clear();
        for (const auto& id : ids) {
          auto it = by_id.find(id);
          const std::string now = it == by_id.end() ? "" : it->second.front().value("status", "");
          if (now == status) continue;
          if (now == "FEIL" || now == "LEVETID_UTLOPT") {
            throw HarnessError("message " + id + " at " + org + " ended in " + now + ":\n" +
                               it->second.front().dump(2) + "\n" + ex.Diagnostics());
          }
          if (missing++ == 0)
            example = it == by_id.end() ? id + ": not listed" : it->second.front().dump();
        }
        return missing == 0;
      },
      [&] {
        return fmt::format("{} not there yet, e.g. {}\n{}", missing, example, ex.Diagnostics());
      },
      Millis(500));
}

// GET base + path: the status code, -1 when nothing answered.
int HttpStatus(const std::string& base, const std::string& path) {
  httplib::Client c(base);
  c.set_connection_timeout(3, 0);
  c.set_read_timeout(10, 0);
  auto r = c.Get(path);
  return r ? r->status : -1;
}

// The chaos schedule: what happens when `at_dropped` messages are in the outboxes.
enum class Action { kKillBroker, kKillPrimary, kRestartBrokers, kKillRegistry, kKillReceiver };

struct Event {
  Action action;
  size_t at_dropped;
  size_t target;      // broker / registry number; unused otherwise
  uint32_t delay_ms;  // after the threshold was crossed
  uint32_t down_ms;   // primary: before the promotion; receiver: before its restart
};

const char* Name(Action a) {
  switch (a) {
    case Action::kKillBroker:
      return "SIGKILL broker";
    case Action::kKillPrimary:
      return "SIGKILL primary";
    case Action::kRestartBrokers:
      return "restart brokers";
    case Action::kKillRegistry:
      return "SIGKILL registry";
    case Action::kKillReceiver:
      return "SIGKILL receiver";
  }
  return "?";
}

}  // namespace

TEST_CASE(
    "chaos: brokers, the PostgreSQL primary, a registry and the receiver killed under load; "
    "every message arrives once and no queue holds anything",
    "[integration][reliability][pg][chaos]") {
  const uint32_t seed = static_cast<uint32_t>(EnvInt("BUD_CHAOS_SEED", 20261203));
  const int per_sender = EnvInt("BUD_CHAOS_MESSAGES", 100);
  REQUIRE(per_sender >= 5);
  std::cout << "chaos test: seed " << seed << " (BUD_CHAOS_SEED), " << per_sender
            << " messages per sender (BUD_CHAOS_MESSAGES)" << std::endl;
  std::mt19937 rng(seed);
  const Strings senders(std::begin(kSenders), std::end(kSenders));
  const size_t total = senders.size() * static_cast<size_t>(per_sender);

  // The truth: bursts of 3..25 messages into one sender's outbox, each with a seeded pause after
  // (0.3..1.3 s: the default run drops for about 20 s, so that a failover has time to happen
  // between two marks while messages keep coming).
  std::map<std::string, Outgoing> truth;
  std::map<std::string, Strings> ids_of;
  struct Burst {
    Strings ids;
    uint32_t pause_ms;
  };
  std::vector<Burst> bursts;
  {
    std::vector<int> left(senders.size(), per_sender);
    for (size_t remaining = total; remaining > 0;) {
      size_t s = Uniform(rng, 0, static_cast<uint32_t>(senders.size() - 1));
      while (left[s] == 0) s = (s + 1) % senders.size();
      const int n = std::min<int>(left[s], static_cast<int>(Uniform(rng, 3, 25)));
      Burst b{{}, Uniform(rng, 300, 1300)};
      for (int i = 0; i < n; ++i) {
        const std::string id = SeededUuid(rng);
        const uint32_t bytes = Uniform(rng, 100, 4000);
        const uint32_t content_seed = rng();
        const std::string title =
            fmt::format("Melding {} fra {}", per_sender - left[s] + i + 1, senders[s]);
        nlohmann::json meta = Exchange::Metadata(kReceiver);
        meta["messageId"] = id;
        meta["title"] = title;
        if (truth.contains(id)) FAIL("seeded message id " << id << " drawn twice");
        truth[id] = {senders[s], "melding-" + id, meta.dump(2),
                     Files{{"data.bin", SeededBytes(bytes, content_seed)},
                           {"notat.txt", "Notat for " + title + "\nÆØÅ æøå\n"}}};
        ids_of[senders[s]].push_back(id);
        b.ids.push_back(id);
      }
      left[s] -= n;
      remaining -= static_cast<size_t>(n);
      bursts.push_back(std::move(b));
    }
  }

  // The schedule, in the order of the marks. Each event comes a seeded 0..150 ms after the burst
  // that reached its mark was dropped, while that burst is being taken in, sealed, submitted and
  // delivered.
  auto around = [&](int percent) {
    const int jitter = static_cast<int>(Uniform(rng, 0, 6)) - 3;  // -3..+3 %
    return total * static_cast<size_t>(percent + jitter) / 100;
  };
  const size_t first_broker = Uniform(rng, 0, 2);
  const size_t second_broker = (first_broker + Uniform(rng, 1, 2)) % 3;
  std::vector<Event> events;
  events.push_back({Action::kKillBroker, around(20), first_broker, Uniform(rng, 0, 150), 0});
  events.push_back({Action::kKillBroker, around(35), second_broker, Uniform(rng, 0, 150), 0});
  events.push_back(
      {Action::kKillPrimary, around(50), 0, Uniform(rng, 0, 150), Uniform(rng, 200, 1500)});
  events.push_back({Action::kRestartBrokers, around(65), 0, Uniform(rng, 0, 150), 0});
  events.push_back(
      {Action::kKillRegistry, around(70), Uniform(rng, 0, 1), Uniform(rng, 0, 150), 0});
  events.push_back(
      {Action::kKillReceiver, around(80), 0, Uniform(rng, 0, 150), Uniform(rng, 200, 1500)});
  // Each point's broker list in a seeded order: its first is where it starts.
  std::map<std::string, std::vector<size_t>> broker_order;
  Strings everyone = senders;
  everyone.push_back(kReceiver);
  for (const auto& org : everyone) {
    std::vector<size_t> order = {0, 1, 2};
    for (size_t i = 2; i > 0; --i)
      std::swap(order[i], order[Uniform(rng, 0, static_cast<uint32_t>(i))]);
    broker_order[org] = order;
  }

  // Three PostgreSQL nodes; the standbys exist before the primary waits for them, so a promoted
  // one does not wait for standbys of its own.
  PostgresServer primary;
  auto s1 = primary.StartStandby("s1");
  auto s2 = primary.StartStandby("s2");
  primary.SetSynchronousStandbys("ANY 1 (s1, s2)");
  const std::string url = fmt::format(
      "host=127.0.0.1,127.0.0.1,127.0.0.1 port={},{},{} dbname={} user={} connect_timeout=2",
      primary.Port(), s1->Port(), s2->Port(), primary.Database(), primary.User());

  ExchangeOptions options;
  options.agencies = everyone;
  options.start_ips = false;
  options.http = true;
  options.broker_pg_url = url;
  options.broker_pg_password_file = primary.PasswordFile();
  options.registry_store_url = url;
  options.registry_store_password_file = primary.PasswordFile();
  options.extra_brokers = 2;
  options.registries = 2;
  // Short caches, so that lookups and ZAP decisions keep going to the registries during the run
  // (and meet the dead one); the stale time (default an hour) carries the failover's seconds.
  options.ip_settings = {{"registry.cache_ms", "2000"},
                         {"registry.timeout_ms", "500"},
                         {"broker.failover_backoff_ms", "200"},
                         {"broker.failover_backoff_max_ms", "2000"}};
  options.broker_registry_settings = {{"key_cache_ms", "2000"}, {"timeout_ms", "500"}};
  Exchange ex(options);
  INFO("seed " << seed << "; exchange in " << ex.root());

  // Each point's [broker] endpoints in its own order (the harness writes them in broker order).
  const Strings endpoints = ex.broker_endpoints();
  auto toml_list = [](const Strings& v) {
    Strings quoted;
    for (const auto& e : v) quoted.push_back("\"" + e + "\"");
    return "[" + fmt::format("{}", fmt::join(quoted, ", ")) + "]";
  };
  for (const auto& org : everyone) {
    std::string config = ReadFile(ex.IpConfig(org));
    const std::string from = "endpoints = " + toml_list(endpoints);
    const size_t at = config.find(from);
    REQUIRE(at != std::string::npos);
    Strings ordered;
    for (size_t b : broker_order[org]) ordered.push_back(endpoints[b]);
    config.replace(at, from.size(), "endpoints = " + toml_list(ordered));
    WriteFile(ex.IpConfig(org), config);
    ex.StartIp(org);
    std::cout << fmt::format("chaos test: {} starts on broker {} (order {})", org,
                             broker_order[org][0], fmt::join(broker_order[org], ","))
              << std::endl;
  }

  const std::string inbox = ex.Inbox(kReceiver);
  auto in_inbox = [&] { return ListDir(inbox).size(); };
  // Drops wait while this many messages are on their way, so the marks fall while messages flow.
  const size_t max_backlog = std::max<size_t>(40, total / 5);
  PostgresServer* promoted = nullptr;
  std::vector<size_t> killed_brokers;

  auto run = [&](const Event& e) {
    switch (e.action) {
      case Action::kKillBroker:
        ex.broker_at(e.target).Kill();
        killed_brokers.push_back(e.target);
        return fmt::format("broker {}", e.target);
      case Action::kKillPrimary: {
        primary.Kill();
        std::this_thread::sleep_for(Millis(e.down_ms));
        // The standby with the most WAL has every commit the primary acknowledged (ANY 1).
        const std::string lsn1 = s1->AdminQuery("SELECT pg_last_wal_receive_lsn()::text");
        const std::string lsn2 = s2->AdminQuery("SELECT pg_last_wal_receive_lsn()::text");
        const bool first =
            s1->AdminQuery(fmt::format("SELECT (pg_wal_lsn_diff('{}', '{}') >= 0)::text", lsn1,
                                       lsn2)) == "true";
        promoted = first ? s1.get() : s2.get();
        promoted->Promote();
        return fmt::format("s1 at {}, s2 at {}: {} promoted after {} ms", lsn1, lsn2,
                           first ? "s1" : "s2", e.down_ms);
      }
      case Action::kRestartBrokers:
        for (size_t b : killed_brokers) ex.StartBrokerAt(b);
        return fmt::format("brokers {} started again", fmt::join(killed_brokers, ", "));
      case Action::kKillRegistry:
        ex.registry_at(e.target).Kill();
        return fmt::format("registry {}", e.target);
      case Action::kKillReceiver:
        ex.ip(kReceiver).Kill();
        std::this_thread::sleep_for(Millis(e.down_ms));
        ex.StartIp(kReceiver);
        return fmt::format("receiver down {} ms", e.down_ms);
    }
    return std::string();
  };

  // Every live broker's /health is asked every 2 s during the run, as a load balancer would, so
  // that the answer at the end comes from a broker that also answered through the failures.
  size_t health_asked = 0, health_down = 0;
  auto next_health_at = SteadyClock::now();
  auto poll_health = [&] {
    if (SteadyClock::now() < next_health_at) return;
    next_health_at = SteadyClock::now() + Millis(2000);
    for (size_t b = 0; b < 3; ++b) {
      if (!ex.broker_at(b).Running()) continue;
      ++health_asked;
      try {
        if (HttpStatus(ex.BrokerHttpBase(b), "/health") != 200) ++health_down;
      } catch (const HarnessError&) {  // a restarted broker not yet serving HTTP
        ++health_down;
      }
    }
  };

  const auto t0 = SteadyClock::now();
  size_t next_burst = 0, next_event = 0, dropped = 0;
  auto next_drop_at = t0;
  Strings event_log;
  const Millis drop_deadline(90000 + 100 * static_cast<int64_t>(total));
  WaitUntil(
      "all bursts dropped and every event done", drop_deadline,
      [&] {
        ex.CheckAlive();
        poll_health();
        const auto now = SteadyClock::now();
        if (next_burst < bursts.size() && now >= next_drop_at &&
            dropped - std::min(dropped, in_inbox()) < max_backlog) {
          const Burst& b = bursts[next_burst++];
          for (const auto& id : b.ids) {
            const Outgoing& m = truth.at(id);
            ex.DropFolder(m.sender, m.folder, m.message_json, m.files);
          }
          dropped += b.ids.size();
          next_drop_at = now + Millis(b.pause_ms);
        }
        if (next_event < events.size() && dropped >= events[next_event].at_dropped) {
          const Event& e = events[next_event++];
          std::this_thread::sleep_for(Millis(e.delay_ms));
          const size_t delivered = in_inbox();
          const double at = Seconds(SteadyClock::now() - t0);
          const std::string what = run(e);
          event_log.push_back(
              fmt::format("{:7.2f} s: {:<16} at {:4}/{} dropped, {:4} in the "
                          "inbox: {}",
                          at, Name(e.action), dropped, total, delivered, what));
          std::cout << "chaos test: " << event_log.back() << std::endl;
        }
        return next_burst == bursts.size() && next_event == events.size();
      },
      [&] {
        return fmt::format("seed {}: {}/{} bursts dropped, {}/{} events done, {} in the inbox\n{}",
                           seed, next_burst, bursts.size(), next_event, events.size(), in_inbox(),
                           ex.Diagnostics());
      },
      Millis(50));
  const double dropped_at = Seconds(SteadyClock::now() - t0);
  INFO("events:\n" << FirstLines(event_log));
  REQUIRE(promoted != nullptr);

  // Everything arrives, once.
  WaitUntil(
      fmt::format("{} messages in the inbox", total),
      Millis(60000 + 50 * static_cast<int64_t>(total)),
      [&] {
        ex.CheckAlive();
        return in_inbox() >= total;
      },
      [&] { return fmt::format("{} there\n{}", in_inbox(), ex.Diagnostics()); }, Millis(200));
  const double inbox_at = Seconds(SteadyClock::now() - t0);
  for (const auto& s : senders) WaitForAll(ex, s, ids_of[s], "MOTTATT", Millis(60000));
  const double mottatt_at = Seconds(SteadyClock::now() - t0);

  // No queue holds anything: the brokers' store (through `bud-broker stats`, as an operator
  // would look) once the senders have acknowledged their last notices.
  const std::string broker_config = ex.root() + "/broker/broker.toml";
  nlohmann::json stats;
  WaitUntil(
      "the brokers' store to hold no queued message and no pending notice", Millis(30000),
      [&] {
        auto r = RunCommand({BUD_BROKER_BIN, "stats", "--config", broker_config, "--json"});
        if (r.exit_code != 0) throw HarnessError("bud-broker stats: " + r.out + r.err);
        stats = nlohmann::json::parse(r.out);
        return stats["totals"].value("queued", -1) == 0 &&
               stats["totals"].value("pendingNotices", -1) == 0;
      },
      [&] { return stats.dump(2); }, Millis(500));
  CHECK(stats["receivers"].empty());
  CHECK(stats["senders"].empty());
  for (const char* table :
       {"broker_messages", "broker_notices", "broker_uploads", "broker_chunks"}) {
    INFO("rows in " << table << " on the promoted node");
    CHECK(promoted->AdminQuery(fmt::format("SELECT count(*)::text FROM {}", table),
                               primary.Database()) == "0");
  }
  CHECK(promoted->AdminQuery("SELECT count(*)::text FROM broker_seen", primary.Database()) ==
        std::to_string(total));

  std::this_thread::sleep_for(Millis(1500));  // time for a duplicate to show up
  ex.CheckAlive();
  const Strings inbox_problems = InboxDifferences(inbox, truth);
  INFO("inbox differences:\n" << FirstLines(inbox_problems));
  CHECK(inbox_problems.empty());

  Strings status_problems;
  for (const auto& s : senders) {
    for (const auto& name : ListDir(ex.Outbox(s), /*include_hidden=*/true)) {
      status_problems.push_back(s + ": outbox still holds " + name);
    }
    const auto by_id = ByMessageId(ex.Status(s));
    if (by_id.size() != ids_of[s].size()) {
      status_problems.push_back(
          fmt::format("{} lists {} messages, not {}", s, by_id.size(), ids_of[s].size()));
    }
    for (const auto& id : ids_of[s]) {
      auto it = by_id.find(id);
      if (it == by_id.end() || it->second.size() != 1 ||
          it->second.front().value("status", "") != "MOTTATT" ||
          it->second.front().value("direction", "") != "OUTGOING") {
        status_problems.push_back(
            s + ": " + id + " listed as " +
            (it == by_id.end() ? std::string("nothing") : nlohmann::json(it->second).dump()));
      }
    }
  }
  const auto at_receiver = ByMessageId(ex.Status(kReceiver));
  if (at_receiver.size() != total) {
    status_problems.push_back(
        fmt::format("the receiver lists {} messages, not {}", at_receiver.size(), total));
  }
  for (const auto& [id, m] : truth) {
    auto it = at_receiver.find(id);
    if (it == at_receiver.end() || it->second.size() != 1 ||
        it->second.front().value("status", "") != "INNKOMMENDE_MOTTATT" ||
        it->second.front().value("sender", "") != "0192:" + m.sender) {
      status_problems.push_back(
          "receiver: " + id + " listed as " +
          (it == at_receiver.end() ? std::string("nothing") : nlohmann::json(it->second).dump()));
    }
  }
  INFO("status differences:\n" << FirstLines(status_problems));
  CHECK(status_problems.empty());

  // Every broker came back or stayed, and says it can do its job; so do the points.
  for (size_t b = 0; b < 3; ++b) {
    INFO("broker " << b << ": " << ex.broker_at(b).Describe());
    CHECK(ex.broker_at(b).Running());
    CHECK(HttpStatus(ex.BrokerHttpBase(b), "/health") == 200);
  }
  for (const auto& org : everyone) {
    INFO("integration point " << org);
    CHECK(HttpStatus(ex.HttpBase(org), "/health") == 200);
  }
  const size_t live_registry = 1 - events[4].target;
  CHECK(RunCommand({BUD_REGISTRY_BIN, "health", "--config", ex.RegistryConfig(live_registry)})
            .exit_code == 0);

  std::printf(
      "chaos test: seed %u, %zu messages, %zu bursts; all dropped after %.1f s, all in the inbox "
      "after %.1f s, all MOTTATT after %.1f s (%.1f messages/s end to end)\n",
      seed, total, bursts.size(), dropped_at, inbox_at, mottatt_at,
      static_cast<double>(total) / mottatt_at);
  // How often the failures made the exactness machinery work (for the record, not asserted: it
  // depends on where the kills landed).
  std::string broker_logs, ip_logs;
  for (size_t b = 0; b < 3; ++b) broker_logs += ReadFileOrEmpty(ex.broker_at(b).log_path());
  for (const auto& org : everyone) ip_logs += ReadFileOrEmpty(ex.ip(org).log_path());
  std::printf(
      "chaos test: %zu failover(s) of a point to another broker, %zu session(s) taken over from "
      "another broker, %zu duplicate submit(s) answered from the dedup record, %zu redelivery(ies) "
      "answered from the receiver's store; %zu of %zu /health answers of the brokers during the "
      "run not 200\n",
      CountOccurrences(ip_logs, "moving to broker"),
      CountOccurrences(broker_logs, "taken over from broker"),
      CountOccurrences(broker_logs, "submitted again"),
      CountOccurrences(ip_logs, "delivered again"), health_down, health_asked);
  std::fflush(stdout);
}

}  // namespace bud::test
