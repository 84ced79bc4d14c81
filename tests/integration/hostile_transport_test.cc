// Hostile peers on the transport: a registered agency (or anyone holding its CURVE key) that
// chooses routing ids, holds connections open without a Hello, floods the broker with handshakes
// of unknown keys while the registry is down, or registers another organisation's CURVE key.
// Real bud-registry, bud-broker and bud-ip processes (harness.h); the attackers are ZeroMQ
// DEALERs driven from this test process, each with a socket monitor to see its connection end.
//
// Every wait has a deadline: zmq polls with timeouts, and the harness's WaitUntil.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/uuid.h"
#include "common/wire/curve.h"
#include "common/wire/zmq.h"
#include "proto/broker.pb.h"
#include "proto/registry.pb.h"
#include "tests/integration/harness.h"

namespace bud::test {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr const char* kAgencyC = "991825827";

std::string Wire(const std::string& org) { return "0192:" + org; }

zmq::context_t& Context() {
  static zmq::context_t ctx(1);
  return ctx;
}

wire::CurveKeyPair KeysOf(const Exchange& ex, const std::string& org) {
  auto k = wire::LoadCurveKeyFile(ex.CurveKeyFile(org));
  if (!k.ok()) throw HarnessError("CURVE key of " + org + ": " + k.status().ToString());
  return *k;
}

wire::CurveKeyPair FreshKeys() {
  auto [pub, sec] = wire::NewCurveKeyPair();
  return {pub, sec};
}

// A routing id as libzmq makes them for id-less peers: 0x00 and a 32-bit big-endian counter.
std::string AutoShapedId(uint32_t counter) {
  std::string id(5, '\0');
  id[1] = static_cast<char>(counter >> 24);
  id[2] = static_cast<char>(counter >> 16);
  id[3] = static_cast<char>(counter >> 8);
  id[4] = static_cast<char>(counter);
  return id;
}

// The first id an unseeded libzmq hands out: glibc's first rand() with the default seed.
constexpr uint32_t kUnseededFirstId = 0x6b8b4567;

// A DEALER driven by hand, with a monitor of its own connection. Optionally with a chosen
// routing id; optionally never reconnecting (so an ended connection stays ended). Owns both
// sockets; used from the test's thread only.
class Peer {
 public:
  struct Options {
    std::optional<wire::CurveKeyPair> keys;
    std::string server_key;
    std::optional<std::string> routing_id;
    bool reconnect = false;
  };
  Peer(const std::string& endpoint, const Options& o)
      : sock_(Context(), zmq::socket_type::dealer), monitor_(Context(), zmq::socket_type::pair) {
    static int n = 0;
    const std::string mon = "inproc://hostile-peer-monitor-" + std::to_string(n++);
    sock_.set(zmq::sockopt::linger, 0);
    sock_.set(zmq::sockopt::reconnect_ivl, o.reconnect ? 1000 : -1);
    if (o.routing_id) sock_.set(zmq::sockopt::routing_id, zmq::buffer(*o.routing_id));
    if (o.keys) wire::MakeCurveClient(sock_, *o.keys, o.server_key);
    if (zmq_socket_monitor(sock_.handle(), mon.c_str(),
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) != 0) {
      throw HarnessError("cannot monitor a test peer");
    }
    monitor_.set(zmq::sockopt::linger, 0);
    monitor_.connect(mon);
    sock_.connect(endpoint);
  }
  ~Peer() { (void)zmq_socket_monitor(sock_.handle(), nullptr, 0); }

  void Send(const google::protobuf::MessageLite& m) {
    if (!sock_.send(zmq::buffer(m.SerializeAsString()), zmq::send_flags::dontwait)) {
      throw HarnessError("test peer: send would block");
    }
  }
  // The next frame, or nullopt when none comes within `timeout`.
  std::optional<std::string> Recv(Millis timeout) {
    zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, timeout);
    zmq::message_t m;
    if (!(item.revents & ZMQ_POLLIN) || !sock_.recv(m, zmq::recv_flags::dontwait)) {
      return std::nullopt;
    }
    return m.to_string();
  }
  // Reads the monitor without blocking; the counts below follow.
  void PollEvents() {
    for (;;) {
      zmq::message_t head;
      if (!monitor_.recv(head, zmq::recv_flags::dontwait)) return;
      bool more = head.more();
      while (more) {
        zmq::message_t rest;
        if (!monitor_.recv(rest, zmq::recv_flags::none)) break;
        more = rest.more();
      }
      if (head.size() < 6) continue;
      uint16_t event = 0;
      std::memcpy(&event, head.data(), 2);
      if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) ++handshakes_;
      if (event == ZMQ_EVENT_DISCONNECTED) ++disconnects_;
    }
  }
  int handshakes() {
    PollEvents();
    return handshakes_;
  }
  int disconnects() {
    PollEvents();
    return disconnects_;
  }

 private:
  zmq::socket_t sock_;
  zmq::socket_t monitor_;
  int handshakes_ = 0;
  int disconnects_ = 0;
};

