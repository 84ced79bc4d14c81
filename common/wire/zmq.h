// ZeroMQ framing shared by all peers: one protobuf per frame; a ROUTER sees [routing id, frame].
//
// Sends never block: a full pipe or an unroutable peer (ZMQ_ROUTER_MANDATORY) is a Status, not a
// silent drop. cppzmq exceptions stop here and become Status values.
#pragma once

#include <google/protobuf/message_lite.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "common/status.h"

namespace bud::wire {

inline constexpr uint32_t kProtocolVersion = 1;
// Largest frame any peer accepts (ZMQ_MAXMSGSIZE); larger ones drop the connection.
inline constexpr int64_t kMaxFrameBytes = 256ll << 20;

// Options every socket gets: linger, max message size, and ROUTER_MANDATORY on routers.
void ConfigureSocket(zmq::socket_t& socket, bool router, int linger_ms = 1000);

// Serialises and sends one frame (after the routing id, when given). kUnavailable when the peer
// is gone or the pipe is full (EAGAIN/EHOSTUNREACH).
Status SendProto(zmq::socket_t& socket, const google::protobuf::MessageLite& msg,
                 std::optional<std::string_view> routing_id = std::nullopt);

// Parses a frame; kMalformed with `what` when it is not a valid message of that type.
Status ParseProto(const zmq::message_t& frame, google::protobuf::MessageLite& msg,
                  std::string_view what);

// Receives the frames of one message without blocking; empty when none is waiting.
std::optional<std::vector<zmq::message_t>> RecvMultipart(zmq::socket_t& socket);

// A fresh CURVE key pair (Z85 public, Z85 secret).
std::pair<std::string, std::string> NewCurveKeyPair();

}  // namespace bud::wire
