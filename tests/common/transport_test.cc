// The transport's defences in one process (common/wire): routing ids libzmq made vs chosen ones,
// closing one ROUTER connection (ConnectionWatch), and the cached ZAP handler on its own threads.
// Real ZeroMQ sockets over TCP on 127.0.0.1 with OS-chosen ports; every wait has a deadline.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/wire/connections.h"
#include "common/wire/curve.h"
#include "common/wire/zap.h"
#include "common/wire/zmq.h"

namespace bud::wire {
namespace {

using Millis = std::chrono::milliseconds;

// A DEALER with a monitor on its own connection. Never reconnects unless asked.
class Client {
 public:
  Client(zmq::context_t& ctx, const std::string& endpoint,
         const std::optional<CurveKeyPair>& keys = std::nullopt, const std::string& server_key = "",
         int reconnect_ivl = -1, bool connect_now = true)
      : sock_(ctx, zmq::socket_type::dealer),
        monitor_(ctx, zmq::socket_type::pair),
        endpoint_(endpoint) {
    static int n = 0;
    const std::string mon = "inproc://transport-test-monitor-" + std::to_string(n++);
    sock_.set(zmq::sockopt::linger, 0);
    sock_.set(zmq::sockopt::reconnect_ivl, reconnect_ivl);
    if (keys) MakeCurveClient(sock_, *keys, server_key);
    REQUIRE(zmq_socket_monitor(sock_.handle(), mon.c_str(),
                               ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) == 0);
    monitor_.set(zmq::sockopt::linger, 0);
    monitor_.connect(mon);
    if (connect_now) Connect();
  }
  void Connect() { sock_.connect(endpoint_); }
  ~Client() { (void)zmq_socket_monitor(sock_.handle(), nullptr, 0); }
  void Send(const std::string& s) { (void)sock_.send(zmq::buffer(s), zmq::send_flags::dontwait); }
  bool Disconnected() {
    Poll();
    return disconnected_;
  }
  bool HandshakeDone() {
    Poll();
    return handshaken_;
  }

