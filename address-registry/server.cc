// Registry server loop. See server.h.
#include "address-registry/server.h"

#include <fmt/format.h>

#include <set>

#include "common/log.h"
#include "common/runtime.h"
#include "common/wire/connections.h"
#include "common/wire/curve.h"
#include "common/wire/zmq.h"

namespace bud::registry {

Server::Server(const Config& config, zmq::context_t& ctx) : config_(config), ctx_(ctx) {}

Status Server::Run() {
  auto log = Logger("registry");
  BUD_ASSIGN_OR_RETURN(store_, OpenRegistryStore(config_.store));
  std::unique_ptr<wire::ZapHandler> zap;
  using ZapVerdict = Result<std::optional<std::string>>;
  BUD_RETURN_IF_ERROR(wire::SeedRoutingIds());  // before the ROUTER draws its first id
  zmq::socket_t sock(ctx_, zmq::socket_type::router);
  wire::ConfigureSocket(sock, /*router=*/true);
  // No greeting deadline here: a lookup is one request; the watch closes refused peers.
  wire::ConnectionWatch connections(ctx_, sock, "registry", /*deadline_ms=*/0);
  std::set<std::string> refused_rids;  // chosen routing ids already logged (bounded)
  if (config_.curve_key_file.empty()) {
    log->warn("no registry.curve_key_file: serving WITHOUT CURVE authentication (development only)");
  } else {
    BUD_ASSIGN_OR_RETURN(auto keys, wire::LoadCurveKeyFile(config_.curve_key_file));
    zap = std::make_unique<wire::ZapHandler>(
        ctx_,
        [this, self = keys.public_key](const std::string& key) -> ZapVerdict {
          // Our own key: `bud-registry health`.
          if (key == self) return std::optional<std::string>("service:self");
          for (const auto& k : config_.allowed_client_keys) {
            if (k == key) return std::optional<std::string>("service:" + key.substr(0, 8));
          }
          auto e = store_->GetByCurveKey(key);
          if (!e.ok()) return e.status();  // the store is down: not an unregistered key
          if (e->has_value()) return std::optional<std::string>("0192:" + (*e)->orgnr());
          return std::optional<std::string>();
        },
        "registry");
    wire::MakeCurveServer(sock, keys);
    log->info("CURVE on; server public key {}", keys.public_key);
  }
  try {
    sock.bind(config_.listen);
  } catch (const zmq::error_t& e) {
    return Status(Code::kUnavailable, fmt::format("cannot bind '{}': {}", config_.listen, e.what()));
  }
  std::string endpoint = sock.get(zmq::sockopt::last_endpoint);
  BUD_RETURN_IF_ERROR(PublishEndpoint(config_.endpoint_file, endpoint));
  log->info("registry listening on {} (store {})", endpoint, store_->Describe());

  while (!StopRequested()) {
    zmq::pollitem_t items[] = {{sock.handle(), 0, ZMQ_POLLIN, 0},
                               {connections.socket().handle(), 0, ZMQ_POLLIN, 0},
                               {zap ? zap->socket().handle() : nullptr, 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, zap ? 3 : 2, std::chrono::milliseconds(200));
      connections.HandleEvents();
      if (zap) zap->HandlePending();
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      return Status(Code::kInternal, fmt::format("poll: {}", e.what()));
    }
    for (int i = 0; i < 1000; ++i) {
      auto parts = wire::RecvMultipart(sock);
      if (!parts) break;
      if (parts->size() != 2) {
        log->warn("dropped a message of {} frames (want routing id + request)", parts->size());
        continue;
      }
      std::string_view rid(static_cast<const char*>((*parts)[0].data()), (*parts)[0].size());
      if (!wire::IsAutoRoutingId(rid)) {
        // A peer that chose its own routing id could make libzmq abort when the next id it hands
        // out collides with it: never answered, its connection closed, logged once per id.
        if (refused_rids.size() < 10000 && refused_rids.emplace(rid).second) {
          log->warn("peer refused: it chose its own routing id (only the registry's own ids are "
                    "served); its connection is closed");
        }
        (void)connections.Close(wire::SourceFd((*parts)[1]), "chose its own routing id");
        continue;
      }
      wire::RegistryReply reply = Handle((*parts)[1]);
      Status sent = wire::SendProto(sock, reply, rid);
      if (!sent.ok()) log->warn("reply to a lookup could not be sent: {}", sent.message());
    }
  }
  log->info("registry stopping");
  return Status::Ok();
}

wire::RegistryReply Server::Handle(const zmq::message_t& frame) {
  auto log = Logger("registry");
  wire::RegistryRequest req;
  wire::RegistryReply reply;
  reply.set_protocol_version(wire::kProtocolVersion);
  Status parsed = wire::ParseProto(frame, req, "RegistryRequest");
  if (!parsed.ok()) {
    reply.set_code(wire::BAD_REQUEST);
    reply.set_error(parsed.message());
  } else if (req.protocol_version() != wire::kProtocolVersion) {
    reply.set_request_id(req.request_id());
    reply.set_code(wire::UNSUPPORTED_VERSION);
    reply.set_error(fmt::format("protocol version {} is not supported (this registry speaks {})",
                                req.protocol_version(), wire::kProtocolVersion));
  } else if (req.has_health()) {
    reply.set_request_id(req.request_id());
    reply.set_store(store_->Describe());
    Status probe = store_->Probe();
    if (probe.ok()) {
      reply.set_code(wire::OK);
    } else {
      log->warn("health: the store cannot serve: {}", probe.ToString());
      reply.set_code(wire::INTERNAL);
      reply.set_error("the registry's store cannot serve");
      reply.add_problems(probe.ToString());
    }
  } else if (req.has_lookup_by_key()) {
    reply.set_request_id(req.request_id());
    auto entry = store_->GetByCurveKey(req.lookup_by_key().curve_public_key());
    if (!entry.ok() && entry.status().code() == Code::kAlreadyExists) {
      log->error("lookup by key refused: {}", entry.status().message());
      reply.set_code(wire::NOT_FOUND);  // a key two organisations hold names neither
      reply.set_error("this CURVE key is registered to more than one organisation");
    } else if (!entry.ok()) {
      log->error("lookup by key: {}", entry.status().ToString());
      reply.set_code(wire::INTERNAL);
      reply.set_error("registry store error");
    } else if (!entry->has_value()) {
      reply.set_code(wire::NOT_FOUND);
      reply.set_error("no organisation has this CURVE key");
    } else {
      reply.set_code(wire::OK);
      *reply.mutable_entry() = std::move(**entry);
    }
  } else if (!req.has_lookup()) {
    reply.set_request_id(req.request_id());
    reply.set_code(wire::BAD_REQUEST);
    reply.set_error("request has no known body");
  } else {
    reply.set_request_id(req.request_id());
    auto org = Orgnr::Parse(req.lookup().orgnr());
    if (!org.ok()) {
      reply.set_code(wire::BAD_REQUEST);
      reply.set_error(org.status().message());
    } else {
      auto entry = store_->Get(*org);
      if (!entry.ok()) {
        log->error("lookup {}: {}", org->digits(), entry.status().ToString());
        reply.set_code(wire::INTERNAL);
        reply.set_error("registry store error");
      } else if (!entry->has_value()) {
        reply.set_code(wire::NOT_FOUND);
        reply.set_error(fmt::format("organisation {} is not registered", org->digits()));
      } else {
        reply.set_code(wire::OK);
        *reply.mutable_entry() = std::move(**entry);
      }
      log->debug("lookup {}: {}", org->digits(), wire::ReplyCode_Name(reply.code()));
    }
  }
  return reply;
}

}  // namespace bud::registry
