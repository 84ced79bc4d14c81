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

std::vector<std::string> BrokerEndpointsOf(const wire::RegistryEntry& entry) {
  std::vector<std::string> out(entry.broker_endpoints().begin(), entry.broker_endpoints().end());
  if (out.empty() && !entry.broker_endpoint().empty()) out.push_back(entry.broker_endpoint());
  return out;
}

RegistryClient::RegistryClient(zmq::context_t& ctx, RegistryClientOptions options)
    : ctx_(ctx), options_(std::move(options)) {
  if (options_.endpoints.empty()) options_.endpoints.push_back("");  // fails on connect
}

RegistryClient::RegistryClient(zmq::context_t& ctx, std::string endpoint, int64_t timeout_ms,
                               int64_t cache_ms, std::optional<wire::CurveKeyPair> curve,
                               std::string server_key)
    : RegistryClient(ctx, RegistryClientOptions{.endpoints = {std::move(endpoint)},
                                                .timeout_ms = timeout_ms,
                                                .cache_ms = cache_ms,
                                                .stale_ms = 0,
                                                .curve = std::move(curve),
                                                .server_key = std::move(server_key)}) {}

void RegistryClient::Reconnect() {
  sock_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
  wire::ConfigureSocket(*sock_, /*router=*/false, /*linger_ms=*/0);
  if (options_.curve && !options_.server_key.empty()) {
    wire::MakeCurveClient(*sock_, *options_.curve, options_.server_key);
  }
  sock_->connect(current_endpoint());
}

Result<wire::RegistryEntry> RegistryClient::Lookup(const Orgnr& org, bool* stale) {
  wire::RegistryRequest req;
  req.mutable_lookup()->set_orgnr(org.wire());
  return Ask(req, org.digits(),
             fmt::format("organisation {} is not in the address registry", org.wire()), stale);
}

Result<wire::RegistryEntry> RegistryClient::LookupByKey(const std::string& z85_key, bool* stale) {
  wire::RegistryRequest req;
  req.mutable_lookup_by_key()->set_curve_public_key(z85_key);
  return Ask(req, "key:" + z85_key,
             fmt::format("no organisation has CURVE key {} in the address registry", z85_key),
             stale);
}

Result<wire::RegistryReply> RegistryClient::AskCurrent(const wire::RegistryRequest& req) {
  try {
    if (!sock_) Reconnect();
    // A DEALER with nobody connected yet queues the request; the timeout covers that wait too.
    sock_->send(zmq::buffer(req.SerializeAsString()), zmq::send_flags::none);
  } catch (const zmq::error_t& e) {
    sock_.reset();
    return Status(Code::kUnavailable,
                  fmt::format("address registry {}: {}", current_endpoint(), e.what()));
  }
  const int64_t deadline = MonoMs() + options_.timeout_ms;
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
    if (!wire::ParseProto(frame, reply, "RegistryReply").ok() ||
        reply.request_id() != req.request_id()) {
      continue;  // a stale or garbled reply: keep waiting for ours
    }
    return reply;
  }
  sock_.reset();  // a late reply must not be taken for the next request's
  return Status(Code::kUnavailable, fmt::format("address registry {} did not answer within {} ms",
                                                current_endpoint(), options_.timeout_ms));
}

Result<wire::RegistryEntry> RegistryClient::Ask(wire::RegistryRequest& req,
                                                const std::string& cache_key,
                                                const std::string& not_found, bool* stale) {
  if (stale) *stale = false;
  const int64_t now = MonoMs();
  auto cached = cache_.find(cache_key);
  if (cached != cache_.end() && cached->second.fresh_until_mono > now) {
    if (cached->second.entry) return *cached->second.entry;
    return Status(Code::kNotFound, cached->second.error);
  }
  req.set_protocol_version(wire::kProtocolVersion);
  std::string errors;
  const size_t n = options_.endpoints.size();
  for (size_t tried = 0; tried < n; ++tried) {
    if (tried > 0) {
      current_ = (current_ + 1) % n;
      sock_.reset();
      endpoint_moves_.fetch_add(1, std::memory_order_relaxed);
      Logger("registry-client")
          ->warn("address registry: trying the next endpoint {} ({} of {})", current_endpoint(),
                 tried + 1, n);
    }
    req.set_request_id(next_id_++);
    auto reply = AskCurrent(req);
    if (!reply.ok()) {
      errors += (errors.empty() ? "" : "; ") + reply.status().message();
      continue;
    }
    if (reply->code() == wire::OK) {
      cache_[cache_key] = {reply->entry(), "", MonoMs() + options_.cache_ms};
      return reply->entry();
    }
    if (reply->code() == wire::NOT_FOUND) {
      // Removed is removed: no stale entry outlives this answer.
      cache_[cache_key] = {std::nullopt, not_found, MonoMs() + kNegativeCacheMs};
      return Status(Code::kNotFound, not_found);
    }
    if (reply->code() != wire::INTERNAL) {  // BAD_REQUEST, UNSUPPORTED_VERSION: ours to fix
      return Status(Code::kUnavailable,
                    fmt::format("address registry answered {}: {}",
                                wire::ReplyCode_Name(reply->code()), reply->error()));
    }
    // INTERNAL: that registry's store is in trouble; another may serve.
    errors +=
        (errors.empty() ? "" : "; ") + fmt::format("address registry {} answered INTERNAL: {}",
                                                   current_endpoint(), reply->error());
  }
  const int64_t after = MonoMs();
  if (cached != cache_.end() && cached->second.entry &&
      after < cached->second.fresh_until_mono + options_.stale_ms) {
    served_stale_.fetch_add(1, std::memory_order_relaxed);
    if (stale) *stale = true;
    Logger("registry-client")
        ->warn(
            "no address registry answers ({}); serving the cached entry of {} ({} ms past its "
            "cache time, at most {} ms)",
            errors, cached->second.entry->orgnr(), after - cached->second.fresh_until_mono,
            options_.stale_ms);
    return *cached->second.entry;
  }
  return Status(Code::kUnavailable, errors);
}

}  // namespace bud