 private:
  void Poll() {
    for (;;) {
      zmq::message_t head;
      if (!monitor_.recv(head, zmq::recv_flags::dontwait)) return;
      bool more = head.more();
      while (more) {
        zmq::message_t rest;
        if (!monitor_.recv(rest, zmq::recv_flags::none)) break;
        more = rest.more();
      }
      uint16_t event = 0;
      if (head.size() >= 2) std::memcpy(&event, head.data(), 2);
      if (event == ZMQ_EVENT_DISCONNECTED) disconnected_ = true;
      if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) handshaken_ = true;
    }
  }
  zmq::socket_t sock_;
  zmq::socket_t monitor_;
  std::string endpoint_;
  bool disconnected_ = false;
  bool handshaken_ = false;
};

// A received frame: [routing id, body] with the body's fd and User-Id.
struct Received {
  std::string rid;
  std::string body;
  int fd;
  std::string user;
};

// Serves `router` (and `watch`, when given) until `done` holds or `timeout` passes; every frame
// that arrives is handed to `on_frame`.
bool Serve(zmq::socket_t& router, ConnectionWatch* watch, Millis timeout,
           const std::function<void(const Received&)>& on_frame,
           const std::function<bool()>& done) {
  const int64_t deadline = MonoMs() + timeout.count();
  while (MonoMs() < deadline) {
    if (done()) return true;
    zmq::pollitem_t items[] = {{router.handle(), 0, ZMQ_POLLIN, 0},
                               {watch ? watch->socket().handle() : nullptr, 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, watch ? 2 : 1, Millis(20));
    if (watch) watch->HandleEvents();
    for (;;) {
      auto parts = RecvMultipart(router);
      if (!parts) break;
      if (parts->size() != 2) continue;
      on_frame({(*parts)[0].to_string(), (*parts)[1].to_string(), SourceFd((*parts)[1]),
                UserIdOf((*parts)[1])});
    }
    if (watch) watch->CloseOverdue();
  }
  return done();
}

CurveKeyPair Fresh() {
  auto [pub, sec] = NewCurveKeyPair();
  return {pub, sec};
}

TEST_CASE("libzmq's own routing ids are told apart from ids a peer chose", "[transport]") {
  CHECK(IsAutoRoutingId(std::string("\0\x6b\x8b\x45\x67", 5)));
  CHECK(IsAutoRoutingId(std::string(5, '\0')));
  CHECK_FALSE(IsAutoRoutingId("attacker"));
  CHECK_FALSE(IsAutoRoutingId(""));
  CHECK_FALSE(IsAutoRoutingId(std::string("\x01\x02\x03\x04\x05", 5)));
  CHECK_FALSE(IsAutoRoutingId(std::string(4, '\0')));
  CHECK_FALSE(IsAutoRoutingId(std::string(6, '\0')));
}

TEST_CASE("after seeding, a ROUTER's first routing id is not the unseeded 00 6b8b4567",
          "[transport]") {
  REQUIRE(SeedRoutingIds().ok());
  zmq::context_t ctx(1);
  zmq::socket_t router(ctx, zmq::socket_type::router);
  ConfigureSocket(router, /*router=*/true, 0);
  router.bind("tcp://127.0.0.1:*");
  Client c(ctx, router.get(zmq::sockopt::last_endpoint));
  c.Send("hello");
  std::string rid;
  REQUIRE(Serve(
      router, nullptr, Millis(5000), [&](const Received& r) { rid = r.rid; },
      [&] { return !rid.empty(); }));
  CHECK(IsAutoRoutingId(rid));
  CHECK(rid != std::string("\0\x6b\x8b\x45\x67", 5));
}

TEST_CASE("ConnectionWatch closes connections that do not greet in time, and on request",
          "[transport]") {
  zmq::context_t ctx(1);
  zmq::socket_t router(ctx, zmq::socket_type::router);
  ConfigureSocket(router, /*router=*/true, 0);
  ConnectionWatch watch(ctx, router, "test", /*deadline_ms=*/300);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);

  Client greeter(ctx, endpoint), silent(ctx, endpoint);
  greeter.Send("hello");
  int greeter_fd = -1;
  auto on_frame = [&](const Received& r) {
    if (r.body == "hello") {
      greeter_fd = r.fd;
      watch.Greeted(r.fd);
    }
  };
  REQUIRE(Serve(router, &watch, Millis(5000), on_frame, [&] { return silent.Disconnected(); }));
  CHECK(greeter_fd >= 0);
  // The greeter outlives several deadlines.
  Serve(router, &watch, Millis(1000), on_frame, [] { return false; });
  CHECK_FALSE(greeter.Disconnected());
  CHECK(watch.size() == 1);

  CHECK_FALSE(watch.Close(100000, "no such fd"));
  CHECK(watch.Close(greeter_fd, "test"));
  REQUIRE(Serve(router, &watch, Millis(5000), on_frame, [&] { return greeter.Disconnected(); }));
  Serve(router, &watch, Millis(200), on_frame, [] { return false; });
  CHECK(watch.size() == 0);
  // A closed fd is not closed again (it may belong to a new connection by now).
  CHECK_FALSE(watch.Close(greeter_fd, "again"));
}

TEST_CASE("ConnectionWatch::Expect on a connection that has gone never lands on a newer one",
          "[transport]") {
  zmq::context_t ctx(1);
  zmq::socket_t router(ctx, zmq::socket_type::router);
  ConfigureSocket(router, /*router=*/true, 0);
  ConnectionWatch watch(ctx, router, "test", /*deadline_ms=*/300);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  std::map<std::string, ConnRef> refs;
  auto on_frame = [&](const Received& r) { refs[r.body] = watch.Greeted(r.fd); };

  auto first = std::make_unique<Client>(ctx, endpoint);
  first->Send("first");
  REQUIRE(Serve(router, &watch, Millis(5000), on_frame, [&] { return refs.contains("first"); }));
  const ConnRef old = refs["first"];
  REQUIRE(old.id != 0);
  // The second client's sockets exist before the first connection ends, so the fds that end
  // frees are the first connection's two ends only: the second's connect takes the lower one
  // (the client end), its accept the other, which is the fd the first connection had.
  Client second(ctx, endpoint, std::nullopt, "", -1, /*connect_now=*/false);
  REQUIRE(watch.Close(old.fd, "test"));
  REQUIRE(Serve(router, &watch, Millis(5000), on_frame, [&] { return first->Disconnected(); }));
  Serve(router, &watch, Millis(100), on_frame, [] { return false; });
  second.Connect();
  second.Send("second");
  REQUIRE(Serve(router, &watch, Millis(5000), on_frame, [&] { return refs.contains("second"); }));
  const ConnRef now = refs["second"];
  CHECK(now.id != old.id);
  INFO("fds: first " << old.fd << ", second " << now.fd);
  REQUIRE(now.fd == old.fd);
  watch.Expect(old);  // e.g. the first one's session is dropped late
  Serve(router, &watch, Millis(1000), on_frame, [] { return false; });
  CHECK_FALSE(second.Disconnected());
  watch.Expect(now);
  CHECK(Serve(router, &watch, Millis(5000), on_frame, [&] { return second.Disconnected(); }));
}

TEST_CASE("the cached ZAP handler admits a known key while lookups of unknown keys hang",
          "[transport]") {
  zmq::context_t ctx(1);
  const CurveKeyPair server = Fresh(), known = Fresh();
  CachedZapHandler::Options options;
  options.positive_ttl_ms = 1500;
  options.max_pending = 3;
  CachedZapHandler zap(
      ctx,
      [&known](const std::string& key) {
        using V = CachedZapHandler::Verdict;
        if (key == known.public_key) return V{V::kAdmit, "0192:910076787", ""};
        std::this_thread::sleep_for(Millis(1500));  // a registry that does not answer
        return V{V::kUnavailable, "", "registry did not answer"};
      },
      options, "test");
  REQUIRE(zap.started().ok());
  zmq::socket_t router(ctx, zmq::socket_type::router);
  ConfigureSocket(router, /*router=*/true, 0);
  MakeCurveServer(router, server);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);

