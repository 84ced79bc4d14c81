// See status_queries.h.
#include "integration-point/api/status_queries.h"

#include <fmt/format.h>

#include <cstdlib>

#include "common/clock.h"
#include "common/crypto/certs.h"
#include "common/fs.h"
#include "integration-point/api/json_shapes.h"
#include "integration-point/sbd.h"

namespace bud::ip::api {

namespace {
using nlohmann::json;

template <typename T, typename F>
json PageOf(const Paged<T>& rows, int64_t page, int64_t size, F to_json) {
  json content = json::array();
  for (const auto& item : rows.items) content.push_back(to_json(item));
  return PageJson(std::move(content), rows.total, page, size);
}
}  // namespace

StatusQueries::StatusQueries(Orgnr me, const EngineMetrics& metrics, SharedStore& store,
                             RegistryLookup& registry,
                             std::vector<std::pair<std::string, crypto::Cert>> certs)
    : me_(std::move(me)),
      metrics_(metrics),
      store_(store),
      registry_(registry),
      certs_(std::move(certs)) {}

json StatusQueries::ConversationOf(PointStore& s, const MessageRow& m) {
  auto history = s.history.History(m.message_id, m.direction);
  auto transfer = s.history.Transfer(m.message_id, m.direction);
  return ConversationJson(m, history.ok() ? *history : std::vector<HistoryRow>(),
                          transfer.ok() ? *transfer : std::nullopt);
}

Result<json> StatusQueries::Statuses(const StatusQuery& q, int64_t page) {
  return store_.Run([&](PointStore& s) -> Result<json> {
    BUD_ASSIGN_OR_RETURN(auto rows, s.history.Statuses(q));
    return PageOf(rows, page, q.limit, StatusJson);
  });
}

Result<json> StatusQueries::Conversations(const ConversationQuery& q, int64_t page) {
  return store_.Run([&](PointStore& s) -> Result<json> {
    BUD_ASSIGN_OR_RETURN(auto rows, s.history.Conversations(q));
    return PageOf(rows, page, q.limit, [&](const MessageRow& m) { return ConversationOf(s, m); });
  });
}

Result<json> StatusQueries::Messages(const ConversationQuery& q, int64_t page) {
  return store_.Run([&](PointStore& s) -> Result<json> {
    BUD_ASSIGN_OR_RETURN(auto rows, s.history.Conversations(q));
    return PageOf(rows, page, q.limit, [&](const MessageRow& m) {
      if (q.direction != Direction::kIn) return SbdOf(m, "");
      auto full = s.incoming.Get(m.message_id);
      return IncomingSbdJson(m, full.ok() && *full ? (*full)->payload : std::string());
    });
  });
}

Result<std::optional<json>> StatusQueries::PeekStatus() {
  return store_.Run([&](PointStore& s) -> Result<std::optional<json>> {
    BUD_ASSIGN_OR_RETURN(auto item, s.status_queue.Peek());
    if (!item) return std::optional<json>();
    return std::optional<json>(StatusJson(*item));
  });
}

Status StatusQueries::RemoveStatus(const std::string& id) {
  char* end = nullptr;
  const long long n = std::strtoll(id.c_str(), &end, 10);
  if (id.empty() || id.size() > 18 || end != id.c_str() + id.size() || n <= 0) {
    return Status(Code::kNotFound, fmt::format("status {} is not on the status queue",
                                               EscapeControl(id.substr(0, 40))));
  }
  return store_.Run([&](PointStore& s) { return s.status_queue.Remove(n); });
}

Result<json> StatusQueries::Conversation(ConversationQuery q, const std::string& what) {
  q.limit = 2;
  return store_.Run([&](PointStore& s) -> Result<json> {
    BUD_ASSIGN_OR_RETURN(auto rows, s.history.Conversations(q));
    if (rows.items.empty()) return Status(Code::kNotFound, "no conversation " + what);
    const MessageRow* pick = &rows.items.front();
    for (const auto& m : rows.items) {
      if (m.direction == Direction::kOut) pick = &m;
    }
    return ConversationOf(s, *pick);
  });
}

Result<json> StatusQueries::Capabilities(const std::string& orgnr, const std::string& process) {
  auto org = Orgnr::Parse(orgnr);
  if (!org.ok()) return Status(Code::kInvalidArgument, org.status().message());
  Result<wire::RegistryEntry> entry = registry_.Lookup(*org);
  if (!entry.ok() && entry.status().code() == Code::kNotFound) {
    // eFormidling answers 404 for an organisation its service registry does not know.
    return Status(Code::kNotFound,
                  fmt::format("organisation {} is not in the address registry", org->wire()));
  }
  if (!entry.ok()) return entry.status();
  return CapabilitiesJson(&*entry, process);
}

Health StatusQueries::HealthNow() {
  Status store_ok =
      store_.Run([](PointStore& s) { return s.history.PendingReportCount().status(); });
  const bool broker = metrics_.broker_connected.load() != 0;
  json body = {{"status", store_ok.ok() ? (broker ? "UP" : "DEGRADED") : "DOWN"},
               {"store", store_ok.ok() ? "ok" : store_ok.ToString()},
               {"broker", broker ? "connected" : "disconnected"},
               {"orgnr", me_.wire()}};
  return {std::move(body), store_ok.ok()};
}

Readiness StatusQueries::ReadinessNow() {
  json problems = json::array();
  Status store_ok = store_.Run([](PointStore& s) -> Status {
    BUD_RETURN_IF_ERROR(s.history.PendingReportCount().status());
    Status begun = s.point->BeginTurn();  // BEGIN IMMEDIATE: the write lock, then rolled back
    if (begun.ok()) s.point->RollbackTurn();
    return begun.Context("the store takes no writes");
  });
  if (!store_ok.ok()) problems.push_back("store: " + store_ok.ToString());
  const bool broker = metrics_.broker_connected.load() != 0;
  if (!broker) problems.push_back("broker: not connected (no Welcome from any broker endpoint)");
  bool stale = false;
  auto own = registry_.LookupNoting(me_, &stale);
  std::string registry = "ok";
  if (own.ok() && stale) {
    registry =
        "stale: no registry answers; cached entries are served until registry.stale_ms "
        "runs out";
  } else if (!own.ok() && own.status().code() == Code::kNotFound) {
    registry = "this organisation is not registered";
    problems.push_back("registry: " + registry);
  } else if (!own.ok()) {
    registry = "unavailable: " + own.status().message();
    problems.push_back("registry: " + registry);
  }
  json body = {{"status", problems.empty() ? "UP" : "DOWN"},
               {"orgnr", me_.wire()},
               {"store", store_ok.ok() ? "ok" : store_ok.ToString()},
               {"broker", broker ? "connected" : "disconnected"},
               {"registry", registry},
               {"problems", problems}};
  return {std::move(body), problems.empty()};
}

Status StatusQueries::StoreUsable() {
  return store_.Run([](PointStore& s) -> Status {
    BUD_RETURN_IF_ERROR(s.point->BeginTurn());  // BEGIN IMMEDIATE: takes the write lock
    Status read = s.history.PendingReportCount().status();
    s.point->RollbackTurn();
    return read;
  });
}

std::string StatusQueries::MetricsText() {
  metrics::Writer w;
  StoreMetrics(w);
  w.Family("bud_ip_broker_connected", "gauge",
           "1 while the broker has welcomed this integration point.");
  w.Sample("bud_ip_broker_connected", static_cast<double>(metrics_.broker_connected.load()));
  EngineCounters(w);
  w.Histogram("bud_ip_submit_to_accept_seconds",
              "Time from submitting an envelope to the broker's ACCEPTED.",
              metrics_.submit_to_accept);
  w.Family("bud_ip_certificate_expiry_days", "gauge", "Days until each own certificate expires.");
  for (const auto& [label, cert] : certs_) {
    w.Sample("bud_ip_certificate_expiry_days", {{"certificate", label}},
             static_cast<double>(crypto::DaysToExpiry(cert.get())));
  }
  return w.text();
}

// Messages by status, the outgoing queue per receiver, reports not yet given to the broker.
void StatusQueries::StoreMetrics(metrics::Writer& w) {
  std::vector<StatusCount> counts;
  int64_t pending_reports = 0;
  Result<std::vector<QueueDepth>> queue = std::vector<QueueDepth>();
  store_.Run([&](PointStore& s) {
    if (auto c = s.history.CountByStatus(); c.ok()) counts = std::move(*c);
    if (auto p = s.history.PendingReportCount(); p.ok()) pending_reports = *p;
    queue = s.history.OutgoingQueue();
  });
  const int64_t now = NowMs();
  w.Family("bud_ip_messages", "gauge", "Messages in the store by direction and current status.");
  for (const auto& c : counts) {
    w.Sample("bud_ip_messages", {{"direction", DirectionName(c.direction)}, {"status", c.status}},
             static_cast<double>(c.count));
  }
  const std::vector<QueueDepth> depths = queue.ok() ? *queue : std::vector<QueueDepth>();
  w.Family("bud_ip_queue_depth", "gauge",
           "Outgoing messages not yet accepted by the broker, per receiver.");
  for (const auto& q : depths) {
    w.Sample("bud_ip_queue_depth", {{"receiver", q.receiver}}, static_cast<double>(q.count));
  }
  w.Family("bud_ip_queue_oldest_age_seconds", "gauge",
           "Age of the oldest outgoing message not yet accepted by the broker, per receiver.");
  for (const auto& q : depths) {
    w.Sample("bud_ip_queue_oldest_age_seconds", {{"receiver", q.receiver}},
             static_cast<double>(now - q.oldest_ms) / 1000.0);
  }
  w.Family("bud_ip_pending_reports", "gauge",
           "Receipts (MOTTATT, LEVERT, FEIL) not yet taken by the broker.");
  w.Sample("bud_ip_pending_reports", static_cast<double>(pending_reports));
}

void StatusQueries::EngineCounters(metrics::Writer& w) {
  auto counter = [&](const char* name, const char* help, const std::atomic<int64_t>& v) {
    w.Family(name, "counter", help);
    w.Sample(name, static_cast<double>(v.load(std::memory_order_relaxed)));
  };
  counter("bud_ip_submits_total", "Envelopes submitted to the broker (resubmits included).",
          metrics_.submits);
  counter("bud_ip_accepted_total", "Submits the broker answered ACCEPTED.", metrics_.accepted);
  counter("bud_ip_rejected_total", "Submits the broker answered REJECTED.", metrics_.rejected);
  counter("bud_ip_retry_later_total", "Submits the broker answered RETRY_LATER.",
          metrics_.retry_later);
  counter("bud_ip_deliveries_total", "Envelopes the broker delivered to this integration point.",
          metrics_.deliveries);
  counter("bud_ip_redeliveries_total",
          "Deliveries of messages received before (answered as before, written once).",
          metrics_.redeliveries);
  counter("bud_ip_refused_total", "Deliveries refused (FEIL) after verification.",
          metrics_.refused);
  counter("bud_ip_deferred_total",
          "Deliveries answered Defer (the inbox or the store could not be written).",
          metrics_.deferred);
  counter("bud_ip_broker_reconnects_total", "Reconnects after the broker fell silent.",
          metrics_.reconnects);
  counter("bud_ip_broker_failovers_total",
          "Reconnects that moved to the next broker endpoint of the list.", metrics_.failovers);
  counter("bud_ip_registry_served_stale_total",
          "Registry lookups by the engine answered from a cached entry past its cache time "
          "because no registry answered.",
          metrics_.registry_served_stale);
}

}  // namespace bud::ip::api
