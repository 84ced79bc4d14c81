// ZeroMQ framing helpers. See zmq.h.
#include "common/wire/zmq.h"

#include <fmt/format.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <mutex>

namespace bud::wire {

void ConfigureSocket(zmq::socket_t& socket, bool router, int linger_ms) {
  socket.set(zmq::sockopt::linger, linger_ms);
  socket.set(zmq::sockopt::maxmsgsize, kMaxFrameBytes);
  socket.set(zmq::sockopt::sndhwm, 100000);
  socket.set(zmq::sockopt::rcvhwm, 100000);
  if (router) {
    socket.set(zmq::sockopt::router_mandatory, 1);
    socket.set(zmq::sockopt::heartbeat_ivl, kZmtpHeartbeatIvlMs);
    socket.set(zmq::sockopt::heartbeat_timeout, kZmtpHeartbeatTimeoutMs);
    socket.set(zmq::sockopt::heartbeat_ttl, kZmtpHeartbeatTtlMs);
  }
}

Status SeedRoutingIds() {
  static std::once_flag once;
  static Status result = Status::Ok();
  std::call_once(once, [] {
    unsigned int seed = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1) {
      result = Status(Code::kInternal,
                      "cannot read random bytes to seed the routing id counter (RAND_bytes)");
      return;
    }
    std::srand(seed);
  });
  return result;
}

bool IsAutoRoutingId(std::string_view rid) { return rid.size() == 5 && rid[0] == '\0'; }

int SourceFd(const zmq::message_t& frame) {
  // ZMQ_SRCFD (2) is deprecated in libzmq 4.3 but still served, from the "__fd" property.
  return zmq_msg_get(const_cast<zmq_msg_t*>(frame.handle()), 2 /* ZMQ_SRCFD */);
}

Status SendProto(zmq::socket_t& socket, const google::protobuf::MessageLite& msg,
                 std::optional<std::string_view> routing_id) {
  size_t size = msg.ByteSizeLong();
  zmq::message_t frame(size);
  if (!msg.SerializeToArray(frame.data(), static_cast<int>(size))) {
    return Status(Code::kInternal, "cannot serialise message");
  }
  try {
    if (routing_id) {
      auto r = socket.send(zmq::buffer(routing_id->data(), routing_id->size()),
                           zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      if (!r) return Status(Code::kUnavailable, "peer pipe is full");
    }
    auto r = socket.send(frame, zmq::send_flags::dontwait);
    if (!r) return Status(Code::kUnavailable, "peer pipe is full");
  } catch (const zmq::error_t& e) {
    return Status(Code::kUnavailable, fmt::format("send failed: {}", e.what()));
  }
  return Status::Ok();
}

Status ParseProto(const zmq::message_t& frame, google::protobuf::MessageLite& msg,
                  std::string_view what) {
  if (frame.size() > static_cast<size_t>(kMaxFrameBytes) ||
      !msg.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    return Status(Code::kMalformed,
                  fmt::format("frame of {} bytes is not a valid {}", frame.size(), what));
  }
  return Status::Ok();
}

std::optional<std::vector<zmq::message_t>> RecvMultipart(zmq::socket_t& socket) {
  std::vector<zmq::message_t> parts;
  for (;;) {
    zmq::message_t m;
    auto r = socket.recv(m, parts.empty() ? zmq::recv_flags::dontwait : zmq::recv_flags::none);
    if (!r) return std::nullopt;
    bool more = m.more();
    parts.push_back(std::move(m));
    if (!more) break;
    if (parts.size() > 16) {
      // Drain the rest of a hostile message without keeping it.
      while (true) {
        zmq::message_t skip;
        if (!socket.recv(skip, zmq::recv_flags::none) || !skip.more()) break;
      }
      return std::vector<zmq::message_t>{};
    }
  }
  return parts;
}

std::pair<std::string, std::string> NewCurveKeyPair() {
  char pub[41], sec[41];
  zmq_curve_keypair(pub, sec);
  return {pub, sec};
}

}  // namespace bud::wire
