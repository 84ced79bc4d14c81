// A bench client of the broker: one CURVE DEALER speaking proto/broker.proto as a registered
// agency (its CURVE key is the agency's, so ZAP binds the connection to that organisation), and
// a maker of envelopes for it.
//
// Envelopes are NOT sealed: sealing is the integration point's work and would make the client,
// not the broker, the bottleneck on a 2-core machine. The broker never verifies signatures or
// opens payloads (broker/server.cc parses the header only), so what it does with these is what
// it does with real ones. Every header field is valid: a fresh lower-case UUID per message, the
// session's organisation as sender, a registered receiver, expiry one hour ahead, payload size
// and SHA-256 of the payload carried; the signature is a 256-byte filler (the size of an
// RSA-2048 signature) and the payload random bytes sized so the whole envelope is the size asked.
//
// Operation: used by one thread; every wait is a poll with a deadline.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "bench/stats.h"
#include "proto/broker.pb.h"
#include "proto/envelope.pb.h"

namespace bud::bench {

class EnvelopeMaker {
 public:
  // `sender`, `receiver`: "0192:<orgnr>". `envelope_bytes`: size of each serialised envelope.
  EnvelopeMaker(std::string sender, std::string receiver, size_t envelope_bytes);
  // A new envelope with a fresh message id, written to `*id`.
  std::string Next(std::string* id);

 private:
  wire::Header header_;
  wire::Envelope envelope_;
};

class BrokerLink {
 public:
  // `key_file`: the agency's CURVE key file; `org`: its 9 digits.
  BrokerLink(zmq::context_t& ctx, const std::string& endpoint, const std::string& server_key,
             const std::string& key_file, const std::string& org, uint32_t credit);

  // Hello (again every second) until Welcome; throws std::runtime_error at the deadline or on
  // Refused. Returns the time the Welcome arrived (NowNs()).
  int64_t Connect(Millis timeout);
  void Send(const wire::ClientMessage& msg);
  // Submit, Report and AckNotice wait in one Batch frame until Flush() (or KeepAlive()) when the
  // broker's Welcome takes batches, as the integration point sends what it has ready.
  void Submit(const std::string& envelope);
  void Report(const std::string& message_id, wire::MessageStatus status);
  void AckNotice(uint64_t notice_id);
  void Flush();
  // Items waiting in the unsent Batch.
  int batched() const;
  // When nothing was sent for 300 ms (the broker drops silent sessions): the waiting Batch, or
  // else a heartbeat.
  void KeepAlive();
  // The next message if one is waiting (no blocking); throws on Refused.
  std::optional<wire::BrokerMessage> TryReceive();
  zmq::socket_t& socket() { return socket_; }

 private:
  zmq::socket_t socket_;
  std::string org_;
  uint32_t credit_;
  int64_t last_send_ns_ = 0;
  int max_batch_items_ = 0;  // from the Welcome
  wire::ClientMessage pending_;
  wire::Batch* Batching();
};

// Blocks in zmq_poll on up to two links for at most `ms` milliseconds.
void PollLinks(BrokerLink* a, BrokerLink* b, int ms);

// Blocks until one of up to two links may have something to read, or for at most `us`
// microseconds. A fixed rate of thousands a second waits less than zmq_poll's millisecond
// between its submits: a wait of 0 ms there would spin a core the broker needs.
void WaitLinks(BrokerLink* a, BrokerLink* b, int64_t us);

}  // namespace bud::bench
