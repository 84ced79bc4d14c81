// The integration point's HTTP API (docs/http-api.md): eFormidling's Next Move paths and JSON
// shapes for archive systems, a status page at "/", /metrics (Prometheus) and /healthz.
//
// Layout: HttpApi only wires. The work is done by plain services in api/, testable without
// HTTP (tests/ip/api_*_test.cc): OutgoingMessages (the checks and the take-in every way of
// sending shares), Drafts (create, upload, send, delete), ApiInbox (peek, pop, delete),
// StatusQueries (statuses, conversations, lists, capabilities, metrics, health), Subscriptions
// (webhooks, pushed by webhooks/webhook_pusher.h on threads of their own), with the JSON shapes
// in api/json_shapes.h. The routes (api/routes_*.cc) parse a request, call one service
// and write its answer; api/http_answer.h maps a Status to the HTTP status and error body.
//
// Operation: served by common/http_server.h on its own threads (which also checks Host, Origin
// and the token). The API has its own store connection and registry client, each behind a
// mutex; it shares the store file (WAL) with the engine, so a message taken in through either
// the outbox folder or the API shows in both status views. After a message is taken out of the
// API inbox it wakes the engine. Messages POSTed are handed to the engine thread
// (Engine::TakeIn), which stores those of one loop turn with one commit; each answer comes only
// after that commit. Large files: a PUT's body streams to a file beside the store and a pop's
// zip is read from disk as the client takes it (asic.h), so neither is ever whole in memory;
// the store mutex is not held while bytes move.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <zmq.hpp>

#include "common/http_server.h"
#include "integration-point/api/api_inbox.h"
#include "integration-point/api/api_refusals.h"
#include "integration-point/api/drafts.h"
#include "integration-point/api/outgoing.h"
#include "integration-point/api/registry_lookup.h"
#include "integration-point/api/shared_store.h"
#include "integration-point/api/status_queries.h"
#include "integration-point/api/subscriptions.h"
#include "integration-point/config.h"
#include "integration-point/engine.h"
#include "integration-point/store/point_store.h"
#include "integration-point/webhooks/webhook_pusher.h"

namespace bud::ip {

class HttpApi {
 public:
  // `take_in` stores an outgoing message durably (Engine::TakeIn); `wake` makes the engine look
  // at the store now (a report queued, a message delivered).
  HttpApi(const Config& config, const EngineMetrics& metrics, zmq::context_t& ctx,
          std::function<void()> wake, std::function<Status(MessageRow)> take_in);
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  // Opens the store connection and the registry client, builds the services, starts serving.
  Status Start();
  std::string address() const { return server_ ? server_->address() : ""; }

 private:
  Status MakeServices();

  const Config& config_;
  const EngineMetrics& metrics_;
  zmq::context_t& ctx_;
  std::function<void()> wake_;
  std::function<Status(MessageRow)> take_in_;
  std::unique_ptr<api::SharedStore> store_;
  std::unique_ptr<RegistryLookup> registry_;
  std::unique_ptr<api::OutgoingMessages> outgoing_;
  std::unique_ptr<api::Drafts> drafts_;
  std::unique_ptr<api::ApiInbox> inbox_;
  std::unique_ptr<api::ApiRefusals> refusals_;
  std::unique_ptr<api::StatusQueries> queries_;
  webhooks::WebhookMetrics webhook_metrics_;
  std::unique_ptr<webhooks::WebhookPusher> pusher_;
  std::unique_ptr<api::Subscriptions> subscriptions_;
  std::unique_ptr<HttpServer> server_;
};

}  // namespace bud::ip
