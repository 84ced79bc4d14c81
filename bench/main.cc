// bud-bench: runs the benchmark scenarios (scenarios.h, peers.h) and prints a table or JSON of
// the medians. scripts/bench builds it, starts the peers and calls it; see docs/benchmarks.md.
#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "bench/peers.h"
#include "bench/scenarios.h"
#include "bench/stats.h"
#include "common/log.h"

namespace {

using namespace bud::bench;

// Median time of a 4 KiB append + fdatasync in $TMPDIR (where the stores live), in ms: the floor
// under every durable hand-over, measured now because it depends on what else the disk does.
double FsyncMs() {
  const std::string path = std::filesystem::temp_directory_path() / "bud-bench-fsync-probe";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  const std::string block(4096, 'f');
  Latencies l;
  for (int i = 0; i < 50; ++i) {
    const int64_t t = NowNs();
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd) != 0) {
      break;
    }
    l.Add(NowNs() - t);
  }
  ::close(fd);
  ::unlink(path.c_str());
  return l.QuantileMs(0.5).value_or(-1);
}

nlohmann::json Machine() {
  nlohmann::json m;
  m["nproc"] = ::sysconf(_SC_NPROCESSORS_ONLN);
  std::ifstream cpu("/proc/cpuinfo");
  for (std::string line; std::getline(cpu, line);) {
    if (line.rfind("model name", 0) == 0) {
      m["cpu"] = line.substr(line.find(':') + 2);
      break;
    }
  }
  utsname u{};
  if (::uname(&u) == 0) m["kernel"] = std::string(u.release);
  std::ifstream load("/proc/loadavg");
  std::string l1;
  load >> l1;
  m["loadavg_1min_at_start"] = l1;
  m["fsync_4k_p50_ms_at_start"] = FsyncMs();
  return m;
}