wire::ClientMessage HelloAs(const std::string& org, uint32_t credit) {
  wire::ClientMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  m.mutable_hello()->set_orgnr(Wire(org));
  m.mutable_hello()->set_credit(credit);
  return m;
}

wire::ClientMessage Heartbeat() {
  wire::ClientMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  m.mutable_heartbeat()->set_at_unix_ms(NowMs());
  return m;
}

wire::RegistryRequest Lookup(uint64_t request_id, const std::string& org) {
  wire::RegistryRequest req;
  req.set_protocol_version(wire::kProtocolVersion);
  req.set_request_id(request_id);
  req.mutable_lookup()->set_orgnr(org);
  return req;
}

// The first broker message of the kind `want` within `timeout` (others are skipped).
std::optional<wire::BrokerMessage> AwaitBroker(Peer& p, wire::BrokerMessage::BodyCase want,
                                               Millis timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  while (SteadyClock::now() < deadline) {
    auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
    auto frame = p.Recv(std::clamp(left, Millis(1), Millis(100)));
    if (!frame) continue;
    wire::BrokerMessage m;
    if (!m.ParseFromString(*frame)) throw HarnessError("broker sent an unparseable frame");
    if (m.body_case() == want) return m;
  }
  return std::nullopt;
}

// Open file descriptors of a process (/proc/<pid>/fd).
int FdCount(pid_t pid) {
  return static_cast<int>(ListDir("/proc/" + std::to_string(pid) + "/fd", true).size());
}

bool LogHas(Process& p, const std::string& text) {
  return p.LogSinceStart().find(text) != std::string::npos;
}

size_t Occurrences(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

void SendAndExpectDelivery(Exchange& ex, const std::string& from, const std::string& to,
                           const std::string& title) {
  const std::string id = NewUuid();
  nlohmann::json meta = Exchange::Metadata(to);
  meta["messageId"] = id;
  meta["title"] = title;
  ex.DropFolder(from, "til-" + to + "-" + id.substr(0, 8), meta.dump(2),
                {{"brev.txt", title + "\n"}});
  const nlohmann::json mj = ex.WaitForInbox(to, id);
  CHECK(mj.value("title", "") == title);
  ex.WaitForStatus(from, id, "MOTTATT");
}

}  // namespace

