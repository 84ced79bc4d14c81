// Bench broker client and envelope maker. See broker_link.h.
#include "bench/broker_link.h"

#include <poll.h>

#include <ctime>
#include <stdexcept>

#include "common/clock.h"
#include "common/crypto/openssl.h"
#include "common/uuid.h"
#include "common/wire/curve.h"
#include "common/wire/zmq.h"

namespace bud::bench {

EnvelopeMaker::EnvelopeMaker(std::string sender, std::string receiver, size_t envelope_bytes) {
  header_.set_version(1);
  header_.set_conversation_id(NewUuid());
  header_.set_sender(std::move(sender));
  header_.set_receiver(std::move(receiver));
  header_.set_process("urn:no:difi:profile:arkivmelding:administrasjon:ver1.0");
  header_.set_document_type("urn:no:difi:arkivmelding:xsd::arkivmelding");
  header_.set_recipient_cert_sha256(std::string(32, '\x11'));
  envelope_.set_signature(std::string(256, '\x5a'));
  envelope_.set_signer_cert_sha256(std::string(32, '\x22'));
  // Grow the payload until the whole envelope has the size asked (or just passes it).
  std::string id;
  size_t payload = 0;
  for (;;) {
    envelope_.set_payload(crypto::RandomBytes(payload));
    header_.set_payload_size(payload);
    header_.set_payload_sha256(crypto::Sha256(envelope_.payload()));
    const size_t size = Next(&id).size();
    if (size >= envelope_bytes) break;
    payload += envelope_bytes - size;
  }
}

std::string EnvelopeMaker::Next(std::string* id) {
  *id = NewUuid();
  header_.set_message_id(*id);
  const int64_t now = NowMs();
  header_.set_created_unix_ms(now);
  header_.set_expires_unix_ms(now + 3600 * 1000);
  header_.SerializeToString(envelope_.mutable_header());
  return envelope_.SerializeAsString();
}

BrokerLink::BrokerLink(zmq::context_t& ctx, const std::string& endpoint,
                       const std::string& server_key, const std::string& key_file,
                       const std::string& org, uint32_t credit)
    : socket_(ctx, zmq::socket_type::dealer), org_(org), credit_(credit) {
  wire::ConfigureSocket(socket_, /*router=*/false, /*linger_ms=*/0);
  socket_.set(zmq::sockopt::reconnect_ivl, 10);
  if (!server_key.empty()) {
    auto keys = wire::LoadCurveKeyFile(key_file);
    if (!keys.ok()) throw std::runtime_error("CURVE key of " + org + ": " + keys.status().ToString());
    wire::MakeCurveClient(socket_, *keys, server_key);
  }
  socket_.connect(endpoint);
}

int64_t BrokerLink::Connect(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    wire::ClientMessage hello;
    hello.set_protocol_version(wire::kProtocolVersion);
    hello.mutable_hello()->set_orgnr("0192:" + org_);
    hello.mutable_hello()->set_credit(credit_);
    Send(hello);
    const auto round = std::min(deadline, Clock::now() + Millis(1000));
    while (Clock::now() < round) {
      while (auto m = TryReceive()) {
        if (m->has_welcome()) {
          max_batch_items_ = static_cast<int>(m->welcome().max_batch_items());
          return NowNs();
        }
      }
      PollLinks(this, nullptr, 2);
    }
  }
  throw std::runtime_error("no Welcome from the broker for " + org_ + " within " +
                           std::to_string(timeout.count()) + " ms");
}

void BrokerLink::Send(const wire::ClientMessage& msg) {
  Status s = wire::SendProto(socket_, msg);
  if (!s.ok()) throw std::runtime_error("send to the broker as " + org_ + ": " + s.ToString());
  last_send_ns_ = NowNs();
}