  std::vector<Received> got;
  auto collect = [&](const Received& r) { got.push_back(r); };
  auto first = std::make_unique<Client>(ctx, endpoint, known, server.public_key);
  first->Send("one");
  REQUIRE(Serve(router, nullptr, Millis(5000), collect, [&] { return got.size() == 1; }));
  CHECK(got[0].user == "0192:910076787");
  CHECK(zap.lookups() == 1);

  // Six strangers: their lookups hang 1.5 s each, one at a time; three may wait, the rest are
  // refused at once.
  std::vector<std::unique_ptr<Client>> strangers;
  for (int i = 0; i < 6; ++i) {
    strangers.push_back(std::make_unique<Client>(ctx, endpoint, Fresh(), server.public_key));
    strangers.back()->Send("stranger");
  }
  std::this_thread::sleep_for(Millis(200));
  // A second connection of the known key is answered from the cache, not behind the strangers.
  const int64_t start = MonoMs();
  Client second(ctx, endpoint, known, server.public_key);
  second.Send("two");
  REQUIRE(Serve(router, nullptr, Millis(5000), collect, [&] { return got.size() == 2; }));
  CHECK(MonoMs() - start < 1000);
  CHECK(got[1].body == "two");
  CHECK(got[1].user == "0192:910076787");

  // The strangers got nowhere; no more than max_pending of them were looked up.
  Serve(router, nullptr, Millis(3500), collect, [] { return false; });
  CHECK(got.size() == 2);
  for (auto& s : strangers) CHECK_FALSE(s->HandshakeDone());
  CHECK(zap.lookups() <= 1 + options.max_pending);

  // Admitted keys are cached for positive_ttl_ms only: after it, the key is looked up again.
  const uint64_t before = zap.lookups();
  std::this_thread::sleep_for(Millis(1600));
  Client third(ctx, endpoint, known, server.public_key);
  third.Send("three");
  REQUIRE(Serve(router, nullptr, Millis(5000), collect, [&] { return got.size() == 3; }));
  CHECK(zap.lookups() == before + 1);
}

TEST_CASE("the cached ZAP handler remembers unknown keys for a while, within its bound",
          "[transport]") {
  zmq::context_t ctx(1);
  const CurveKeyPair server = Fresh(), stranger = Fresh();
  CachedZapHandler::Options options;
  options.negative_ttl_ms = 60000;
  options.max_negative = 2;
  CachedZapHandler zap(
      ctx,
      [](const std::string&) {
        using V = CachedZapHandler::Verdict;
        return V{V::kUnknown, "", ""};
      },
      options, "test");
  REQUIRE(zap.started().ok());
  zmq::socket_t router(ctx, zmq::socket_type::router);
  ConfigureSocket(router, /*router=*/true, 0);
  MakeCurveServer(router, server);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  auto nothing = [](const Received&) { FAIL("a refused key got a frame through"); };

  auto refused_after = [&](const CurveKeyPair& keys, uint64_t lookups) {
    Client c(ctx, endpoint, keys, server.public_key);
    c.Send("x");
    Serve(router, nullptr, Millis(3000), nothing,
          [&] { return zap.lookups() >= lookups && c.Disconnected(); });
    CHECK(c.Disconnected());
    CHECK_FALSE(c.HandshakeDone());
  };
  refused_after(stranger, 1);
  CHECK(zap.lookups() == 1);
  refused_after(stranger, 1);  // from the negative cache
  CHECK(zap.lookups() == 1);
  // Two more unknown keys push the first one out of the (2 entries) cache...
  refused_after(Fresh(), 2);
  refused_after(Fresh(), 3);
  CHECK(zap.lookups() == 3);
  // ...so it is looked up again.
  refused_after(stranger, 4);
  CHECK(zap.lookups() == 4);
}

}  // namespace
}  // namespace bud::wire
