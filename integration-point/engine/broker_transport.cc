// See broker_transport.h.
#include "integration-point/engine/broker_transport.h"

#include "common/log.h"

namespace bud::ip {

void DealerTransport::Connect(const std::string& endpoint) {
  socket_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
  wire::ConfigureSocket(*socket_, /*router=*/false, /*linger_ms=*/0);
  socket_->set(zmq::sockopt::immediate, 1);
  if (options_.curve) wire::MakeCurveClient(*socket_, *options_.curve, options_.server_key);
  socket_->set(zmq::sockopt::reconnect_ivl, 100);
  socket_->set(zmq::sockopt::reconnect_ivl_max, 5000);
  socket_->connect(endpoint);
}

bool DealerTransport::Send(const wire::ClientMessage& msg) {
  if (!socket_) return false;
  Status s = wire::SendProto(*socket_, msg);
  if (!s.ok()) {
    Logger("ip")->debug("send to broker failed: {}", s.message());
    return false;
  }
  return true;
}

std::optional<zmq::message_t> DealerTransport::TryReceive() {
  if (!socket_) return std::nullopt;
  zmq::message_t frame;
  try {
    if (!socket_->recv(frame, zmq::recv_flags::dontwait)) return std::nullopt;
  } catch (const zmq::error_t& e) {
    Logger("ip")->warn("receive from broker failed: {}", e.what());
    return std::nullopt;
  }
  return frame;
}

}  // namespace bud::ip
