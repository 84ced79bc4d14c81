// A broker loop that stalls (a commit waiting for the database, a slow disk) does not blame its
// peers: their heartbeats and acknowledgements wait unread behind the stall, and silence is
// measured only up to the last time the broker had read everything sent to it. The broker runs
// in-process (tests/broker/server_harness.h) on a real SQLite store; the stall is a real one:
// the test holds the database's write lock, so the broker's group commit waits for it.
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "broker/server.h"
#include "broker/sqlite_queue_store.h"
#include "common/clock.h"
#include "common/storage/sqlite.h"
#include "common/uuid.h"
#include "tests/broker/server_harness.h"

namespace bud::broker {
namespace {

using test_server::kA;
using test_server::kB;
using test_server::Msg;
using test_server::Peer;
using test_server::RunningBroker;

constexpr int64_t kHeartbeatMs = 200;  // a session is silent after 3 intervals: 600 ms
constexpr int64_t kAckTimeoutMs = 1000;
constexpr int kStallMs = 1800;  // longer than both

// The first answer that is a delivery or a submit reply (notices and the like skipped).
wire::BrokerMessage Next(Peer& p, bool (wire::BrokerMessage::*has)() const) {
  const int64_t until = MonoMs() + 10000;
  while (MonoMs() < until) {
    auto m = p.Receive(static_cast<int>(until - MonoMs()));
    REQUIRE(m);
    REQUIRE_FALSE(m->has_refused());
    if (((*m).*has)()) return *m;
  }
  FAIL("no answer within 10 s");
  return {};
}

}  // namespace

TEST_CASE(
    "a stalled broker loop drops no session and redelivers nothing whose heartbeats and "
    "acks wait behind the stall",
    "[broker][stall]") {
  RunningBroker broker(
      [](const std::string& path) -> std::unique_ptr<QueueStore> {
        auto sqlite = SqliteQueueStore::Open(path);
        REQUIRE(sqlite.ok());
        return std::move(*sqlite);
      },
      [](Config& c) {
        c.heartbeat_ms = kHeartbeatMs;
        c.ack_timeout_ms = kAckTimeoutMs;
      });
  Peer a(broker.ctx, broker.endpoint, kA);
  Peer b(broker.ctx, broker.endpoint, kB);

  // B holds one delivery, not yet acknowledged.
  const std::string first = NewUuid();
  a.Submit(first);
  REQUIRE(Next(a, &wire::BrokerMessage::has_submit_reply).submit_reply().code() == wire::ACCEPTED);
  REQUIRE(Next(b, &wire::BrokerMessage::has_deliver).deliver().attempt() >= 1);

  // The stall: the test takes the store's write lock, A submits, and the broker's commit waits
  // for the lock (busy_timeout 5 s) while both peers keep beating and B acknowledges.
  auto db = storage::Db::Open(broker.config.store);
  REQUIRE(db.ok());
  REQUIRE((*db)->Exec("BEGIN IMMEDIATE").ok());
  const std::string second = NewUuid();
  a.Submit(second);
  b.Report(first, wire::MOTTATT);
  const int64_t stall_end = MonoMs() + kStallMs;
  while (MonoMs() < stall_end) {
    auto beat = Msg();
    beat.mutable_heartbeat();
    a.Send(beat);
    b.Send(beat);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE((*db)->Exec("COMMIT").ok());

  // Both sessions live on: A's submit is answered, B gets the new message, not the old again.
  CHECK(Next(a, &wire::BrokerMessage::has_submit_reply).submit_reply().code() == wire::ACCEPTED);
  const auto delivered = Next(b, &wire::BrokerMessage::has_deliver);
  wire::Envelope env;
  REQUIRE(env.ParseFromString(delivered.deliver().envelope()));
  wire::Header h;
  REQUIRE(h.ParseFromString(env.header()));
  CHECK(h.message_id() == second);
  // And they keep working without a new Hello, past the broker's next look at its timers.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string third = NewUuid();
  CHECK(a.SubmitEnvelope(test_server::Envelope(third)).code() == wire::ACCEPTED);
  CHECK(broker.server->metrics().sessions.load() == 2);
  CHECK(broker.server->metrics().redeliveries.load() == 0);

  // A peer that really is silent still loses its session after 3 intervals.
  {
    auto beat = Msg();
    beat.mutable_heartbeat();
    b.Send(beat);  // B's last frame
  }
  const int64_t quiet_from = MonoMs();
  while (broker.server->metrics().sessions.load() == 2 && MonoMs() - quiet_from < 5000) {
    auto beat = Msg();
    beat.mutable_heartbeat();
    a.Send(beat);  // only A beats
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(broker.server->metrics().sessions.load() == 1);
  CHECK(MonoMs() - quiet_from >= 3 * kHeartbeatMs);
}

}  // namespace bud::broker