// The attack of issue 14: with a registered agency's key, take the routing ids an unseeded
// libzmq would hand out next. On a broker or registry that does not seed them, the next honest
// peer to connect gets an auto id that collides and libzmq aborts the process
// (socket_base.cpp:2130). Ids that are not shaped like libzmq's own are refused outright.
TEST_CASE("peers that choose their own routing ids leave the broker and the registry serving",
          "[integration][hostile]") {
  Exchange ex;
  const wire::CurveKeyPair a = KeysOf(ex, kAgencyA);

  std::vector<std::unique_ptr<Peer>> squatters;
  for (const auto& [endpoint, server_key] :
       {std::pair{ex.broker_endpoint(), ex.broker_public_key()},
        {ex.registry_endpoint(), ex.registry_public_key()}}) {
    for (uint32_t k = 0; k < 24; ++k) {
      squatters.push_back(std::make_unique<Peer>(
          endpoint, Peer::Options{a, server_key, AutoShapedId(kUnseededFirstId + k), false}));
    }
  }
  // Every squatter got through CURVE and ZAP (A's key is registered), so its id is taken.
  WaitUntil("the squatters' handshakes", kDefaultWait, [&] {
    return std::all_of(squatters.begin(), squatters.end(),
                       [](auto& p) { return p->handshakes() > 0; });
  });

  // Ids that are not libzmq's shape: refused, never answered, connection closed.
  const std::vector<std::string> chosen = {"attacker", std::string("\x01\x02\x03\x04\x05", 5),
                                           std::string(1, '\0'), std::string(6, '\0')};
  std::vector<std::unique_ptr<Peer>> to_broker, to_registry;
  for (const auto& id : chosen) {
    to_broker.push_back(std::make_unique<Peer>(
        ex.broker_endpoint(), Peer::Options{a, ex.broker_public_key(), id, false}));
    to_broker.back()->Send(HelloAs(kAgencyA, 7));
    to_registry.push_back(std::make_unique<Peer>(
        ex.registry_endpoint(), Peer::Options{a, ex.registry_public_key(), id, false}));
    to_registry.back()->Send(Lookup(1, kAgencyB));
  }

  // Honest agencies connect anew: each new connection draws the next auto id.
  for (const char* org : {kAgencyA, kAgencyB}) {
    ex.ip(org).Stop();
    ex.StartIp(org);
  }
  SendAndExpectDelivery(ex, kAgencyA, kAgencyB, "Etter rutings-id-angrepet");
  SendAndExpectDelivery(ex, kAgencyB, kAgencyA, "Svar etter rutings-id-angrepet");

  WaitUntil("the connections with chosen ids to be closed", Millis(10000), [&] {
    for (auto* list : {&to_broker, &to_registry}) {
      for (auto& p : *list) {
        if (p->disconnects() == 0) return false;
      }
    }
    return true;
  });
  for (auto& p : to_broker) CHECK_FALSE(p->Recv(Millis(1)).has_value());
  for (auto& p : to_registry) CHECK_FALSE(p->Recv(Millis(1)).has_value());
  // Each refused id is logged once, and no session came of the Hellos (credit 7 is theirs).
  const std::string broker_log = ex.broker().LogSinceStart();
  CHECK(Occurrences(broker_log, "chose its own routing id (only") == chosen.size());
  CHECK_FALSE(LogHas(ex.broker(), "opened by " + Wire(kAgencyA) + " (credit 7)"));
  CHECK(Occurrences(ex.registry().LogSinceStart(), "chose its own routing id (only") ==
        chosen.size());

  ex.CheckAlive();
  CHECK(ex.broker().Running());
  CHECK(ex.registry().Running());
}

TEST_CASE("an authenticated connection that never says Hello is closed after the Hello deadline",
          "[integration][hostile]") {
  ExchangeOptions options;
  options.broker_settings = {{"hello_timeout_ms", "1000"}};
  options.start_ips = false;  // A's key is driven by hand: A's own point would replace the session
  Exchange ex(options);
  const wire::CurveKeyPair a = KeysOf(ex, kAgencyA);
  const pid_t broker = ex.broker().pid();

  // An honest connection with A's key that says Hello and keeps talking stays open.
  Peer honest(ex.broker_endpoint(), Peer::Options{a, ex.broker_public_key(), std::nullopt, false});
  honest.Send(HelloAs(kAgencyA, 3));
  REQUIRE(AwaitBroker(honest, wire::BrokerMessage::kWelcome, kDefaultWait));
  // Counted once the broker has made its lazily opened sockets (the registry client for ZAP).
  const int baseline = FdCount(broker);

  for (int wave = 0; wave < 2; ++wave) {
    INFO("wave " << wave);
    std::vector<std::unique_ptr<Peer>> silent;
    for (int i = 0; i < 40; ++i) {
      silent.push_back(std::make_unique<Peer>(
          ex.broker_endpoint(), Peer::Options{a, ex.broker_public_key(), std::nullopt, false}));
    }
    // Heartbeats on the honest session all along: a silent session would be dropped.
    WaitUntil("the silent peers' handshakes", kDefaultWait, [&] {
      honest.Send(Heartbeat());
      return std::all_of(silent.begin(), silent.end(), [](auto& p) { return p->handshakes() > 0; });
    });
    const int during = FdCount(broker);
    CHECK(during >= baseline + 40);  // they really are connected
    // Each is closed by the broker: its own monitor sees the connection end.
    WaitUntil("the silent peers' connections to be closed", Millis(10000), [&] {
      honest.Send(Heartbeat());
      return std::all_of(silent.begin(), silent.end(),
                         [](auto& p) { return p->disconnects() > 0; });
    });
    WaitUntil(
        "the broker's fd count to come back", Millis(10000),
        [&] {
          honest.Send(Heartbeat());
          return FdCount(broker) <= baseline + 2;
        },
        [&] {
          return "fds: " + std::to_string(FdCount(broker)) + ", baseline " +
                 std::to_string(baseline);
        });
  }
  CHECK(honest.disconnects() == 0);
  honest.Send(Heartbeat());
  CHECK(AwaitBroker(honest, wire::BrokerMessage::kHeartbeat, Millis(5000)));
  CHECK(LogHas(ex.broker(), "no Hello within 1000 ms"));
  ex.CheckAlive();
}

