// The integration point's HTTP API (docs/http-api.md): eFormidling's Next Move paths and JSON
// shapes for archive systems, a status page at "/", /metrics (Prometheus) and /healthz.
//
// Operation: served by common/http_server.h on its own threads. The API has its own store
// connection and registry client, each behind a mutex; it shares the store file (WAL) with the
// engine, so a message taken in through either the outbox folder or the API shows in both
// status views. After taking a message in or queuing a report it wakes the engine.
// Messages POSTed are handed to the engine thread (Engine::TakeIn), which stores those of one
// loop turn with one commit; each answer comes only after that commit.
// Large files: a PUT's body streams to a file beside the store and a pop's zip is read from
// disk as the client takes it (asic.h), so neither is ever whole in memory; the store mutex is
// not held while bytes move.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <zmq.hpp>

#include "common/crypto/openssl.h"
#include "common/http_server.h"
#include "common/registry_client.h"
#include "integration-point/config.h"
#include "integration-point/engine.h"
#include "integration-point/outbox.h"
#include "integration-point/store.h"

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

  Status Start();
  std::string address() const { return server_ ? server_->address() : ""; }

 private:
  void Routes(httplib::Server& srv);
  OutboxLimits Limits() const;
  // Checks the receiver and takes the message in (store + wake); fills `res` either way and
  // returns whether it was taken in. `before_commit` runs after the checks, right before the
  // commit (a streamed draft's files are placed in the spool there); `undo` when that or the
  // commit failed.
  bool Submit(OutgoingDraft draft, const nlohmann::json& sbd, const httplib::Request& req,
              httplib::Response& res, const std::function<Status()>& before_commit = {},
              const std::function<void()>& undo = {});
  void SendOutStatus(const Status& st, const httplib::Request& req, httplib::Response& res);
  nlohmann::json ConversationJson(const MessageRow& m);
  nlohmann::json IncomingSbd(const MessageRow& m);
  std::string Metrics();

  const Config& config_;
  const EngineMetrics& metrics_;
  zmq::context_t& ctx_;
  std::function<void()> wake_;
  std::function<Status(MessageRow)> take_in_;
  Orgnr me_;
  std::mutex store_mu_;
  std::unique_ptr<Store> store_;
  std::mutex registry_mu_;
  std::unique_ptr<RegistryClient> registry_;
  std::vector<std::pair<std::string, crypto::Cert>> certs_;  // "signing" etc. -> certificate
  std::unique_ptr<HttpServer> server_;
};

}  // namespace bud::ip
