// The integration point's engine: the loop that owns the point's parts (integration-point/
// engine/, docs/architecture.md) and runs them on one thread, as the broker's loop does:
//
//   each turn: poll (broker socket, wake-up eventfd, outbox inotify) -> open the turn's
//   transaction (Turn) -> store what the HTTP API handed over (HandOverQueue) -> hand each
//   frame from the broker to its part (BrokerLink keeps Welcome, Heartbeat and Refused;
//   Sender the answers to submits and the uploads; Receiver and StreamReceiver the deliveries;
//   ReportQueue the report replies) -> pump the streams -> take in the outbox (OutboxIntake)
//   -> seal, commit, submit (Sender) -> commit the turn, then run what waited for it -> timers
//   (BrokerLink: silence, Hello, heartbeats; Sender: submit timeouts; ReportQueue: resends).
//
// Hand-overs: an outbox folder is removed only after the store's commit; a delivery is reported
// (acknowledged) only after the inbox folder and the store's commit are durable; a message's
// envelope is dropped only after the broker's ACCEPTED. See docs/protocol.md.
// Concurrency: Run's thread owns every part, the store connection, the broker socket and the
// inotify descriptor; Wake and TakeIn are the only calls from other threads.
#pragma once

#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/status.h"
#include "integration-point/config.h"
#include "integration-point/engine/metrics.h"
#include "integration-point/store/point_store.h"
#include "proto/broker.pb.h"

namespace bud {
class RegistryClient;
}

namespace bud::ip {

class Clock;
class HandOverQueue;

class Engine {
 public:
  // `config` and `ctx` must outlive the engine. `clock`: the system clock when null.
  Engine(const Config& config, zmq::context_t& ctx, const Clock* clock = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Loads keys, opens the store, connects. Run calls it when it was not called before.
  Status Start();
  // Runs until StopRequested(). Returns an error only for what prevents starting.
  Status Run();
  // Thread-safe: makes the loop look at the store now (new messages, reports to give).
  void Wake();
  // Thread-safe: OutgoingStore::CreateOutgoing of `row` by the engine thread, in its next turn's
  // transaction together with whatever else that turn writes (other callers' messages
  // included), so the store has one writer. Returns once that commit is durable, or its
  // failure; kUnavailable when the engine has not answered within `timeout_ms` (the message
  // may still be taken in later) or is stopping.
  Status TakeIn(MessageRow row, int64_t timeout_ms);
  const EngineMetrics& metrics() const { return metrics_; }

 private:
  struct Keys;
  struct Parts;
  Status LoadKeys();
  Status BuildParts();
  // The broker endpoints: [broker] endpoints of the config (an override), else those of our own
  // registry entry (looked up once at start: a changed list takes a restart).
  Result<std::vector<std::string>> BrokerEndpoints(RegistryClient& registry);
  void RunTurn();
  void Dispatch(const wire::BrokerMessage& msg);
  // Commits the turn's writes, then runs what waited for them.
  void FinishTurn();
  void Tick();

  const Config& config_;
  zmq::context_t& ctx_;
  const Clock& clock_;
  EngineMetrics metrics_;
  std::unique_ptr<HandOverQueue> hand_over_;  // from construction: TakeIn may come early
  std::unique_ptr<Keys> keys_;
  std::unique_ptr<Parts> parts_;
  std::vector<std::string> broker_endpoints_;
  int wake_fd_ = -1;  // eventfd
  bool started_ = false;
};

}  // namespace bud::ip