void Progress(const std::string& what) { std::cerr << "bud-bench: " << what << std::endl; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bud-bench: Budstikke benchmark driver (use scripts/bench)"};
  int runs = 3;
  bool quick = false, smoke = false, json = false;
  double seconds = 8;
  int64_t queued = 1000000;
  // 2,000 folders: the pipeline's fill (first_ms, 0.1-0.3 s) is then a tenth of the run or less.
  int exchange_messages = 2000, singles = 20;
  int api_messages = 2000, api_clients = 8;
  double half_rate = 0;
  std::string out_file, only, keys_list = "ec,rsa";
  std::string stores_list = "sqlite,postgresql,postgresql-sync";
  Peer rabbit, nats, nats_sync;
  rabbit.system = "rabbitmq";
  nats.system = "nats";
  nats_sync.system = "nats-sync";
  app.add_option("--runs", runs, "runs per scenario; figures are medians")
      ->check(CLI::Range(1, 50));
  app.add_flag("--quick", quick, "one short run each, 50,000 queued, 200 exchange messages");
  app.add_flag("--smoke", smoke, "a few seconds in all: to see that it works");
  app.add_flag("--json", json, "print JSON instead of the table");
  app.add_option("--out", out_file, "also write the JSON here");
  app.add_option("--seconds", seconds, "seconds of load per throughput run");
  app.add_option("--queued", queued, "messages queued for the memory and restart scenario");
  app.add_option("--exchange-messages", exchange_messages, "folders per whole-exchange run");
  app.add_option("--api-messages", api_messages, "messages per sender-api run");
  app.add_option("--api-clients", api_clients, "HTTP client threads (connections) in sender-api");
  app.add_option("--half-rate", half_rate,
                 "half-load at this many messages a second instead of half the ingest median of "
                 "the run (ingest then runs only when asked for), e.g. to compare two builds")
      ->check(CLI::PositiveNumber);
  app.add_option("--keys", keys_list,
                 "certificate key types for exchange and sender-api, comma-separated: ec, rsa");
  app.add_option("--stores", stores_list,
                 "the broker's stores for ingest, pass-through and half-load, comma-separated: "
                 "sqlite, postgresql (one server), postgresql-sync (a primary and two "
                 "synchronous standbys); the other scenarios run on SQLite");
  app.add_option("--scenarios", only,
                 "comma-separated subset of: ingest,pass-through,half-load,queued,exchange,"
                 "sender-api");
  app.add_option("--rabbitmq-port", rabbit.port, "RabbitMQ on 127.0.0.1 (AMQP port)");
  app.add_option("--rabbitmq-pid", rabbit.pid, "its pid, for peak RSS");
  app.add_option("--nats-port", nats.port, "NATS (JetStream, default syncing) on 127.0.0.1");
  app.add_option("--nats-pid", nats.pid, "its pid");
  app.add_option("--nats-note", nats.note, "what to say about its fsync");
  app.add_option("--nats-sync-port", nats_sync.port, "NATS with sync_interval: always");
  app.add_option("--nats-sync-pid", nats_sync.pid, "its pid");
  app.add_option("--nats-sync-note", nats_sync.note, "what to say about its fsync");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    runs = 1;
    seconds = 2;
    queued = 50000;
    exchange_messages = 200;
    singles = 5;
    api_messages = 500;
  }
  if (smoke) {
    runs = 1;
    seconds = 0.5;
    queued = 2000;
    exchange_messages = 20;
    singles = 2;
    api_messages = 40;
  }
  std::set<std::string> want;
  std::stringstream ss(only);
  for (std::string s; std::getline(ss, s, ',');) want.insert(s);
  auto wanted = [&](const std::string& s) { return want.empty() || want.contains(s); };
  std::vector<std::string> keys;
  std::stringstream ks(keys_list);
  for (std::string k; std::getline(ks, k, ',');) {
    if (k != "rsa" && k != "ec") {
      std::cerr << "bud-bench: --keys takes ec and rsa, not '" << k << "'\n";
      return 2;
    }
    keys.push_back(k);
  }
  std::vector<std::string> stores;
  std::stringstream sts(stores_list);
  for (std::string st; std::getline(sts, st, ',');) {
    if (st != "sqlite" && st != "postgresql" && st != "postgresql-sync") {
      std::cerr << "bud-bench: --stores takes sqlite, postgresql and postgresql-sync, not '" << st
                << "'\n";
      return 2;
    }
    stores.push_back(st);
  }
  auto has_store = [&](const std::string& st) {
    return std::find(stores.begin(), stores.end(), st) != stores.end();
  };
  rabbit.note = "quorum queue, persistent, publisher confirms (fsync before confirm)";
  ::signal(SIGPIPE, SIG_IGN);
  bud::SetupLogging("warn", "");

  nlohmann::json report;
  report["machine"] = Machine();
  report["settings"] = {{"runs", runs},
                        {"seconds", seconds},
                        {"queued", queued},
                        {"exchange_messages", exchange_messages},
                        {"singles", singles},
                        {"api_messages", api_messages},
                        {"api_clients", api_clients},
                        {"keys", keys_list},
                        {"stores", stores_list},
                        {"window", 100},
                        {"envelope_bytes", 1024},
                        {"exchange_payload_bytes", 10240}};
  std::vector<Figures> results;
  bool failed = false;
  auto failure = [&](const std::string& scenario, const std::string& system,
                     const std::string& why) {
    Figures f;
    f.scenario = scenario;
    f.system = system;
    f.skipped = true;
    f.note = "FAILED: " + why;
    results.push_back(f);
    failed = true;
    Progress(scenario + " on " + system + " FAILED: " + why);
  };
  // Runs `one` `runs` times and keeps the median.
  auto measure = [&](const std::string& scenario, const std::string& system,
                     const std::function<Figures(int)>& one) -> std::optional<Figures> {
    std::vector<Figures> all;
    try {
      for (int r = 0; r < runs; ++r) {
        Progress(scenario + " on " + system + ", run " + std::to_string(r + 1) + "/" +
                 std::to_string(runs));
        all.push_back(one(r));
      }
    } catch (const std::exception& e) {
      failure(scenario, system, e.what());
      return std::nullopt;
    }
    Figures m = MedianOf(all);
    results.push_back(m);
    return m;
  };

  LoadSpec spec;
  spec.seconds = seconds;
  spec.window = 100;
  spec.envelope_bytes = 1024;
  const bool broker_only = wanted("ingest") || wanted("pass-through") || wanted("half-load");
  // ingest, pass-through and half-load on one broker store.
  auto broker_scenarios = [&](OwnBench& bench, const std::string& system) {
    std::optional<Figures> peak;
    if (wanted("ingest") || (wanted("half-load") && half_rate == 0)) {
      peak = measure("ingest", system, [&](int) { return bench.Ingest(spec); });
    }
    if (wanted("pass-through")) {
      measure("pass-through", system, [&](int) { return bench.PassThrough(spec); });
    }
    if (wanted("half-load") && (half_rate > 0 || (peak && peak->msgs_per_s))) {
      LoadSpec half = spec;
      half.rate = half_rate > 0 ? half_rate : *peak->msgs_per_s / 2;
      measure("half-load", system, [&](int) { return bench.HalfLoad(half); });
    }
  };
  const bool own = (broker_only && has_store("sqlite")) || wanted("queued") || wanted("exchange");
  if (own) {
    try {
      Progress("starting bud-registry and bud-broker (dev certificates, CURVE)");
      OwnBench bench;
      if (has_store("sqlite")) broker_scenarios(bench, "budstikke");
      if (wanted("queued")) {
        try {
          Progress("queued: filling the broker with " + std::to_string(queued) + " messages");
          auto q = bench.Queued(queued, runs);
          results.push_back(q.front());
          results.push_back(MedianOf({q.begin() + 1, q.end()}));
        } catch (const std::exception& e) {
          failure("queued", "budstikke", e.what());
        }
      }
      for (const auto& k : keys) {
        if (!wanted("exchange")) break;
        // The broker-only scenarios above do not use the agencies' keys; this one does.
        std::unique_ptr<OwnBench> other;
        if (k != "rsa") {
          Progress("exchange with " + k + " certificates: a registry and broker of its own");
          other = std::make_unique<OwnBench>(k);
        }
        OwnBench& b = other ? *other : bench;
        measure("exchange-" + k, "budstikke", [&](int) {
          auto f = b.Exchange(exchange_messages, singles, 10240);
          f.scenario = "exchange-" + k;
          return f;
        });
      }
    } catch (const std::exception& e) {
      failure("setup", "budstikke", e.what());
    }
  }
  // The same broker scenarios with the broker's store on PostgreSQL 15 (a real server from
  // Debian's packages, tests/support/postgres.h: fsync and synchronous_commit on), one server
  // and then a primary with two streaming standbys of which one must have flushed each commit.
  for (const std::string st : {"postgresql", "postgresql-sync"}) {
    if (!broker_only || !has_store(st)) continue;
    const bool sync = st == "postgresql-sync";
    const std::string system = sync ? "budstikke-pg-sync" : "budstikke-pg";
    try {
      Progress(std::string("starting PostgreSQL 15") +
               (sync ? " (a primary and two synchronous standbys)" : "") + " for the broker");
      // The tests' servers run with 16 MB of shared buffers; the bench gives PostgreSQL its own
      // default (128 MB), as a server of its own would have at least.
      bud::test::PostgresServer::Options pg_options;
      pg_options.settings = {"shared_buffers = '128MB'"};
      bud::test::PostgresServer primary(pg_options);
      std::vector<std::unique_ptr<bud::test::PostgresServer>> standbys;
      BrokerStore store{system, &primary,
                        "PostgreSQL 15, one server, fsync=on, synchronous_commit=on, "
                        "shared_buffers=128MB"};
      if (sync) {
        standbys.push_back(primary.StartStandby("s1"));
        standbys.push_back(primary.StartStandby("s2"));
        primary.SetSynchronousStandbys("ANY 1 (s1, s2)");
        store.note =
            "PostgreSQL 15, primary + 2 streaming standbys, synchronous_standby_names "
            "'ANY 1 (s1, s2)', synchronous_commit=on (waits for a standby's flush)";
      }
      OwnBench bench("rsa", store);
      broker_scenarios(bench, system);
    } catch (const std::exception& e) {
      failure("setup", system, e.what());
    }
  }
  for (const auto& k : keys) {
    if (!wanted("sender-api")) break;
    measure("sender-api-" + k, "budstikke", [&](int) {
      auto f = OwnBench::SenderApi(api_messages, api_clients, 10240, k);
      f.scenario = "sender-api-" + k;
      return f;
    });
  }

  for (const Peer* p : {&rabbit, &nats, &nats_sync}) {
    if (p->port == 0) continue;
    auto run = [&](const std::string& scenario, const LoadSpec& s) {
      return measure(scenario, p->system, [&](int r) {
        return p->system == "rabbitmq" ? RunRabbitMq(*p, scenario, s, r)
                                       : RunNats(*p, scenario, s, r);
      });
    };
    std::optional<Figures> peak;
    if (wanted("ingest") || wanted("half-load")) peak = run("ingest", spec);
    if (wanted("pass-through")) run("pass-through", spec);
    if (wanted("half-load") && peak && peak->msgs_per_s) {
      LoadSpec half = spec;
      half.rate = *peak->msgs_per_s / 2;
      run("half-load", half);
    }
  }

  std::ifstream load("/proc/loadavg");
  std::string l1;
  load >> l1;
  report["machine"]["loadavg_1min_at_end"] = l1;
  report["machine"]["fsync_4k_p50_ms_at_end"] = FsyncMs();
  report["results"] = nlohmann::json::array();
  for (const auto& f : results) report["results"].push_back(ToJson(f));
  report["ratios"] = Ratios(results);
  if (!out_file.empty()) std::ofstream(out_file) << report.dump(2) << "\n";
  if (json) {
    std::cout << report.dump(2) << "\n";
  } else {
    const auto& m = report["machine"];
    std::cout << "machine: " << m.value("nproc", 0) << " cores, "
              << m.value("cpu", std::string("?")) << ", kernel "
              << m.value("kernel", std::string("?")) << "; load average "
              << m["loadavg_1min_at_start"].get<std::string>() << " -> "
              << m["loadavg_1min_at_end"].get<std::string>() << "; 4 KiB fdatasync p50 "
              << m["fsync_4k_p50_ms_at_start"].get<double>() << " -> "
              << m["fsync_4k_p50_ms_at_end"].get<double>() << " ms\n\n";
    std::cout << Table(results);
    auto ratios = Ratios(results);
    if (!ratios.empty()) {
      std::cout
          << "\nratios (ours / peer, same run; msgs/s: higher is better for us, p99: lower)\n";
      for (const auto& r : ratios) std::cout << r << "\n";
    }
  }
  return failed ? 1 : 0;
}
