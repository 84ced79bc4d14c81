// Webhooks end to end: two real integration points with their HTTP API, a message sent through
// the outbox folder, and subscribers that are HTTP servers in this test (127.0.0.1, OS-picked
// ports). The statuses the engines record reach the subscribers in order, once each, also when
// the subscriber is down across a restart of the point.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/uuid.h"
#include "tests/integration/harness.h"

namespace bud::test {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

// A subscriber: answers 500 while `down`, else keeps the body and answers 200.
class Subscriber {
 public:
  Subscriber() {
    server_.Post("/events", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu_);
      if (down_) {
        res.status = 500;
        return;
      }
      bodies_.push_back(json::parse(req.body));
      cv_.notify_all();
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~Subscriber() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/events"; }
  void SetDown(bool down) {
    std::lock_guard lock(mu_);
    down_ = down;
  }
  // The statuses of message `id` received so far, once there are `n` (or after 60 s).
  Strings StatusesOf(const std::string& id, size_t n) {
    std::unique_lock lock(mu_);
    Strings out;
    cv_.wait_for(lock, std::chrono::seconds(60), [&] {
      out.clear();
      for (const auto& b : bodies_) {
        if (b["event"] == "status" && b["messageId"] == id) out.push_back(b["status"]);
      }
      return out.size() >= n;
    });
    return out;
  }
  std::vector<json> Bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool down_ = false;
  std::vector<json> bodies_;
};

void Subscribe(const std::string& base, const json& body) {
  httplib::Client c(base);
  c.set_read_timeout(30);
  auto r = c.Post("/api/subscriptions", body.dump(), "application/json");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 200);
}

TEST_CASE("webhooks: each point's subscriber gets its statuses in order, across a restart",
          "[integration][http][webhooks]") {
  ExchangeOptions o;
  o.http = true;
  o.ip_settings = {{"webhooks.poll_ms", "50"},
                   {"webhooks.backoff_ms", "100"},
                   {"webhooks.backoff_max_ms", "500"}};
  Exchange ex(o);
  Subscriber at_a, at_b;
  Subscribe(
      ex.HttpBase(kAgencyA),
      {{"name", "archive A"}, {"pushEndpoint", at_a.url()}, {"resource", "all"}, {"event", "all"}});
  Subscribe(ex.HttpBase(kAgencyB), {{"name", "archive B"},
                                    {"pushEndpoint", at_b.url()},
                                    {"resource", "messages"},
                                    {"event", "status"},
                                    {"filter", "direction=INCOMING"}});
  REQUIRE(at_a.Bodies().size() == 1);  // the ping
  CHECK(at_a.Bodies()[0]["event"] == "ping");

  // A's subscriber is down while A sends and restarts: its events wait in A's store.
  at_a.SetDown(true);
  const std::string id = NewUuid();
  json meta = Exchange::Metadata(kAgencyB);
  meta["messageId"] = id;
  ex.DropFolder(kAgencyA, "case-1", meta.dump(), {{"brev.txt", "Hei\n"}});
  ex.WaitForInbox(kAgencyB, id);
  ex.WaitForStatus(kAgencyA, id, "MOTTATT");
  ex.ip(kAgencyA).Restart();
  at_a.SetDown(false);
  std::filesystem::remove_all(ex.Inbox(kAgencyB) + "/" + id);  // the archive takes it: LEVERT
  CHECK(at_a.StatusesOf(id, 4) == Strings{"OPPRETTET", "SENDT", "MOTTATT", "LEVERT"});
  Strings at_b_statuses = at_b.StatusesOf(id, 1);
  REQUIRE_FALSE(at_b_statuses.empty());
  CHECK(at_b_statuses[0] == "INNKOMMENDE_MOTTATT");
  for (const auto& b : at_b.Bodies()) {
    if (b["event"] == "status") CHECK(b["direction"] == "INCOMING");
  }
  // Nothing twice: the eventIds of A's events are all different.
  std::set<int64_t> ids;
  size_t events = 0;
  for (const auto& b : at_a.Bodies()) {
    if (b["event"] != "status") continue;
    ++events;
    ids.insert(b["eventId"].get<int64_t>());
  }
  CHECK(ids.size() == events);
}

}  // namespace
}  // namespace bud::test
