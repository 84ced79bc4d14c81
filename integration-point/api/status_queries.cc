// See status_queries.h.
#include "integration-point/api/status_queries.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>

#include "common/clock.h"
#include "common/crypto/certs.h"
#include "common/fs.h"
#include "common/log.h"
#include "integration-point/api/json_shapes.h"
#include "integration-point/sbd.h"
#include "integration-point/status_view.h"

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
                             std::vector<std::pair<std::string, crypto::Cert>> certs,
                             std::vector<std::pair<std::string, std::string>> disks)
    : me_(std::move(me)),
      metrics_(metrics),
      store_(store),
      registry_(registry),
      certs_(std::move(certs)),
      disks_(std::move(disks)) {}

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

Result<json> StatusQueries::Messages(ConversationQuery q, int64_t page) {
  q.include_deleted = true;
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

Status StatusQueries::DeleteConversations(int64_t id, const std::string& message_id,
                                          int64_t now_ms) {
  return store_.Run([&](PointStore& s) -> Status {
    BUD_ASSIGN_OR_RETURN(const int64_t hidden,
                         s.status_queue.DeleteConversations(id, message_id, now_ms));
    if (hidden > 0) {
      Logger("http")->info("conversation {} deleted ({} hidden from the API's views)",
                           id != 0 ? std::to_string(id) : "of message " + message_id, hidden);
    }
    return Status::Ok();
  });
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
  if (webhook_metrics_) {
    const webhooks::WebhookMetrics& m = *webhook_metrics_;
    w.Family("bud_ip_webhook_pushes_total", "counter",
             "Webhook events pushed (ok), push attempts that failed (failed, each retry counts) "
             "and events given up after give_up_after_ms (dropped).");
    w.Sample("bud_ip_webhook_pushes_total", {{"result", "ok"}}, static_cast<double>(m.pushed));
    w.Sample("bud_ip_webhook_pushes_total", {{"result", "failed"}}, static_cast<double>(m.failed));
    w.Sample("bud_ip_webhook_pushes_total", {{"result", "dropped"}},
             static_cast<double>(m.dropped));
    w.Family("bud_ip_webhook_pings_total", "counter", "Pings to new push endpoints, by outcome.");
    w.Sample("bud_ip_webhook_pings_total", {{"result", "ok"}}, static_cast<double>(m.pings_ok));
    w.Sample("bud_ip_webhook_pings_total", {{"result", "failed"}},
             static_cast<double>(m.pings_failed));
    w.Family("bud_ip_webhook_subscriptions_failing", "gauge",
             "Subscriptions whose last push failed (their events wait and are retried).");
    w.Sample("bud_ip_webhook_subscriptions_failing", static_cast<double>(m.failing));
  }
  w.Family("bud_ip_certificate_expiry_days", "gauge", "Days until each own certificate expires.");
  for (const auto& [label, cert] : certs_) {
    w.Sample("bud_ip_certificate_expiry_days", {{"certificate", label}},
             static_cast<double>(crypto::DaysToExpiry(cert.get())));
  }
  return w.text();
}

Result<json> StatusQueries::Refusals(bool include_resolved) {
  constexpr int kLimit = 1000;
  return store_.Run([&](PointStore& s) -> Result<json> {
    BUD_ASSIGN_OR_RETURN(auto rows, s.refusals.List(include_resolved, kLimit));
    BUD_ASSIGN_OR_RETURN(auto counts, s.refusals.Counts());
    json content = json::array();
    for (const auto& r : rows) content.push_back(RefusalJson(r));
    json body = {{"content", std::move(content)}, {"open", counts.open}};
    body["totalElements"] = body["content"].size();
    return body;
  });
}

namespace {
// Local midnight of the day holding `now_ms`.
int64_t LocalDayStartMs(int64_t now_ms) {
  const time_t secs = static_cast<time_t>(now_ms / 1000);
  struct tm tm;
  localtime_r(&secs, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return static_cast<int64_t>(std::mktime(&tm)) * 1000;
}

json CountsJson(const std::vector<StatusCount>& counts) {
  json out = json::object();
  for (const auto& c : counts) {
    out[c.status] = out.value(c.status, int64_t{0}) + c.count;
  }
  return out;
}

json WaitingJson(const OldestWaiting& w, int64_t now_ms) {
  if (w.created_ms == 0) return nullptr;
  return {{"messageId", w.message_id},
          {"receiver", w.receiver},
          {"created", FormatTime(w.created_ms)},
          {"ageSeconds", (now_ms - w.created_ms) / 1000}};
}

constexpr int64_t kWaitingTooLongMs = 3'600'000;  // an hour without SENDT or MOTTATT: act
constexpr int kCertificateWarningDays = 30;
constexpr double kDiskLowPercent = 10.0;
}  // namespace

namespace {
// What an admin must act on: (what, since ms or 0).
using Alert = std::function<void(const char*, int64_t)>;

json CertificatesJson(const std::vector<std::pair<std::string, crypto::Cert>>& certs,
                      const Alert& alert) {
  json out = json::array();
  for (const auto& [label, cert] : certs) {
    const int days = crypto::DaysToExpiry(cert.get());
    out.push_back({{"certificate", label},
                   {"subject", crypto::SubjectOf(cert.get())},
                   {"daysToExpiry", days}});
    if (days < kCertificateWarningDays) alert("certificate", 0);
  }
  return out;
}

json DisksJson(const std::vector<std::pair<std::string, std::string>>& disks, const Alert& alert) {
  json out = json::array();
  for (const auto& [label, configured] : disks) {
    // A folder not made yet (the spool before the first large message) is on its parent's disk.
    std::string path = configured;
    struct statvfs fs;
    int rc;
    while ((rc = ::statvfs(path.c_str(), &fs)) != 0 && errno == ENOENT) {
      const std::string parent = ParentDir(path);
      if (parent == path || parent.empty()) break;
      path = parent;
    }
    if (rc != 0) {
      out.push_back({{"disk", label}, {"path", path}, {"error", std::strerror(errno)}});
      alert("disk", 0);
      continue;
    }
    const double total = static_cast<double>(fs.f_blocks) * static_cast<double>(fs.f_frsize);
    const double free = static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize);
    const double percent = total > 0 ? 100.0 * free / total : 0.0;
    out.push_back({{"disk", label},
                   {"path", path},
                   {"freeBytes", static_cast<int64_t>(free)},
                   {"totalBytes", static_cast<int64_t>(total)},
                   {"freePercent", std::round(percent * 10) / 10}});
    if (percent < kDiskLowPercent) alert("disk", 0);
  }
  return out;
}
}  // namespace

Result<json> StatusQueries::Overview(int64_t now_ms) {
  const int64_t day_start = LocalDayStartMs(now_ms);
  OverviewCounts counts;
  RefusalCounts refusals;
  Status read = store_.Run([&](PointStore& s) -> Status {
    BUD_ASSIGN_OR_RETURN(counts, s.history.Overview(now_ms, day_start, 24));
    BUD_ASSIGN_OR_RETURN(refusals, s.refusals.Counts());
    return Status::Ok();
  });
  BUD_RETURN_IF_ERROR(read);
  json alerts = json::array();
  const Alert alert = [&](const char* what, int64_t since_ms) {
    json a = {{"what", what}};
    if (since_ms > 0) a["since"] = FormatTime(since_ms);
    alerts.push_back(std::move(a));
  };
  json out;
  out["now"] = FormatTime(now_ms);
  out["dayStart"] = FormatTime(day_start);
  out["orgnr"] = me_.wire();
  const bool broker = metrics_.broker_connected.load() != 0;
  const int64_t broker_last = metrics_.broker_last_frame_ms.load();
  out["broker"] = {{"connected", broker},
                   {"lastContact", broker_last ? json(FormatTime(broker_last)) : json(nullptr)}};
  if (!broker) alert("broker", broker_last);
  const int64_t reg_last = metrics_.registry_last_answer_ms.load();
  const int64_t reg_down = metrics_.registry_unavailable_since_ms.load();
  out["registry"] = {{"reachable", reg_down == 0},
                     {"lastContact", reg_last ? json(FormatTime(reg_last)) : json(nullptr)},
                     {"unavailableSince", reg_down ? json(FormatTime(reg_down)) : json(nullptr)}};
  if (reg_down != 0) alert("registry", reg_down);
  out["messages"] = {{"total", CountsJson(counts.total)}, {"today", CountsJson(counts.today)}};
  if (out["messages"]["today"].value("FEIL", int64_t{0}) > 0) alert("failed_today", 0);
  out["oldestNotSent"] = WaitingJson(counts.oldest_not_sent, now_ms);
  out["oldestNotReceived"] = WaitingJson(counts.oldest_not_received, now_ms);
  if (counts.oldest_not_sent.created_ms &&
      now_ms - counts.oldest_not_sent.created_ms > kWaitingTooLongMs) {
    alert("not_sent", counts.oldest_not_sent.created_ms);
  }
  if (counts.oldest_not_received.created_ms &&
      now_ms - counts.oldest_not_received.created_ms > kWaitingTooLongMs) {
    alert("not_received", counts.oldest_not_received.created_ms);
  }
  out["certificates"] = CertificatesJson(certs_, alert);
  out["disks"] = DisksJson(disks_, alert);
  json hourly = json::array();
  for (const auto& h : counts.hourly) {
    hourly.push_back({{"hour", FormatTime(h.hour_start_ms)}, {"out", h.out}, {"in", h.in}});
  }
  out["hourly"] = std::move(hourly);
  out["refusals"] = {{"open", refusals.open}};
  if (refusals.open > 0) alert("refusals", 0);
  out["alerts"] = std::move(alerts);
  return out;
}

// Messages by status, the outgoing queue per receiver, reports not yet given to the broker, the
// refused intake.
void StatusQueries::StoreMetrics(metrics::Writer& w) {
  std::vector<StatusCount> counts;
  int64_t pending_reports = 0;
  Result<std::vector<QueueDepth>> queue = std::vector<QueueDepth>();
  RefusalCounts refusals;
  store_.Run([&](PointStore& s) {
    if (auto c = s.history.CountByStatus(); c.ok()) counts = std::move(*c);
    if (auto p = s.history.PendingReportCount(); p.ok()) pending_reports = *p;
    queue = s.history.OutgoingQueue();
    if (auto r = s.refusals.Counts(); r.ok()) refusals = std::move(*r);
  });
  w.Family("bud_ip_intake_refused_total", "counter",
           "Outbox folders moved to .failed and API requests refused, by reason class.");
  for (auto c : kRefusalClasses) {
    const auto it = refusals.by_class.find(Text(c));
    w.Sample("bud_ip_intake_refused_total", {{"class", Text(c)}},
             static_cast<double>(it == refusals.by_class.end() ? 0 : it->second));
  }
  w.Family("bud_ip_intake_refused_open", "gauge",
           "Refused folders and requests not fixed and taken in yet (`bud-ip status --failed`).");
  w.Sample("bud_ip_intake_refused_open", static_cast<double>(refusals.open));
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
  counter("bud_ip_broker_batch_frames_total",
          "Batch frames sent to the broker (each carrying several submits, reports and status "
          "acks).",
          metrics_.batch_frames);
  counter("bud_ip_broker_batch_items_total",
          "Submits, reports and status acks sent in Batch frames.", metrics_.batch_items);
  counter("bud_ip_registry_served_stale_total",
          "Registry lookups by the engine answered from a cached entry past its cache time "
          "because no registry answered.",
          metrics_.registry_served_stale);
  counter("bud_ip_stream_bytes_sent_total",
          "Bytes of streamed chunk records sent to brokers (uploads; resends included).",
          metrics_.stream_bytes_sent);
  counter("bud_ip_stream_bytes_received_total",
          "Bytes of streamed chunk records received from brokers (downloads; duplicates "
          "included).",
          metrics_.stream_bytes_received);
}

}  // namespace bud::ip::api
