// The registry client (common/registry_client.h) against registries that answer, fall silent or
// fail: a list of endpoints tried in turn, the cache, and a cached entry served for stale_ms when
// no registry answers, never after a NOT_FOUND. Each registry here is a ROUTER on 127.0.0.1 with
// an OS-picked port, speaking the registry protocol on its own thread; whole bud-registry
// processes are in tests/integration/registry_ha_test.cc.
#include "common/registry_client.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/wire/zmq.h"

namespace bud {
namespace {

constexpr const char* kOrg = "910076787";

// Options without CURVE: the endpoints in order, and the three times in milliseconds.
RegistryClientOptions Options(std::vector<std::string> endpoints, int64_t timeout_ms,
                              int64_t cache_ms, int64_t stale_ms) {
  RegistryClientOptions o;
  o.endpoints = std::move(endpoints);
  o.timeout_ms = timeout_ms;
  o.cache_ms = cache_ms;
  o.stale_ms = stale_ms;
  return o;
}

// A registry on its own thread. `mode` says how it answers every request from now on.
class Registry {
 public:
  enum Mode { kOk, kNotFound, kInternal, kSilent };

  explicit Registry(zmq::context_t& ctx) : sock_(ctx, zmq::socket_type::router) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind("tcp://127.0.0.1:*");
    endpoint_ = sock_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] { Serve(); });
  }
  ~Registry() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }
  std::atomic<Mode> mode{kOk};
  std::atomic<int> asked{0};
  std::atomic<int> version{1};  // in the entry's name, to tell answers apart

 private:
  void Serve() {
    while (!stop_) {
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      auto parts = wire::RecvMultipart(sock_);
      if (!parts || parts->size() != 2) continue;
      ++asked;
      wire::RegistryRequest req;
      if (!wire::ParseProto((*parts)[1], req, "RegistryRequest").ok()) continue;
      const Mode m = mode.load();
      if (m == kSilent) continue;
      wire::RegistryReply reply;
      reply.set_protocol_version(wire::kProtocolVersion);
      reply.set_request_id(req.request_id());
      if (m == kOk) {
        reply.set_code(wire::OK);
        reply.mutable_entry()->set_orgnr(kOrg);
        reply.mutable_entry()->set_name("v" + std::to_string(version.load()));
      } else {
        reply.set_code(m == kNotFound ? wire::NOT_FOUND : wire::INTERNAL);
        reply.set_error(m == kNotFound ? "not registered" : "store error");
      }
      (void)wire::SendProto(sock_, reply, (*parts)[0].to_string());
    }
  }
  zmq::socket_t sock_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

Orgnr Org() { return *Orgnr::Parse(kOrg); }