// The broker asks the registry whose an unknown CURVE key is. With the registry down each such
// question waits for the registry timeout (3 s); asked on the broker's event loop, six of them
// froze every session for 18 s. Now they are asked on the ZAP handler's own thread.
TEST_CASE("handshakes with unknown keys while the registry is down do not stall honest sessions",
          "[integration][hostile]") {
  ExchangeOptions options;
  options.start_ips = false;
  Exchange ex(options);
  const wire::CurveKeyPair a = KeysOf(ex, kAgencyA);
  Peer honest(ex.broker_endpoint(), Peer::Options{a, ex.broker_public_key(), std::nullopt, true});
  honest.Send(HelloAs(kAgencyA, 3));
  REQUIRE(AwaitBroker(honest, wire::BrokerMessage::kWelcome, kDefaultWait));

  ex.registry().Stop();
  std::vector<std::unique_ptr<Peer>> strangers;
  for (int i = 0; i < 8; ++i) {  // reconnecting: a new handshake (and lookup) every second
    strangers.push_back(std::make_unique<Peer>(
        ex.broker_endpoint(),
        Peer::Options{FreshKeys(), ex.broker_public_key(), std::nullopt, true}));
  }
  // Heartbeat round trips of the honest session while the strangers' lookups time out.
  int64_t worst_ms = 0;
  int round_trips = 0;
  const auto until = SteadyClock::now() + Millis(8000);
  while (SteadyClock::now() < until) {
    const int64_t sent = MonoMs();
    honest.Send(Heartbeat());
    auto hb = AwaitBroker(honest, wire::BrokerMessage::kHeartbeat, Millis(15000));
    REQUIRE(hb.has_value());
    worst_ms = std::max(worst_ms, MonoMs() - sent);
    ++round_trips;
    std::this_thread::sleep_for(Millis(100));
  }
  INFO("worst heartbeat round trip " << worst_ms << " ms over " << round_trips);
  CHECK(worst_ms < 1000);
  CHECK(round_trips >= 40);
  // A new connection with the cached key of A is admitted at once, registry or not.
  Peer again(ex.broker_endpoint(), Peer::Options{a, ex.broker_public_key(), std::nullopt, false});
  again.Send(HelloAs(kAgencyA, 4));
  CHECK(AwaitBroker(again, wire::BrokerMessage::kWelcome, Millis(2000)).has_value());
  // None of the strangers got anywhere.
  for (auto& s : strangers) CHECK(s->handshakes() == 0);
  CHECK(LogHas(ex.broker(), "cannot look up CURVE key"));
  ex.CheckAlive();
}

TEST_CASE("the registry refuses a CURVE key another organisation already holds",
          "[integration][hostile]") {
  ExchangeOptions options;
  options.agencies = {kAgencyA, kAgencyB, kAgencyC};
  options.start_ips = false;
  Exchange ex(options);
  const std::string config = ex.root() + "/registry/registry.toml";
  auto add = [&](const std::string& org, const std::string& curve_key) {
    const std::string keys = ex.AgencyDir(org) + "/keys";
    return RunCommand(
        {BUD_REGISTRY_BIN, "add", "--config", config, "--orgnr", org, "--name", "Agency " + org,
         "--signing-cert", keys + "/signing.pem", "--encryption-cert", keys + "/encryption.pem",
         "--broker", ex.broker_endpoint(), "--curve-public-key", curve_key, "--process", kProcess});
  };
  const std::string a_key = KeysOf(ex, kAgencyA).public_key;
  // C takes over A's key: refused, and C keeps its own.
  const CommandResult taken = add(kAgencyC, a_key);
  CHECK(taken.exit_code == 1);
  CHECK_THAT(taken.err, Catch::Contains("CURVE key " + a_key +
                                        " is already registered to organisation " + kAgencyA));
  const CommandResult list = RunCommand({BUD_REGISTRY_BIN, "list", "--config", config, "--json"});
  REQUIRE(list.exit_code == 0);
  const auto entries = nlohmann::json::parse(list.out);
  for (const auto& e : entries) {
    if (e.value("orgnr", "") == kAgencyC) {
      CHECK(e.value("curvePublicKey", "") == KeysOf(ex, kAgencyC).public_key);
    }
    if (e.value("orgnr", "") == kAgencyA) CHECK(e.value("curvePublicKey", "") == a_key);
  }
  // A updating its own entry with its own key is fine; C with a fresh key too.
  CHECK(add(kAgencyA, a_key).exit_code == 0);
  CHECK(add(kAgencyC, FreshKeys().public_key).exit_code == 0);
}

}  // namespace bud::test
