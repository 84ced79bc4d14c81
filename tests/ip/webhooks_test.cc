// Webhooks (docs/http-api.md, "Webhooks"): /api/subscriptions over HTTP on an OS-picked loopback
// port, the pusher on its own threads and store connection, and subscribers that are real HTTP
// servers in the test (127.0.0.1, OS-picked ports) which answer, fail or hang as told. Statuses
// are written to the store as the engine writes them; the subscribers must get a ping, then one
// event per status, in order, none lost and none twice (the `eventId` would tell).
#include <httplib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/http_server.h"
#include "common/storage/sqlite.h"
#include "common/uuid.h"
#include "integration-point/api/routes.h"
#include "integration-point/webhooks/url_pusher.h"
#include "integration-point/webhooks/webhook_filter.h"
#include "integration-point/webhooks/webhook_pusher.h"
#include "tests/ip/api_fixture.h"

namespace bud::ip::api::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// A webhook receiver: an httplib::Server on 127.0.0.1 with an OS-picked port, in a thread of its
// own. It answers `fail_next` requests with 500, holds each request while `hang` is set (until
// released), and keeps every body it answered 200 to.
class Receiver {
 public:
  Receiver() {
    server_.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      std::unique_lock lock(mu_);
      ++requests_;
      cv_.wait(lock, [this] { return !hang_ || released_; });
      if (fail_next_ > 0) {
        --fail_next_;
        res.status = 500;
        return;
      }
      bodies_.push_back(json::parse(req.body));
      cv_.notify_all();
      res.status = 200;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~Receiver() {
    Release();
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  void FailNext(int n) {
    std::lock_guard lock(mu_);
    fail_next_ = n;
  }
  void Hang() {
    std::lock_guard lock(mu_);
    hang_ = true;
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  int requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  // The status events received (pings left out), once there are `n` (or after `wait`).
  std::vector<json> Events(size_t n, std::chrono::milliseconds wait = 15s) {
    std::unique_lock lock(mu_);
    auto count = [this] {
      size_t k = 0;
      for (const auto& b : bodies_) k += b["event"] == "status";
      return k;
    };
    cv_.wait_for(lock, wait, [&] { return count() >= n; });
    std::vector<json> out;
    for (const auto& b : bodies_) {
      if (b["event"] == "status") out.push_back(b);
    }
    return out;
  }
  std::vector<json> Pings() {
    std::lock_guard lock(mu_);
    std::vector<json> out;
    for (const auto& b : bodies_) {
      if (b["event"] == "ping") out.push_back(b);
    }
    return out;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  int fail_next_ = 0;
  bool hang_ = false;
  bool released_ = false;
  int requests_ = 0;
  std::vector<json> bodies_;
};

// Waits up to 10 s for `done` (a counter is bumped after the subscriber's answer arrives).
template <typename F>
bool WaitFor(F done) {
  for (int i = 0; i < 1000 && !done(); ++i) std::this_thread::sleep_for(10ms);
  return done();
}

webhooks::WebhookOptions FastOptions() {
  webhooks::WebhookOptions o;
  o.connect_timeout_ms = 500;
  o.read_timeout_ms = 500;
  o.poll_ms = 20;
  o.backoff_ms = 50;
  o.backoff_max_ms = 200;
  return o;
}

// The API fixture served over HTTP with the subscription routes, and the pusher running.
struct Hooked : ApiFixture {
  webhooks::WebhookOptions options = FastOptions();
  webhooks::WebhookMetrics metrics;
  std::unique_ptr<webhooks::WebhookPusher> pusher;
  std::unique_ptr<Subscriptions> subs;
  std::unique_ptr<HttpServer> server;
  std::unique_ptr<httplib::Client> client;

  Hooked() {
    queries->set_webhook_metrics(&metrics);
    StartPusher();
    subs = std::make_unique<Subscriptions>(
        *store,
        [this](const std::string& url) { webhooks::PingEndpoint(url, options, metrics, NowMs()); },
        [this] {
          if (pusher) pusher->Wake();
        },
        3, [] { return NowMs(); });
    HttpOptions o;
    o.listen = "127.0.0.1:0";
    o.threads = 4;
    auto started = HttpServer::Start(o, [this](httplib::Server& srv) {
      AddStatusRoutes(srv, *queries);
      AddSubscriptionRoutes(srv, *subs);
    });
    if (!started.ok()) throw std::runtime_error(started.status().ToString());
    server = std::move(*started);
    client = std::make_unique<httplib::Client>("http://" + server->address());
    client->set_read_timeout(10s);
  }
  ~Hooked() {
    server.reset();
    pusher.reset();
  }
  void StartPusher() {
    pusher = std::make_unique<webhooks::WebhookPusher>(config.store, options, metrics,
                                                       [] { return NowMs(); });
    REQUIRE(pusher->Start().ok());
  }

  int64_t Subscribe(const std::string& url, const std::string& name = "all",
                    const std::string& filter = "") {
    json body = {{"name", name}, {"pushEndpoint", url}, {"resource", "all"}, {"event", "all"}};
    if (!filter.empty()) body["filter"] = filter;
    auto r = client->Post("/api/subscriptions", body.dump(), "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return json::parse(r->body)["id"].get<int64_t>();
  }

  // An outgoing message taken in (OPPRETTET), then `then` applied in order, as the engine does.
  std::string Message(const std::vector<MsgStatus>& then) {
    MessageRow m;
    m.message_id = NewUuid();
    m.conversation_id = NewUuid();
    m.sender = std::string("0192:") + kMe;
    m.receiver = std::string("0192:") + kReceiver;
    m.process = kProcess;
    m.document_type = kStandard;
    m.created_ms = NowMs();
    m.expires_ms = m.created_ms + 3600 * 1000;
    m.payload = "payload";
    m.state = WorkState::kNew;
    REQUIRE(store->Run([&](PointStore& s) { return s.outgoing.CreateOutgoing(m); }).ok());
    for (MsgStatus st : then) {
      REQUIRE(store
                  ->Run([&](PointStore& s) {
                    return s.outgoing.ApplyStatus(m.message_id, st, "", NowMs());
                  })
                  .ok());
    }
    return m.message_id;
  }
};

std::vector<std::string> StatusesOf(const std::vector<json>& events, const std::string& id) {
  std::vector<std::string> out;
  for (const auto& e : events) {
    if (e["messageId"] == id) out.push_back(e["status"]);
  }
  return out;
}

// Every eventId once, increasing (the history's order).
void CheckNoneTwiceInOrder(const std::vector<json>& events) {
  for (size_t i = 1; i < events.size(); ++i) {
    CHECK(events[i]["eventId"].get<int64_t>() > events[i - 1]["eventId"].get<int64_t>());
  }
}

TEST_CASE("webhooks: a subscription gets a ping, then one event per status in order",
          "[ip][webhooks]") {
  Hooked h;
  Receiver r;
  const int64_t id = h.Subscribe(r.url());
  auto pings = r.Pings();
  REQUIRE(pings.size() == 1);  // sent before the create answered
  CHECK(pings[0]["event"] == "ping");
  CHECK(pings[0]["createdTs"].is_string());
  CHECK_FALSE(pings[0].contains("resource"));

  const std::string msg = h.Message({wire::SENDT, wire::MOTTATT, wire::LEVERT});
  auto events = r.Events(4);
  REQUIRE(events.size() == 4);
  CHECK(StatusesOf(events, msg) ==
        std::vector<std::string>{"OPPRETTET", "SENDT", "MOTTATT", "LEVERT"});
  CheckNoneTwiceInOrder(events);
  const json& e = events[1];
  CHECK(e["resource"] == "messages");
  CHECK(e["event"] == "status");
  CHECK(e["direction"] == "OUTGOING");
  CHECK(e["serviceIdentifier"] == "DPO");
  CHECK(e["conversationId"].get<std::string>().size() == 36);
  CHECK(e["description"].is_string());
  CHECK(e["createdTs"].get<std::string>().find('+') != std::string::npos);
  CHECK(WaitFor([&] { return h.metrics.pushed == 4; }));
  CHECK(h.metrics.failed == 0);
  CHECK(h.metrics.pings_ok == 1);
  // The metrics page counts them.
  auto m = h.client->Get("/metrics");
  REQUIRE(m);
  CHECK_THAT(m->body, Catch::Contains("bud_ip_webhook_pushes_total{result=\"ok\"} 4"));
  // The subscription as eFormidling shows it.
  auto got = h.client->Get("/api/subscriptions/" + std::to_string(id));
  REQUIRE(got);
  CHECK(got->status == 200);
  CHECK(json::parse(got->body) == json{{"id", id},
                                       {"name", "all"},
                                       {"pushEndpoint", r.url()},
                                       {"resource", "all"},
                                       {"event", "all"}});
  auto list = h.client->Get("/api/subscriptions?size=1");
  REQUIRE(list);
  json page = json::parse(list->body);
  CHECK(page["totalElements"] == 1);
  CHECK(page["content"][0]["id"] == id);
  CHECK(page["pageable"]["pageSize"] == 1);
  // No more than one each: nothing comes later.
  std::this_thread::sleep_for(200ms);
  CHECK(r.Events(4).size() == 4);
}

TEST_CASE("webhooks: a receiver that answers 500 twice gets every event after the retries",
          "[ip][webhooks]") {
  Hooked h;
  Receiver r;
  h.Subscribe(r.url());
  r.FailNext(2);
  const std::string a = h.Message({wire::SENDT, wire::MOTTATT});
  const std::string b = h.Message({wire::SENDT, wire::FEIL});
  auto events = r.Events(6);
  REQUIRE(events.size() == 6);
  CHECK(StatusesOf(events, a) == std::vector<std::string>{"OPPRETTET", "SENDT", "MOTTATT"});
  CHECK(StatusesOf(events, b) == std::vector<std::string>{"OPPRETTET", "SENDT", "FEIL"});
  CheckNoneTwiceInOrder(events);
  CHECK(WaitFor([&] { return h.metrics.pushed == 6; }));
  CHECK(h.metrics.failed == 2);
  CHECK(h.metrics.failing == 0);
  std::this_thread::sleep_for(200ms);
  CHECK(r.Events(6).size() == 6);
}

TEST_CASE("webhooks: events not yet pushed when the point stops are pushed after its restart",
          "[ip][webhooks]") {
  Hooked h;
  Receiver r;
  h.Subscribe(r.url());
  r.FailNext(1000000);  // down
  const std::string a = h.Message({wire::SENDT, wire::MOTTATT});
  CHECK(WaitFor([&] { return h.metrics.failed >= 2; }));
  CHECK(h.metrics.failing == 1);
  h.pusher.reset();  // the point stops
  r.FailNext(0);     // the subscriber is back
  h.StartPusher();   // and the point starts again
  auto events = r.Events(3);
  CHECK(StatusesOf(events, a) == std::vector<std::string>{"OPPRETTET", "SENDT", "MOTTATT"});
  CheckNoneTwiceInOrder(events);
}

TEST_CASE("webhooks: a subscriber that hangs does not hold up the others", "[ip][webhooks]") {
  Hooked h;
  h.pusher.reset();
  h.options.read_timeout_ms = 2000;  // each push to the hanging one waits this long
  h.StartPusher();
  Receiver hanging, quick;
  hanging.Hang();
  const auto t0 = std::chrono::steady_clock::now();
  h.Subscribe(hanging.url(), "hangs");  // its ping times out (read_timeout_ms); created anyway
  CHECK(std::chrono::steady_clock::now() - t0 < 6s);
  CHECK(h.metrics.pings_failed == 1);
  h.Subscribe(quick.url(), "quick");
  const std::string a = h.Message({wire::SENDT, wire::MOTTATT, wire::LEVERT});
  const auto t1 = std::chrono::steady_clock::now();
  auto events = quick.Events(4, 10s);
  CHECK(StatusesOf(events, a) ==
        std::vector<std::string>{"OPPRETTET", "SENDT", "MOTTATT", "LEVERT"});
  // All four while the first push to the other still waits out its 2 s (a shared thread would
  // have taken 2 s per event).
  CHECK(std::chrono::steady_clock::now() - t1 < 3s);
  CHECK(WaitFor([&] { return h.metrics.failed >= 1; }));  // the hanging one's push timed out
  CHECK(hanging.Events(1, 0ms).empty());
  CHECK(hanging.requests() >= 2);  // the ping and a push
  // Deleting it stops its pushes, the one in flight too, at once.
  const auto t2 = std::chrono::steady_clock::now();
  auto gone = h.client->Delete("/api/subscriptions/1");
  REQUIRE(gone);
  CHECK(gone->status == 200);
  h.pusher.reset();  // joins every subscription's thread
  CHECK(std::chrono::steady_clock::now() - t2 < 1500ms);
}

TEST_CASE("webhooks: a filter passes only the statuses and directions it names", "[ip][webhooks]") {
  Hooked h;
  Receiver r;
  h.Subscribe(r.url(), "done", "status=levert,FEIL&direction=OUTGOING&serviceIdentifier=DPO");
  const std::string a = h.Message({wire::SENDT, wire::MOTTATT, wire::LEVERT});
  const std::string b = h.Message({wire::FEIL});
  auto events = r.Events(2);
  REQUIRE(events.size() == 2);
  CHECK(StatusesOf(events, a) == std::vector<std::string>{"LEVERT"});
  CHECK(StatusesOf(events, b) == std::vector<std::string>{"FEIL"});
  CHECK(WaitFor([&] { return h.metrics.pushed == 2; }));
}

TEST_CASE("webhooks: subscriptions are refused, found and changed as eFormidling's",
          "[ip][webhooks]") {
  Hooked h;
  Receiver r;
  auto post = [&](const json& body) {
    auto res = h.client->Post("/api/subscriptions", body.dump(), "application/json");
    REQUIRE(res);
    return res;
  };
  json good = {
      {"name", "n"}, {"pushEndpoint", r.url()}, {"resource", "messages"}, {"event", "status"}};
  for (const char* bad :
       {"ftp://127.0.0.1/x", "not a url", "http://", "http://a b/", "http://user:pw@127.0.0.1/",
        "http://127.0.0.1:99999/", "file:///etc/passwd"}) {
    json body = good;
    body["pushEndpoint"] = bad;
    auto res = post(body);
    INFO(bad);
    CHECK(res->status == 400);
    json err = json::parse(res->body);
    CHECK(err["exception"] == "org.springframework.web.bind.MethodArgumentNotValidException");
    CHECK(err["errors"][0]["field"] == "pushEndpoint");
  }
  json missing = good;
  missing.erase("pushEndpoint");
  auto no_endpoint = post(missing);
  CHECK(no_endpoint->status == 400);
  CHECK(json::parse(no_endpoint->body)["errors"][0]["code"] == "NotNull");
  json wrong = good;
  wrong["resource"] = "everything";
  wrong["filter"] = "colour=red";
  auto two = post(wrong);
  CHECK(two->status == 400);
  CHECK(json::parse(two->body)["errors"].size() == 2);
  json with_id = good;
  with_id["id"] = 7;
  CHECK(post(with_id)->status == 400);
  auto garbage = h.client->Post("/api/subscriptions", "{not json", "application/json");
  REQUIRE(garbage);
  CHECK(garbage->status == 400);
  CHECK(json::parse(garbage->body)["exception"] ==
        "org.springframework.http.converter.HttpMessageNotReadableException");
  auto deep = h.client->Post("/api/subscriptions", "{\"id\": " + std::string(100000, '[') + "}",
                             "application/json");
  REQUIRE(deep);
  CHECK(deep->status == 400);
  CHECK(r.Pings().empty());  // nothing refused was pinged

  auto made = post(good);
  CHECK(made->status == 200);
  const int64_t id = json::parse(made->body)["id"];
  auto again = post(good);
  CHECK(again->status == 400);
  CHECK(json::parse(again->body)["exception"] ==
        "no.difi.meldingsutveksling.exceptions."
        "SubscriptionWithSameNameAndPushEndpointAlreadyExists");

  auto not_found = [](const httplib::Result& res) {
    REQUIRE(res);
    CHECK(res->status == 404);
    CHECK(json::parse(res->body)["exception"] ==
          "no.difi.meldingsutveksling.exceptions.SubscriptionNotFoundException");
  };
  not_found(h.client->Get("/api/subscriptions/999"));
  not_found(h.client->Put("/api/subscriptions/999", good.dump(), "application/json"));
  not_found(h.client->Delete("/api/subscriptions/999"));
  auto not_number = h.client->Get("/api/subscriptions/abc");
  REQUIRE(not_number);
  CHECK(not_number->status == 400);

  // PUT changes what it names; a new endpoint is pinged.
  Receiver other;
  auto put = h.client->Put("/api/subscriptions/" + std::to_string(id),
                           json{{"pushEndpoint", other.url()}, {"filter", "status=FEIL"}}.dump(),
                           "application/json");
  REQUIRE(put);
  CHECK(put->status == 200);
  CHECK(other.Pings().size() == 1);
  auto got = json::parse(h.client->Get("/api/subscriptions/" + std::to_string(id))->body);
  CHECK(got["pushEndpoint"] == other.url());
  CHECK(got["filter"] == "status=FEIL");
  CHECK(got["name"] == "n");
  auto bad_put = h.client->Put("/api/subscriptions/" + std::to_string(id),
                               json{{"event", "everything"}}.dump(), "application/json");
  REQUIRE(bad_put);
  CHECK(bad_put->status == 400);

  // At most max_subscriptions (3 here).
  for (const char* n : {"b", "c"}) {
    json more = good;
    more["name"] = n;
    CHECK(post(more)->status == 200);
  }
  json fourth = good;
  fourth["name"] = "d";
  CHECK(post(fourth)->status == 400);

  auto del = h.client->Delete("/api/subscriptions/" + std::to_string(id));
  REQUIRE(del);
  CHECK(del->status == 200);
  CHECK(h.client->Get("/api/subscriptions/" + std::to_string(id))->status == 404);
  auto all = h.client->Delete("/api/subscriptions");
  REQUIRE(all);
  CHECK(all->status == 200);
  CHECK(json::parse(h.client->Get("/api/subscriptions")->body)["totalElements"] == 0);
}

TEST_CASE("webhooks: push URLs and filters are read strictly", "[ip][webhooks]") {
  using webhooks::ParsePushUrl;
  auto u = ParsePushUrl("HTTPS://Example.org:8443/a/b?x=1#frag").value();
  CHECK(u.origin == "https://Example.org:8443");
  CHECK(u.path == "/a/b?x=1");
  CHECK(ParsePushUrl("http://[::1]:9000").value().path == "/");
  CHECK(ParsePushUrl("http://[::1]:9000").value().origin == "http://[::1]:9000");
  for (const char* bad : {"", "//x", "gopher://x/", "http://x:0/", "http://x:/", "http://[::1/",
                          "http://x\n/", "http://ex ample/", "http://x:8a/"}) {
    INFO(bad);
    CHECK_FALSE(ParsePushUrl(bad).ok());
  }
  auto parts = webhooks::ParseFilter("status=FEIL,LEVETID_UTLOPT&direction=INCOMING&").value();
  REQUIRE(parts.size() == 2);
  CHECK(parts[0].values.size() == 2);
  CHECK(webhooks::ParseFilter("").value().empty());
  for (const char* bad :
       {"status", "status=", "=FEIL", "status!=FEIL", "colour=red", "&status=x"}) {
    INFO(bad);
    CHECK_FALSE(webhooks::ParseFilter(bad).ok());
  }
  StatusEventRow e;
  e.status = "LEVETID_UTLOPT";
  e.direction = Direction::kIn;
  CHECK(webhooks::Matches(parts, e));
  e.direction = Direction::kOut;
  CHECK_FALSE(webhooks::Matches(parts, e));
}

TEST_CASE("webhooks: an event its subscriber never takes is dropped after give_up_after_ms",
          "[ip][webhooks]") {
  Hooked h;
  h.pusher.reset();
  h.options.give_up_after_ms = 300;
  h.StartPusher();
  Receiver r;
  h.Subscribe(r.url());
  r.FailNext(1000000);  // down for good
  const std::string a = h.Message({wire::SENDT});
  CHECK(WaitFor([&] { return h.metrics.dropped == 2; }));
  CHECK(h.metrics.failed >= 1);
  r.FailNext(0);  // back: the next status is pushed, the dropped ones are not
  REQUIRE(h.store
              ->Run([&](PointStore& s) {
                return s.outgoing.ApplyStatus(a, wire::MOTTATT, "", NowMs());
              })
              .ok());
  auto events = r.Events(1);
  CHECK(StatusesOf(events, a) == std::vector<std::string>{"MOTTATT"});
  CHECK(WaitFor([&] { return h.metrics.failing == 0; }));
}

TEST_CASE("webhooks: [webhooks] in the config is read and checked", "[ip][webhooks]") {
  bud::test::TempDir dir;
  const std::string base = R"([agency]
orgnr = "910076787"
[paths]
outbox = "o"
inbox = "i"
store = "s.db"
[keys]
signing_key = "k"
signing_cert = "c"
encryption_key = "k"
encryption_cert = "c"
trust_anchor = "ca"
[registry]
endpoint = "tcp://127.0.0.1:1"
[broker]
endpoint = "tcp://127.0.0.1:2"
)";
  auto load = [&](const std::string& extra) {
    const std::string path = dir / "ip.toml";
    FILE* f = fopen(path.c_str(), "w");
    fputs((base + extra).c_str(), f);
    fclose(f);
    return Config::Load(path);
  };
  auto defaults = load("");
  REQUIRE(defaults.ok());
  CHECK(defaults->webhooks.read_timeout_ms == 10000);
  CHECK(defaults->webhooks.give_up_after_ms == 86400000);
  auto set = load(
      "[webhooks]\nconnect_timeout_ms = 2000\nread_timeout_ms = 3000\n"
      "backoff_ms = 500\nbackoff_max_ms = 5000\nmax_subscriptions = 5\n");
  REQUIRE(set.ok());
  CHECK(set->webhooks.connect_timeout_ms == 2000);
  CHECK(set->webhooks.read_timeout_ms == 3000);
  CHECK(set->webhooks.backoff_max_ms == 5000);
  CHECK(set->webhooks.max_subscriptions == 5);
  for (const char* bad : {"[webhooks]\nread_timeout_ms = 0\n",
                          "[webhooks]\nbackoff_ms = 5000\nbackoff_max_ms = 100\n",
                          "[webhooks]\ngive_up_after_ms = 10\n", "[webhooks]\nretries = 3\n"}) {
    INFO(bad);
    CHECK_FALSE(load(bad).ok());
  }
}

TEST_CASE("store: version 6 migrates on with no subscriptions, whose cursor starts at the end",
          "[ip][store][webhooks]") {
  bud::test::TempDir dir;
  const std::string path = dir / "ip.db";
  {
    auto store = PointStore::Open(path).value();
    MessageRow m;
    m.message_id = NewUuid();
    m.conversation_id = NewUuid();
    m.sender = "0192:910076787";
    m.receiver = "0192:910075918";
    m.process = "p";
    m.document_type = "d";
    m.created_ms = NowMs();
    m.expires_ms = m.created_ms + 1000;
    m.state = WorkState::kNew;
    REQUIRE(store->outgoing.CreateOutgoing(m).ok());
  }
  {
    // Back to version 6 as that release left it (v9's columns gone too).
    auto db = storage::Db::Open(path).value();
    REQUIRE(db->Exec("DROP TABLE subscriptions; ALTER TABLE refusals DROP COLUMN message_id; "
                     "DROP TRIGGER history_enters_status_queue; "
                     "ALTER TABLE messages DROP COLUMN deleted_ms; "
                     "ALTER TABLE messages DROP COLUMN message_reference; "
                     "ALTER TABLE messages DROP COLUMN sender_channel; "
                     "CREATE TRIGGER history_enters_status_queue AFTER INSERT ON history BEGIN "
                     "INSERT INTO status_queue(history_id) VALUES (new.id); END; "
                     "PRAGMA user_version=6;")
                .ok());
  }
  auto store = PointStore::Open(path).value();
  CHECK(store->subscriptions.Count().value() == 0);
  SubscriptionRow s;
  s.name = "n";
  s.push_endpoint = "http://127.0.0.1/";
  s.resource = "all";
  s.event = "all";
  const int64_t id = store->subscriptions.Create(s, NowMs()).value();
  CHECK(store->subscriptions.Backlog(id).value() == 0);  // the OPPRETTET before it is not its
  CHECK(store->subscriptions.EventsAfter(0, 10).value().size() == 1);
  // v8: refusals name the message id of an API request.
  RefusalRow r;
  r.source = "api";
  r.name = "POST /api/messages/out";
  r.message_id = "ABC";
  r.reason = "400: x";
  r.reason_class = RefusalClass::kApi;
  REQUIRE(store->refusals.Record(r).ok());
  CHECK(store->refusals.ResolveApi("abc", NowMs()).value() == 1);
}

}  // namespace
}  // namespace bud::ip::api::test
