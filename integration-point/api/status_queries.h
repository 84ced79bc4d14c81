// What the HTTP API reads: status lines, conversations, the message lists, capabilities from the
// address registry, /metrics and /healthz; and the two bookkeeping writes of those views (taking
// a status line off the queue, deleting a conversation), which never touch a message itself.
//
// Operation: called on the HTTP server's threads; each answer is read under the store's mutex
// (one consistent snapshot per call). The engine's counters are atomics it updates.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/crypto/openssl.h"
#include "common/metrics.h"
#include "common/orgnr.h"
#include "common/status.h"
#include "integration-point/api/registry_lookup.h"
#include "integration-point/api/shared_store.h"
#include "integration-point/engine.h"
#include "integration-point/webhooks/webhook_options.h"

namespace bud::ip::api {

// /healthz: the body and whether the store could be read (200) or not (503).
struct Health {
  nlohmann::json body;
  bool store_ok = false;
};

// /health: whether the point can do its job now (docs/operating.md, "Health"): the store can
// be read and written, the broker has welcomed us, the registry answers for our own entry (or,
// while none answers, the cached entries are still within registry.stale_ms). `ok` (200) when
// all hold; otherwise 503 and `body.problems` says what does not.
struct Readiness {
  nlohmann::json body;
  bool ok = false;
};

class StatusQueries {
 public:
  // `certs`: the own certificates by label ("signing", ...) for their expiry gauge.
  // `disks`: label -> a path on each file system the overview reports free space of ("store",
  // "spool").
  StatusQueries(Orgnr me, const EngineMetrics& metrics, SharedStore& store,
                RegistryLookup& registry, std::vector<std::pair<std::string, crypto::Cert>> certs,
                std::vector<std::pair<std::string, std::string>> disks = {});

  // Pages of status lines, conversations and messages (SBDs), page number `page` of q.limit.
  Result<nlohmann::json> Statuses(const StatusQuery& q, int64_t page);
  Result<nlohmann::json> Conversations(const ConversationQuery& q, int64_t page);
  // The message lists (/api/messages/out): deleted conversations included.
  Result<nlohmann::json> Messages(ConversationQuery q, int64_t page);
  // The head of the status queue (the oldest status line not yet removed; peeking removes
  // nothing); nullopt when the queue is empty.
  Result<std::optional<nlohmann::json>> PeekStatus();
  // Takes status line `id` off the queue; kNotFound when it is not on it.
  Status RemoveStatus(const std::string& id);
  // The conversation `q` selects (by id or message id); kNotFound "no conversation <what>".
  // A message sent to ourselves exists in both directions: the outgoing one is the answer.
  Result<nlohmann::json> Conversation(ConversationQuery q, const std::string& what);
  // DELETE /api/conversations/{id} (`id` non-zero) or /api/conversations/messageId/{id} (both
  // directions): hides them from the conversation and status views and the status queue
  // (status_queue.h). Ok also when there is none, as eFormidling (a repeated DELETE is 200).
  Status DeleteConversations(int64_t id, const std::string& message_id, int64_t now_ms);
  // {"capabilities": [...]} of `orgnr` (kBadOrgnr when it is not one); empty when unknown.
  Result<nlohmann::json> Capabilities(const std::string& orgnr, const std::string& process);
  // The refused intake (refusal_store.h) as {"content": [...], "totalElements", "open"}: the open
  // refusals, with `include_resolved` the resolved ones too; newest first, at most 1,000.
  Result<nlohmann::json> Refusals(bool include_resolved);
  // The status page's overview at `now_ms` (docs/operating.md, "The status page"): the links to
  // broker and registry with their last contact, messages by current status today and in all,
  // the oldest outgoing message not SENDT and not MOTTATT, days to each certificate's expiry,
  // free disk, messages per hour in and out over 24 hours, open refusals, and `alerts`: what an
  // admin must act on, each {"what", "since"?}.
  Result<nlohmann::json> Overview(int64_t now_ms);
  // Prometheus text format 0.0.4.
  std::string MetricsText();
  // Adds the webhook pusher's counters to MetricsText (`m` must outlive this; null: none).
  void set_webhook_metrics(const webhooks::WebhookMetrics* m) { webhook_metrics_ = m; }
  Health HealthNow();
  Readiness ReadinessNow();
  // /manage/health (Spring actuator's shape): Ok when the store can be read and written (a
  // write transaction begun and rolled back), else why not.
  Status StoreUsable();

 private:
  nlohmann::json ConversationOf(PointStore& s, const MessageRow& m);
  void StoreMetrics(metrics::Writer& w);
  void EngineCounters(metrics::Writer& w);

  Orgnr me_;
  const EngineMetrics& metrics_;
  SharedStore& store_;
  RegistryLookup& registry_;
  std::vector<std::pair<std::string, crypto::Cert>> certs_;
  std::vector<std::pair<std::string, std::string>> disks_;
  const webhooks::WebhookMetrics* webhook_metrics_ = nullptr;
};

}  // namespace bud::ip::api
