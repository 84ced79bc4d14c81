// The scenarios against Budstikke's own processes (docs/benchmarks.md lists them):
//   ingest        submit -> ACCEPTED, durable, 1 KiB envelopes, `window` in flight, CURVE on
//   pass-through  submit -> deliver to a connected receiver -> Report MOTTATT, 1 KiB
//   half-load     submit -> ACCEPTED latency at a fixed rate (half the measured ingest peak)
//   queued        broker RSS with N messages queued for a receiver that is not connected, and
//                 the time a restarted broker takes to answer a Hello and make a first delivery
//   exchange      outbox folder -> inbox folder through real bud-ip processes, 10 KiB payloads,
//                 and single-message outbox -> inbox latency
//   sender-api    10 KiB messages POSTed to the sender's Next Move HTTP API by several client
//                 threads until the receiver's store (incoming.delivery = api) has them all
//   (exchange and sender-api run once per certificate key type asked for: "-rsa" and "-ec"
//   in the scenario's name)
//
// Operation: one Exchange (tests/integration/harness.h: real bud-registry, bud-broker and,
// for `exchange`, bud-ip processes, dev certificates, CURVE on every link) in a temporary
// directory under $TMPDIR, used from the calling thread only. Every run starts on an empty broker
// store; every wait has a deadline and a failure throws std::runtime_error naming what was
// awaited.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/stats.h"
#include "tests/integration/harness.h"
#include "tests/support/postgres.h"

namespace bud::bench {

// Where the broker keeps its store in the broker-only scenarios (ingest, pass-through, half-load):
// SQLite in the exchange's folder (pg == nullptr), or a PostgreSQL database the caller runs
// (tests/support/postgres.h), recreated empty before every run.
struct BrokerStore {
  std::string system = "budstikke";  // the table's system column
  const test::PostgresServer* pg = nullptr;
  std::string note;  // its durability, printed beside the latency
};

struct LoadSpec {
  double seconds = 5;  // how long to submit (when count == 0)
  int64_t count = 0;   // or: how many messages to submit
  int window = 100;    // submits awaiting ACCEPTED at most (closed loop)
  double rate = 0;     // > 0: open loop at this many per second instead
  size_t envelope_bytes = 1024;
};

class OwnBench {
 public:
  // `keys`: the agencies' certificate key type, "rsa" or "ec" (ExchangeOptions::sign_key).
  explicit OwnBench(const std::string& keys = "rsa", BrokerStore store = {});
  ~OwnBench();

  Figures Ingest(const LoadSpec& spec);
  Figures PassThrough(const LoadSpec& spec);
  Figures HalfLoad(const LoadSpec& spec);  // spec.rate set by the caller
  // Fills the store with `queued` messages, then restarts the broker `restarts` times. Returns
  // one Figures for the memory and fill and one per restart.
  std::vector<Figures> Queued(int64_t queued, int restarts);
  Figures Exchange(int messages, int singles, size_t payload_bytes);
  // `messages` POSTed to A's Next Move API (multipart: SBD + a `payload_bytes` main document)
  // by `clients` threads, each with its own keep-alive connection, to B with incoming.delivery
  // = api; counted until B's store has them all. Runs its own Exchange (HTTP on).
  static Figures SenderApi(int messages, int clients, size_t payload_bytes,
                           const std::string& keys);

 private:
  // CPU seconds used so far by the broker and, on PostgreSQL, by the server's processes.
  struct CpuUse {
    std::optional<double> broker, store;
  };
  CpuUse Cpu() const;
  // broker_cpu_us_per_msg and store_cpu_us_per_msg between two readings.
  static void AddCpuPerMessage(Figures& f, const CpuUse& before, const CpuUse& after,
                               int64_t messages);
  void FreshBroker();
  void AddRss(Figures& f, bool ips);
  // The system name and the store's note on `f`.
  void Label(Figures& f) const;

  BrokerStore store_;
  std::unique_ptr<test::Exchange> ex_;
};

}  // namespace bud::bench
