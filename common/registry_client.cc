// Registry client. See registry_client.h.
#include "common/registry_client.h"

#include <fmt/format.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/wire/zmq.h"

namespace bud {

namespace {
constexpr int64_t kNegativeCacheMs = 2000;
}

RegistryClient::RegistryClient(zmq::context_t& ctx, std::string endpoint, int64_t timeout_ms,
                               int64_t cache_ms, std::optional<wire::CurveKeyPair> curve,
                               std::string server_key)
    : ctx_(ctx),
      endpoint_(std::move(endpoint)),
      timeout_ms_(timeout_ms),
      cache_ms_(cache_ms),
      curve_(std::move(curve)),
      server_key_(std::move(server_key)) {}

void RegistryClient::Reconnect() {
  sock_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
  wire::ConfigureSocket(*sock_, /*router=*/false, /*linger_ms=*/0);
  if (curve_ && !server_key_.empty()) wire::MakeCurveClient(*sock_, *curve_, server_key_);
  sock_->connect(endpoint_);
}

Result<wire::RegistryEntry> RegistryClient::Lookup(const Orgnr& org) {
  wire::RegistryRequest req;
  req.mutable_lookup()->set_orgnr(org.wire());
  return Ask(req, org.digits(),
             fmt::format("organisation {} is not in the address registry", org.wire()));
}

Result<wire::RegistryEntry> RegistryClient::LookupByKey(const std::string& z85_key) {
  wire::RegistryRequest req;
  req.mutable_lookup_by_key()->set_curve_public_key(z85_key);
  return Ask(req, "key:" + z85_key,
             fmt::format("no organisation has CURVE key {} in the address registry", z85_key));
}

Result<wire::RegistryEntry> RegistryClient::Ask(wire::RegistryRequest& req,
                                                const std::string& cache_key,
                                                const std::string& not_found) {
  const int64_t now = MonoMs();
  if (auto it = cache_.find(cache_key); it != cache_.end() && it->second.until_mono > now) {
    if (it->second.entry) return *it->second.entry;
    return Status(Code::kNotFound, it->second.error);
  }
  if (!sock_) Reconnect();
  req.set_protocol_version(wire::kProtocolVersion);
  const uint64_t id = next_id_++;
  req.set_request_id(id);
  // A DEALER with nobody connected yet queues the request; the timeout covers that wait too.
  try {
    sock_->send(zmq::buffer(req.SerializeAsString()), zmq::send_flags::none);
  } catch (const zmq::error_t& e) {
    Reconnect();
    return Status(Code::kUnavailable, fmt::format("address registry {}: {}", endpoint_, e.what()));
  }
  const int64_t deadline = MonoMs() + timeout_ms_;
  while (MonoMs() < deadline) {
    zmq::pollitem_t items[] = {{sock_->handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 1, std::chrono::milliseconds(std::max<int64_t>(1, deadline - MonoMs())));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      break;
    }
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    zmq::message_t frame;
    if (!sock_->recv(frame, zmq::recv_flags::dontwait)) continue;
    wire::RegistryReply reply;
    if (!wire::ParseProto(frame, reply, "RegistryReply").ok() || reply.request_id() != id) {
      continue;  // a stale or garbled reply: keep waiting for ours
    }
    if (reply.code() == wire::OK) {
      cache_[cache_key] = {reply.entry(), "", MonoMs() + cache_ms_};
      return reply.entry();
    }
    if (reply.code() == wire::NOT_FOUND) {
      cache_[cache_key] = {std::nullopt, not_found, MonoMs() + kNegativeCacheMs};
      return Status(Code::kNotFound, not_found);
    }
    return Status(Code::kUnavailable,
                  fmt::format("address registry answered {}: {}",
                              wire::ReplyCode_Name(reply.code()), reply.error()));
  }
  Reconnect();
  return Status(Code::kUnavailable, fmt::format("address registry {} did not answer within {} ms",
                                                endpoint_, timeout_ms_));
}

}  // namespace bud
