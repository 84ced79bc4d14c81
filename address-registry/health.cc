// `bud-registry health`. See health.h.
#include "address-registry/health.h"

#include <fmt/format.h>

#include <cctype>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/fs.h"
#include "common/wire/curve.h"
#include "common/wire/zmq.h"
#include "proto/registry.pb.h"

namespace bud::registry {
namespace {

HealthAnswer Down(const std::string& endpoint, const std::string& why) {
  nlohmann::json j = {{"status", "DOWN"}, {"endpoint", endpoint}, {"problems", {why}}};
  return {false, j.dump()};
}

}  // namespace

HealthAnswer AskHealth(zmq::context_t& ctx, const Config& config, int64_t timeout_ms) {
  std::string endpoint = config.listen;
  if (!config.endpoint_file.empty()) {
    auto published = ReadFile(config.endpoint_file);
    if (!published.ok()) {
      return Down(endpoint, fmt::format("no published endpoint ({}): is the registry running?",
                                        published.status().message()));
    }
    endpoint = *published;
    while (!endpoint.empty() && std::isspace(static_cast<unsigned char>(endpoint.back()))) {
      endpoint.pop_back();
    }
  }
  try {
    zmq::socket_t sock(ctx, zmq::socket_type::dealer);
    wire::ConfigureSocket(sock, /*router=*/false, /*linger_ms=*/0);
    if (!config.curve_key_file.empty()) {
      auto keys = wire::LoadCurveKeyFile(config.curve_key_file);
      if (!keys.ok()) return Down(endpoint, keys.status().ToString());
      wire::MakeCurveClient(sock, *keys, keys->public_key);
    }
    sock.connect(endpoint);
    wire::RegistryRequest req;
    req.set_protocol_version(wire::kProtocolVersion);
    req.set_request_id(1);
    req.mutable_health();
    sock.send(zmq::buffer(req.SerializeAsString()), zmq::send_flags::none);
    const int64_t deadline = MonoMs() + timeout_ms;
    while (MonoMs() < deadline) {
      zmq::pollitem_t items[] = {{sock.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::chrono::milliseconds(std::max<int64_t>(1, deadline - MonoMs())));
      zmq::message_t frame;
      if (!(items[0].revents & ZMQ_POLLIN) || !sock.recv(frame, zmq::recv_flags::dontwait)) {
        continue;
      }
      wire::RegistryReply reply;
      if (!wire::ParseProto(frame, reply, "RegistryReply").ok() || reply.request_id() != 1) {
        continue;
      }
      const bool up = reply.code() == wire::OK;
      std::vector<std::string> problems(reply.problems().begin(), reply.problems().end());
      if (!up && problems.empty()) {
        problems.push_back(
            fmt::format("answered {}: {}", wire::ReplyCode_Name(reply.code()), reply.error()));
      }
      nlohmann::json j = {{"status", up ? "UP" : "DOWN"},
                          {"endpoint", endpoint},
                          {"store", reply.store()},
                          {"problems", problems}};
      return {up, j.dump()};
    }
  } catch (const zmq::error_t& e) {
    return Down(endpoint, fmt::format("cannot ask: {}", e.what()));
  }
  return Down(endpoint, fmt::format("the registry did not answer within {} ms", timeout_ms));
}

}  // namespace bud::registry
