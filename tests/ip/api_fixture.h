// What the HTTP API's service tests share: a real ip::Store on a SQLite file in a temporary
// directory, the point's own config, and an address registry that is a table of real registry
// entries (data, looked up by organisation number).
#pragma once

#include <fmt/format.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/clock.h"
#include "common/http_server.h"
#include "integration-point/api/api_inbox.h"
#include "integration-point/api/api_refusals.h"
#include "integration-point/api/drafts.h"
#include "integration-point/api/outgoing.h"
#include "integration-point/api/registry_lookup.h"
#include "integration-point/api/routes.h"
#include "integration-point/api/shared_store.h"
#include "integration-point/api/status_queries.h"
#include "integration-point/config.h"
#include "tests/support/temp_dir.h"

namespace bud::ip::api::test {

inline constexpr const char* kMe = "910076787";
inline constexpr const char* kReceiver = "910075918";
inline constexpr const char* kProcess = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0";
inline constexpr const char* kStandard = "urn:no:difi:arkivmelding:xsd::arkivmelding";

// The registry as a table; `unavailable` answers as a registry that does not answer.
class TableRegistry : public RegistryLookup {
 public:
  std::map<std::string, wire::RegistryEntry> entries;
  bool unavailable = false;
  Result<wire::RegistryEntry> Lookup(const Orgnr& org) override {
    if (unavailable) return Status(Code::kUnavailable, "the registry does not answer");
    auto it = entries.find(org.digits());
    if (it == entries.end()) return Status(Code::kNotFound, "no such organisation");
    return it->second;
  }
};

inline wire::RegistryEntry Entry(const std::string& orgnr) {
  wire::RegistryEntry e;
  e.set_orgnr(orgnr);
  e.set_name("Agency " + orgnr);
  e.add_processes(kProcess);
  e.add_document_types(kStandard);
  return e;
}

// eFormidling's arkivmelding SBD from us to `receiver`; hoveddokument "test.pdf".
inline nlohmann::json ExampleSbd(const std::string& message_id,
                                 const std::string& receiver = kReceiver) {
  nlohmann::json sbd =
      nlohmann::json::parse(fmt::format(R"({{
  "standardBusinessDocumentHeader": {{
    "headerVersion": "1.0",
    "sender": [{{"identifier": {{"value": "0192:{}", "authority": "iso6523-actorid-upis"}}}}],
    "receiver": [{{"identifier": {{"value": "0192:{}", "authority": "iso6523-actorid-upis"}}}}],
    "documentIdentification": {{"standard": "{}", "typeVersion": "1.0",
                                 "instanceIdentifier": "{}", "type": "arkivmelding"}},
    "businessScope": {{"scope": [{{"type": "ConversationId",
                                    "instanceIdentifier": "c0a80000-0000-4000-8000-000000000001",
                                    "identifier": "{}"}}]}}
  }},
  "arkivmelding": {{"hoveddokument": "test.pdf", "sikkerhetsnivaa": 3}}
}})",
                                        kMe, receiver, kStandard, message_id, kProcess));
  return sbd;
}

// A body source over a string, in pieces of `piece` bytes; `cut_after` ends it early (false).
inline ByteSource StringSource(std::string data, size_t piece = 7,
                               size_t cut_after = std::string::npos) {
  return [data = std::move(data), piece, cut_after](const ByteSink& sink) {
    for (size_t at = 0; at < data.size(); at += piece) {
      if (at >= cut_after) return false;
      if (!sink(data.data() + at, std::min(piece, data.size() - at))) return false;
    }
    return true;
  };
}

struct ApiFixture {
  bud::test::TempDir dir;
  Config config;
  TableRegistry registry;
  std::unique_ptr<SharedStore> store;
  int64_t now = NowMs();
  int wakes = 0;
  Status take_in_refusal;  // when not ok, the take-in answers it instead of storing
  std::unique_ptr<OutgoingMessages> outgoing;
  std::unique_ptr<Drafts> drafts;
  std::unique_ptr<ApiInbox> inbox;
  EngineMetrics metrics;
  std::unique_ptr<StatusQueries> queries;
  std::unique_ptr<ApiRefusals> refusals;

  ApiFixture() {
    config.orgnr = kMe;
    config.store = dir / "ip.db";
    config.max_message_bytes = 1000;
    config.stream_threshold_bytes = 100;
    config.peek_lock_ms = 60000;
    registry.entries[kReceiver] = Entry(kReceiver);
    auto opened = PointStore::Open(config.store);
    if (!opened.ok()) throw std::runtime_error(opened.status().ToString());
    store = std::make_unique<SharedStore>(std::move(*opened));
    OutboxLimits limits;
    limits.max_attachments = 3;
    limits.max_attachment_bytes = 500;
    outgoing =
        std::make_unique<OutgoingMessages>(config.me(), limits, registry, [this](MessageRow row) {
          if (!take_in_refusal.ok()) return take_in_refusal;
          return store->Run([&](PointStore& s) { return s.outgoing.CreateOutgoing(row); });
        });
    drafts = std::make_unique<Drafts>(config, *store, *outgoing);
    inbox = std::make_unique<ApiInbox>(
        config, *store, [this] { ++wakes; }, [this] { return now; });
    queries = std::make_unique<StatusQueries>(config.me(), metrics, *store, registry,
                                              std::vector<std::pair<std::string, crypto::Cert>>());
    refusals = std::make_unique<ApiRefusals>(*store, [this] { return now; });
  }

  // Every route served over HTTP as http_api.cc wires them, on an OS-picked loopback port;
  // `o` may add authentication or other limits.
  std::unique_ptr<HttpServer> Serve(HttpOptions o = {}) {
    o.listen = "127.0.0.1:0";
    o.threads = 2;
    o.streams_body = [](const httplib::Request& req) { return IsFileUpload(req) || IsSend(req); };
    o.max_streamed_body_bytes = static_cast<size_t>(config.max_message_bytes);
    auto started = HttpServer::Start(o, [this](httplib::Server& srv) {
      AddStatusRoutes(srv, *queries);
      AddOutgoingRoutes(srv, *outgoing, *drafts, *queries, *refusals);
      AddIncomingRoutes(srv, *inbox, *queries);
    });
    if (!started.ok()) throw std::runtime_error(started.status().ToString());
    return std::move(*started);
  }

  // The current status of our outgoing message `id` ("" when there is none).
  std::string OutStatus(const std::string& id) {
    auto row = store->Run([&](PointStore& s) { return s.outgoing.Get(id); });
    return row.ok() && *row ? (*row)->status : "";
  }
};

}  // namespace bud::ip::api::test
