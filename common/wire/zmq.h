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

// ZMTP heartbeats on server sockets: a PING every kZmtpHeartbeatIvlMs; a connection that has
// sent nothing (not even a PONG) for kZmtpHeartbeatTimeoutMs is dropped by libzmq; peers are
// told (TTL) to drop us after kZmtpHeartbeatTtlMs of silence.
inline constexpr int kZmtpHeartbeatIvlMs = 5000;
inline constexpr int kZmtpHeartbeatTimeoutMs = 15000;
inline constexpr int kZmtpHeartbeatTtlMs = 30000;

// Options every socket gets: linger, max message size; on routers also ROUTER_MANDATORY and
// ZMTP heartbeats.
void ConfigureSocket(zmq::socket_t& socket, bool router, int linger_ms = 1000);

// Seeds the C library's rand() from the OS's random source (RAND_bytes). libzmq starts a
// ROUTER's counter of routing ids for id-less peers at rand(), and never seeds it: unseeded,
// every process hands out 00 6b8b4567, 00 6b8b4568, ... Call before the first ROUTER socket is
// created (the counter's start is drawn in the socket's constructor). Idempotent.
Status SeedRoutingIds();

// Whether a ROUTER made this routing id itself: libzmq's ids for peers that set none are exactly
// 5 bytes, 0x00 and a 32-bit counter. Anything else was chosen by the peer (ZMQ_ROUTING_ID). A
// chosen id of this shape cannot be told apart, which is why the counter's start must be
// unpredictable (SeedRoutingIds).
bool IsAutoRoutingId(std::string_view rid);

// The file descriptor of the TCP connection a received frame came in on (ZMQ_SRCFD), or -1.
// The fd belongs to libzmq's I/O thread; only shutdown(2) it, through ConnectionWatch.
int SourceFd(const zmq::message_t& frame);

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