// With a broker that takes Batch frames, items wait in one until Flush (or until it is full), as
// the integration point sends what it has ready; otherwise each goes in a frame of its own.
wire::Batch* BrokerLink::Batching() {
  if (max_batch_items_ <= 0) return nullptr;
  wire::Batch* b = pending_.mutable_batch();
  if (b->submits_size() + b->reports_size() + b->status_acks_size() >= max_batch_items_) {
    Flush();
    b = pending_.mutable_batch();
  }
  return b;
}

int BrokerLink::batched() const {
  if (!pending_.has_batch()) return 0;
  const wire::Batch& b = pending_.batch();
  return b.submits_size() + b.reports_size() + b.status_acks_size();
}

void BrokerLink::Flush() {
  if (!pending_.has_batch()) return;
  const wire::Batch& b = pending_.batch();
  if (b.submits_size() + b.reports_size() + b.status_acks_size() > 0) {
    pending_.set_protocol_version(wire::kProtocolVersion);
    Send(pending_);
  }
  pending_.Clear();
}

void BrokerLink::Submit(const std::string& envelope) {
  if (wire::Batch* b = Batching()) {
    b->add_submits()->set_envelope(envelope);
    return;
  }
  wire::ClientMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  m.mutable_submit()->set_envelope(envelope);
  Send(m);
}

void BrokerLink::Report(const std::string& message_id, wire::MessageStatus status) {
  wire::ClientMessage m;
  wire::Batch* b = Batching();
  wire::Report* r = b != nullptr ? b->add_reports() : m.mutable_report();
  r->set_message_id(message_id);
  r->set_status(status);
  r->set_at_unix_ms(NowMs());
  if (b == nullptr) {
    m.set_protocol_version(wire::kProtocolVersion);
    Send(m);
  }
}

void BrokerLink::AckNotice(uint64_t notice_id) {
  if (wire::Batch* b = Batching()) {
    b->add_status_acks()->set_notice_id(notice_id);
    return;
  }
  wire::ClientMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  m.mutable_status_ack()->set_notice_id(notice_id);
  Send(m);
}

void BrokerLink::KeepAlive() {
  if (NowNs() - last_send_ns_ < 300'000'000) return;
  if (batched() > 0) {
    Flush();
    return;
  }
  wire::ClientMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  m.mutable_heartbeat()->set_at_unix_ms(NowMs());
  Send(m);
}

std::optional<wire::BrokerMessage> BrokerLink::TryReceive() {
  zmq::message_t frame;
  if (!socket_.recv(frame, zmq::recv_flags::dontwait)) return std::nullopt;
  wire::BrokerMessage m;
  Status parsed = wire::ParseProto(frame, m, "BrokerMessage");
  if (!parsed.ok()) throw std::runtime_error("from the broker: " + parsed.ToString());
  if (m.has_refused()) throw std::runtime_error("broker refused " + org_ + ": " + m.refused().reason());
  return m;
}

void PollLinks(BrokerLink* a, BrokerLink* b, int ms) {
  zmq::pollitem_t items[2];
  int n = 0;
  for (BrokerLink* l : {a, b}) {
    if (l != nullptr) items[n++] = {l->socket().handle(), 0, ZMQ_POLLIN, 0};
  }
  zmq::poll(items, n, std::chrono::milliseconds(ms));
}

void WaitLinks(BrokerLink* a, BrokerLink* b, int64_t us) {
  pollfd fds[2];
  nfds_t n = 0;
  for (BrokerLink* l : {a, b}) {
    if (l == nullptr) continue;
    // Asked first: the descriptor only tells that the socket's state changed since it was last
    // asked, and asking is what clears it.
    if (l->socket().get(zmq::sockopt::events) & ZMQ_POLLIN) return;
    fds[n++] = {l->socket().get(zmq::sockopt::fd), POLLIN, 0};
  }
  const timespec wait{static_cast<time_t>(us / 1'000'000),
                      static_cast<long>(us % 1'000'000) * 1000};
  ::ppoll(fds, n, &wait, nullptr);
}

}  // namespace bud::bench