void SleepMs(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

TEST_CASE("registry client: a silent first endpoint is left for the next, which then stays",
          "[registry-client]") {
  zmq::context_t ctx;
  Registry first(ctx), second(ctx);
  first.mode = Registry::kSilent;
  RegistryClient client(ctx, Options({first.endpoint(), second.endpoint()}, 200, 0, 0));
  auto e = client.Lookup(Org());
  REQUIRE(e.ok());
  CHECK(e->name() == "v1");
  CHECK(client.endpoint_moves() == 1);
  CHECK(client.current_endpoint() == second.endpoint());
  const int asked_first = first.asked.load();
  CHECK(asked_first == 1);
  // The next lookup goes straight to the endpoint that answered.
  REQUIRE(client.Lookup(Org()).ok());
  CHECK(first.asked.load() == asked_first);
  CHECK(client.endpoint_moves() == 1);
}

TEST_CASE("registry client: INTERNAL from one registry is asked of the next", "[registry-client]") {
  zmq::context_t ctx;
  Registry first(ctx), second(ctx);
  first.mode = Registry::kInternal;
  RegistryClient client(ctx, Options({first.endpoint(), second.endpoint()}, 500, 0, 0));
  REQUIRE(client.Lookup(Org()).ok());
  CHECK(client.current_endpoint() == second.endpoint());
}

TEST_CASE("registry client: no registry answering is kUnavailable naming every endpoint",
          "[registry-client]") {
  zmq::context_t ctx;
  Registry first(ctx), second(ctx);
  first.mode = Registry::kSilent;
  second.mode = Registry::kSilent;
  RegistryClient client(ctx, Options({first.endpoint(), second.endpoint()}, 150, 1000, 60000));
  const int64_t t0 = MonoMs();
  auto e = client.Lookup(Org());
  REQUIRE_FALSE(e.ok());  // nothing cached: nothing to serve stale
  CHECK(e.status().code() == Code::kUnavailable);
  CHECK(e.status().message().find(first.endpoint()) != std::string::npos);
  CHECK(e.status().message().find(second.endpoint()) != std::string::npos);
  CHECK(MonoMs() - t0 < 2000);  // one timeout per endpoint, not more
  CHECK(client.served_stale() == 0);
}

TEST_CASE("registry client: a cached entry is served stale for stale_ms when no registry answers",
          "[registry-client]") {
  zmq::context_t ctx;
  Registry first(ctx), second(ctx);
  RegistryClient client(ctx, Options({first.endpoint(), second.endpoint()}, 100, 300, 1500));
  bool stale = true;
  REQUIRE(client.Lookup(Org(), &stale).ok());
  CHECK_FALSE(stale);
  first.mode = Registry::kSilent;
  second.mode = Registry::kSilent;
  // Fresh: from the cache, nobody asked.
  const int asked = first.asked.load() + second.asked.load();
  REQUIRE(client.Lookup(Org(), &stale).ok());
  CHECK_FALSE(stale);
  CHECK(first.asked.load() + second.asked.load() == asked);
  // Past the cache time, within the stale time: both asked, neither answers, served stale.
  SleepMs(400);
  auto e = client.Lookup(Org(), &stale);
  REQUIRE(e.ok());
  CHECK(stale);
  CHECK(e->name() == "v1");
  CHECK(client.served_stale() == 1);
  CHECK(first.asked.load() + second.asked.load() > asked);
  // A registry answering again refreshes the entry: fresh, and the new content.
  second.version = 2;
  second.mode = Registry::kOk;
  e = client.Lookup(Org(), &stale);
  REQUIRE(e.ok());
  CHECK_FALSE(stale);
  CHECK(e->name() == "v2");
  // Everyone silent again, and the stale time runs out: unavailable.
  second.mode = Registry::kSilent;
  SleepMs(300 + 1500 + 100);
  e = client.Lookup(Org(), &stale);
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().code() == Code::kUnavailable);
  CHECK(client.served_stale() == 1);
}

TEST_CASE("registry client: NOT_FOUND ends a cached entry; it is never served stale after",
          "[registry-client]") {
  zmq::context_t ctx;
  Registry only(ctx);
  RegistryClient client(ctx, Options({only.endpoint()}, 100, 100, 60000));
  REQUIRE(client.Lookup(Org()).ok());
  only.mode = Registry::kNotFound;  // the organisation is removed
  SleepMs(150);
  auto e = client.Lookup(Org());
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().code() == Code::kNotFound);
  // The registry goes silent: the removed organisation stays unknown, not served from before.
  only.mode = Registry::kSilent;
  SleepMs(2100);  // past the 2 s a NOT_FOUND is cached
  e = client.Lookup(Org());
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().code() == Code::kUnavailable);
  CHECK(client.served_stale() == 0);
}

TEST_CASE("registry client: stale_ms 0 serves nothing past the cache time", "[registry-client]") {
  zmq::context_t ctx;
  Registry only(ctx);
  RegistryClient client(ctx, only.endpoint(), /*timeout_ms=*/100, /*cache_ms=*/100);
  REQUIRE(client.Lookup(Org()).ok());
  only.mode = Registry::kSilent;
  SleepMs(150);
  auto e = client.Lookup(Org());
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().code() == Code::kUnavailable);
}

TEST_CASE("registry client: an entry's broker endpoints, old entries included",
          "[registry-client]") {
  wire::RegistryEntry e;
  CHECK(BrokerEndpointsOf(e).empty());
  e.set_broker_endpoint("tcp://old:7700");
  CHECK(BrokerEndpointsOf(e) == std::vector<std::string>{"tcp://old:7700"});
  e.add_broker_endpoints("tcp://b1:7700");
  e.add_broker_endpoints("tcp://b2:7700");
  CHECK(BrokerEndpointsOf(e) == std::vector<std::string>{"tcp://b1:7700", "tcp://b2:7700"});
}

}  // namespace
}  // namespace bud
