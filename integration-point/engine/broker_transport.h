// The socket the broker link talks through. BrokerTransport is the seam: the link sends and
// receives whole frames and asks for a fresh connection; DealerTransport is the real one (a
// ZeroMQ DEALER, CURVE when keys are given) and runs over tcp:// to a broker or, in tests,
// over inproc:// to a ROUTER the test binds in the same context.
// Concurrency: created, used and closed by the engine thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "common/wire/curve.h"
#include "common/wire/zmq.h"
#include "proto/broker.pb.h"

namespace bud::ip {

class BrokerTransport {
 public:
  virtual ~BrokerTransport() = default;
  // Drops the current socket (unsent frames included) and connects a new one to `endpoint`.
  virtual void Connect(const std::string& endpoint) = 0;
  // False when the frame could not be queued (no peer, or the queue is full): retried later.
  virtual bool Send(const wire::ClientMessage& msg) = 0;
  // A frame when one is waiting; empty when none is ("would block" is not a failure).
  virtual std::optional<zmq::message_t> TryReceive() = 0;
  // The socket to poll for input (valid after Connect).
  virtual void* PollHandle() = 0;
};

struct DealerOptions {
  std::optional<wire::CurveKeyPair> curve;  // none: no CURVE (development, inproc tests)
  std::string server_key;                   // the broker's CURVE public key (with curve)
};

class DealerTransport final : public BrokerTransport {
 public:
  DealerTransport(zmq::context_t& ctx, DealerOptions options)
      : ctx_(ctx), options_(std::move(options)) {}
  DealerTransport(const DealerTransport&) = delete;
  DealerTransport& operator=(const DealerTransport&) = delete;

  void Connect(const std::string& endpoint) override;
  bool Send(const wire::ClientMessage& msg) override;
  std::optional<zmq::message_t> TryReceive() override;
  void* PollHandle() override { return socket_ ? socket_->handle() : nullptr; }

 private:
  zmq::context_t& ctx_;
  DealerOptions options_;
  std::unique_ptr<zmq::socket_t> socket_;
};

}  // namespace bud::ip
