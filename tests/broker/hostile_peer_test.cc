// A registered peer that stops reading its answers: the broker drops its session when the
// peer's pipe is full, also in the middle of one of its frames, and serves the others on. The
// broker runs in-process (tests/broker/server_harness.h) on a real SQLite store.
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "broker/server.h"
#include "broker/sqlite_queue_store.h"
#include "common/clock.h"
#include "common/uuid.h"
#include "tests/broker/server_harness.h"

namespace bud::broker {
namespace {

using test_server::kA;
using test_server::kB;
using test_server::Msg;
using test_server::Peer;
using test_server::RunningBroker;

bool WaitForSessions(const Server& server, int64_t n, int timeout_ms) {
  const int64_t until = MonoMs() + timeout_ms;
  while (MonoMs() < until) {
    if (server.metrics().sessions.load() == n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

}  // namespace

TEST_CASE(
    "a peer that never reads loses its session when its pipe is full, mid-frame; the "
    "broker serves on",
    "[broker][hostile]") {
  RunningBroker broker([](const std::string& path) -> std::unique_ptr<QueueStore> {
    auto sqlite = SqliteQueueStore::Open(path);
    REQUIRE(sqlite.ok());
    return std::move(*sqlite);
  });
  Peer honest(broker.ctx, broker.endpoint, kA);
  Peer hostile(broker.ctx, broker.endpoint, kB);
  REQUIRE(WaitForSessions(*broker.server, 2, 5000));

  // Frames of 256 refused reports (ids that are not UUIDs): one answer each, never read. The
  // broker's pipe to the peer fills (100,000 answers, then the socket buffers) while it answers
  // the items of one frame: the session goes there, and the rest of that frame with it.
  auto batch = Msg();
  for (int i = 0; i < 256; ++i) {
    auto* r = batch.mutable_batch()->add_reports();
    r->set_message_id("not a uuid");
    r->set_status(wire::MOTTATT);
  }
  const int64_t until = MonoMs() + 60000;
  int frames = 0;
  while (MonoMs() < until && frames < 5000 && broker.server->metrics().sessions.load() == 2) {
    if (hostile.TrySend(batch)) {
      ++frames;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  INFO(frames << " frames sent");
  REQUIRE(WaitForSessions(*broker.server, 1, 10000));

  // The other peer is served as before.
  const std::string id = NewUuid();
  honest.Submit(id);
  auto reply = honest.Receive(5000);
  REQUIRE(reply);
  REQUIRE(reply->has_submit_reply());
  CHECK(reply->submit_reply().message_id() == id);
  CHECK(reply->submit_reply().code() == wire::ACCEPTED);
}

}  // namespace bud::broker
