// The integration point's HTTP API: services and routes wired together. See http_api.h and
// docs/http-api.md.
#include "integration-point/http_api.h"

#include "common/clock.h"
#include "common/crypto/certs.h"
#include "common/fs.h"
#include "integration-point/api/routes.h"
#include "integration-point/data_dirs.h"

namespace bud::ip {

HttpApi::HttpApi(const Config& config, const EngineMetrics& metrics, zmq::context_t& ctx,
                 std::function<void()> wake, std::function<Status(MessageRow)> take_in)
    : config_(config),
      metrics_(metrics),
      ctx_(ctx),
      wake_(std::move(wake)),
      take_in_(std::move(take_in)) {}

HttpApi::~HttpApi() {
  server_.reset();  // stop serving before the services go
  pusher_.reset();
}

Status HttpApi::MakeServices() {
  BUD_ASSIGN_OR_RETURN(auto store, PointStore::Open(config_.store));
  store_ = std::make_unique<api::SharedStore>(std::move(store));
  std::optional<wire::CurveKeyPair> curve;
  if (!config_.keys.curve_key_file.empty()) {
    BUD_ASSIGN_OR_RETURN(curve, wire::LoadCurveKeyFile(config_.keys.curve_key_file));
  }
  registry_ = std::make_unique<api::SharedRegistryLookup>(std::make_unique<RegistryClient>(
      ctx_, RegistryClientOptions{.endpoints = config_.registry.endpoints,
                                  .timeout_ms = config_.registry.timeout_ms,
                                  .cache_ms = config_.registry.cache_ms,
                                  .stale_ms = config_.registry.stale_ms,
                                  .curve = curve,
                                  .server_key = config_.registry.server_key}));
  std::vector<std::pair<std::string, crypto::Cert>> certs;
  for (const auto& [label, path] :
       {std::pair<std::string, std::string>{"signing", config_.keys.signing_cert},
        {"encryption", config_.keys.encryption_cert},
        {"next_encryption", config_.keys.next_encryption_cert}}) {
    if (path.empty()) continue;
    BUD_ASSIGN_OR_RETURN(auto cert, crypto::LoadCertFile(path));
    certs.emplace_back(label, std::move(cert));
  }
  OutboxLimits limits{static_cast<size_t>(config_.max_attachments),
                      static_cast<size_t>(config_.max_attachment_bytes), config_.default_ttl_ms};
  limits.on_behalf_of = config_.on_behalf_of;
  limits.message_channel = config_.broker.message_channel;
  outgoing_ = std::make_unique<api::OutgoingMessages>(config_.me(), limits, *registry_, take_in_);
  drafts_ = std::make_unique<api::Drafts>(config_, *store_, *outgoing_);
  refusals_ = std::make_unique<api::ApiRefusals>(*store_, [] { return NowMs(); });
  inbox_ = std::make_unique<api::ApiInbox>(config_, *store_, wake_, [] { return NowMs(); });
  std::vector<std::pair<std::string, std::string>> disks = {{"store", ParentDir(config_.store)},
                                                            {"spool", SpoolDir(config_)}};
  queries_ = std::make_unique<api::StatusQueries>(config_.me(), metrics_, *store_, *registry_,
                                                  std::move(certs), std::move(disks));
  queries_->set_webhook_metrics(&webhook_metrics_);
  pusher_ = std::make_unique<webhooks::WebhookPusher>(config_.store, config_.webhooks,
                                                      webhook_metrics_, [] { return NowMs(); });
  BUD_RETURN_IF_ERROR(pusher_->Start());
  subscriptions_ = std::make_unique<api::Subscriptions>(
      *store_,
      [this](const std::string& url) {
        webhooks::PingEndpoint(url, config_.webhooks, webhook_metrics_, NowMs());
      },
      [this] { pusher_->Wake(); }, config_.webhooks.max_subscriptions, [] { return NowMs(); });
  return Status::Ok();
}

Status HttpApi::Start() {
  BUD_RETURN_IF_ERROR(MakeServices());
  HttpOptions http = config_.http;
  // Their routes read the body themselves: a file upload, bounded; a send, which takes none.
  http.streams_body = [](const httplib::Request& req) {
    return api::IsFileUpload(req) || api::IsSend(req);
  };
  http.max_streamed_body_bytes = static_cast<size_t>(config_.max_message_bytes);
  BUD_ASSIGN_OR_RETURN(server_, HttpServer::Start(http, [this](httplib::Server& srv) {
                         api::AddStatusRoutes(srv, *queries_);
                         api::AddOutgoingRoutes(srv, *outgoing_, *drafts_, *queries_, *refusals_);
                         api::AddIncomingRoutes(srv, *inbox_, *queries_);
                         api::AddSubscriptionRoutes(srv, *subscriptions_);
                       }));
  return Status::Ok();
}

}  // namespace bud::ip
