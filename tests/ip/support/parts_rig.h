// An in-process rig for the integration point's engine parts (integration-point/engine/): the
// parts wired as the engine wires them, over real things: a store (SQLite) and an inbox in a
// temporary directory, keys issued by a test CA, a DEALER over inproc:// to a ROUTER the test
// holds (BrokerEnd), registry entries the test holds (TableRegistry), and a ManualClock, so
// the timers run in virtual time.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "integration-point/config.h"
#include "integration-point/engine/broker_link.h"
#include "integration-point/engine/broker_transport.h"
#include "integration-point/engine/clock.h"
#include "integration-point/engine/defer_gate.h"
#include "integration-point/engine/metrics.h"
#include "integration-point/engine/receiver.h"
#include "integration-point/engine/registry_lookup.h"
#include "integration-point/engine/report_queue.h"
#include "integration-point/engine/sender.h"
#include "integration-point/engine/stream_receiver.h"
#include "integration-point/engine/turn.h"
#include "integration-point/inbox.h"
#include "integration-point/store/point_store.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace bud::ip::rig {

inline constexpr const char* kMe = "910076787";     // the point under test
inline constexpr const char* kPeer = "910075918";   // the other agency
inline constexpr const char* kThird = "910077007";  // someone else

// Registry entries by organisation number; `unavailable` makes every lookup kUnavailable.
class TableRegistry final : public RegistryLookup {
 public:
  Result<wire::RegistryEntry> Lookup(const Orgnr& org) override;
  std::map<std::string, wire::RegistryEntry> entries;
  bool unavailable = false;
};

// The broker's end of the link: a ROUTER bound on an inproc:// endpoint of the rig's context.
class BrokerEnd {
 public:
  BrokerEnd(zmq::context_t& ctx, const std::string& endpoint);
  // The next message the point sent within `timeout_ms`, skipping heartbeats; empty if none.
  std::optional<wire::ClientMessage> Next(int timeout_ms = 1000);
  // The next message with this body within `timeout_ms`, skipping others.
  std::optional<wire::ClientMessage> NextOf(wire::ClientMessage::BodyCase body,
                                            int timeout_ms = 1000);
  // To the connection last heard from.
  void Send(const wire::BrokerMessage& msg);
  // Reads everything waiting for `ms`; returns how many messages were not heartbeats.
  int Drain(int ms = 50);
  int heartbeats = 0;  // heartbeats the point sent (counted as they are skipped)

 private:
  zmq::socket_t router_;
  std::string peer_;
};

struct Keys {
  test::Leaf sign, enc;
};

class Rig {
 public:
  explicit Rig(const std::string& delivery = "folder");
  ~Rig();

  // Starts the link and lets the broker end learn the connection (from the Hello).
  void Connect();
  // Connect, then a Welcome (announcing `max_batch_items`; 0: a broker without Batch frames):
  // the link is ready.
  void Welcome(uint32_t max_batch_items = 0);
  // One loop turn as the engine runs it: frames from the broker end (waiting up to `wait_ms`
  // for the first) to their parts, the streams pumped, the turn committed, the link's queued
  // items flushed.
  void RunTurn(int wait_ms = 200);

  // Envelopes from kPeer to kMe (sealed with the peer's keys unless told otherwise).
  wire::Header Header() const;
  wire::Payload PayloadFor(const wire::Header& h) const;
  std::string Small(const wire::Header& h, const test::Leaf* signer = nullptr) const;
  struct Stream {
    std::string head;
    std::vector<std::string> records;
  };
  Stream Streamed(const wire::Header& h, size_t bytes, const test::Leaf* signer = nullptr) const;

  // Delivers and returns the point's answer (Report or Defer) to the broker end.
  std::optional<wire::ClientMessage> DeliverSmall(const std::string& envelope);
  // Delivers the head, then each record the point asks for (record `bad` with one byte
  // flipped, each time it is sent); returns the answer (Report or Defer).
  std::optional<wire::ClientMessage> DeliverStream(const Stream& s, int bad = -1);

  test::TempDir dir;
  std::string endpoint;  // the broker end's
  Config config;
  test::TestCa ca;
  Keys me, peer, third;
  std::unique_ptr<crypto::TrustStore> trust;
  std::unique_ptr<crypto::TrustedCertCache> certs;
  std::vector<crypto::DecryptionKey> decryption;
  TableRegistry registry;
  ManualClock clock;
  EngineMetrics metrics;
  zmq::context_t ctx;
  std::unique_ptr<BrokerEnd> broker;
  std::unique_ptr<DealerTransport> transport;
  std::unique_ptr<PointStore> store;
  std::unique_ptr<InboxBatch> inbox;
  std::unique_ptr<BrokerLink> link;
  std::unique_ptr<Turn> turn;
  std::unique_ptr<ReportQueue> reports;
  std::unique_ptr<DeferGate> defer;
  std::unique_ptr<Sender> sender;
  std::unique_ptr<Receiver> receiver;
  std::unique_ptr<StreamReceiver> streams;
};

// "CODE" of a reason "CODE: message".
std::string CodeOf(const std::string& reason);

}  // namespace bud::ip::rig
