// An in-process broker for tests of the server's loop: broker::Server on a thread, a real
// ROUTER on 127.0.0.1 with an OS-picked port, no CURVE, a store the test makes (a real SQLite
// store, or one wrapped by a fault injector). The peers are plain DEALER sockets speaking
// proto/broker.proto. Every wait has a deadline.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "broker/server.h"
#include "common/clock.h"
#include "common/crypto/envelope.h"
#include "common/fs.h"
#include "common/uuid.h"
#include "common/wire/zmq.h"
#include "proto/envelope.pb.h"
#include "tests/support/temp_dir.h"

namespace bud::broker::test_server {

constexpr const char* kA = "0192:910076787";
constexpr const char* kB = "0192:910075918";

inline wire::ClientMessage Msg() {
  wire::ClientMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  return m;
}

// A version 1 envelope the broker routes (it verifies no signature and opens no payload).
inline std::string Envelope(const std::string& id, const std::string& sender = kA,
                            const std::string& receiver = kB,
                            const std::string& sender_channel = "",
                            const std::string& receiver_channel = "") {
  wire::Header h;
  h.set_version(crypto::kEnvelopeVersion);
  h.set_message_id(id);
  h.set_conversation_id(NewUuid());
  h.set_sender(sender);
  h.set_receiver(receiver);
  h.set_process("urn:no:difi:profile:arkivmelding:administrasjon:ver1.0");
  h.set_document_type("urn:no:difi:arkivmelding:xsd::arkivmelding");
  h.set_created_unix_ms(NowMs());
  h.set_expires_unix_ms(NowMs() + 3600 * 1000);
  h.set_sender_channel(sender_channel);
  h.set_receiver_channel(receiver_channel);
  wire::Envelope env;
  env.set_header(h.SerializeAsString());
  env.set_signature("not a signature");
  env.set_payload("payload of " + id);
  return env.SerializeAsString();
}

// A DEALER peer. Receive sends a heartbeat while it waits (the broker would end a silent
// session) and skips the broker's heartbeats.
class Peer {
 public:
  // Connected, no Hello yet.
  Peer(zmq::context_t& ctx, const std::string& endpoint) : sock_(ctx, zmq::socket_type::dealer) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.connect(endpoint);
  }
  // Connected, with a session of `org` (no channel).
  Peer(zmq::context_t& ctx, const std::string& endpoint, const std::string& org)
      : Peer(ctx, endpoint) {
    REQUIRE(Hello(org, "").has_welcome());
  }
  // Hello; the broker's first answer (Welcome or Refused).
  wire::BrokerMessage Hello(const std::string& org, const std::string& channel) {
    auto hello = Msg();
    hello.mutable_hello()->set_orgnr(org);
    hello.mutable_hello()->set_credit(16);
    hello.mutable_hello()->set_channel(channel);
    Send(hello);
    auto answer = Receive(5000);
    REQUIRE(answer);
    return *answer;
  }
  void Send(const wire::ClientMessage& m) { REQUIRE(wire::SendProto(sock_, m).ok()); }
  // Without waiting: false when this socket's own pipe is full.
  bool TrySend(const wire::ClientMessage& m) { return wire::SendProto(sock_, m).ok(); }
  std::optional<wire::BrokerMessage> Receive(int timeout_ms) {
    const int64_t until = MonoMs() + timeout_ms;
    while (MonoMs() < until) {
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
      if (!(item.revents & ZMQ_POLLIN)) {
        auto beat = Msg();
        beat.mutable_heartbeat();
        Send(beat);
        continue;
      }
      zmq::message_t frame;
      if (!sock_.recv(frame, zmq::recv_flags::dontwait)) continue;
      wire::BrokerMessage m;
      REQUIRE(m.ParseFromArray(frame.data(), static_cast<int>(frame.size())));
      if (m.has_heartbeat()) continue;
      return m;
    }
    return std::nullopt;
  }
  // A submit of Envelope(id), not waiting for the answer.
  void Submit(const std::string& id) {
    auto m = Msg();
    m.mutable_submit()->set_envelope(Envelope(id));
    Send(m);
  }
  // A submit of `envelope`, and its answer within 10 s (report replies that come first are
  // skipped; a Refused fails the test).
  wire::SubmitReply SubmitEnvelope(const std::string& envelope) {
    auto m = Msg();
    m.mutable_submit()->set_envelope(envelope);
    Send(m);
    const int64_t until = MonoMs() + 10000;
    for (;;) {
      auto reply = Receive(static_cast<int>(std::max<int64_t>(until - MonoMs(), 0)));
      REQUIRE(reply);
      INFO("refused: " << reply->refused().reason());
      REQUIRE_FALSE(reply->has_refused());
      if (reply->has_submit_reply()) return reply->submit_reply();
    }
  }
  void Report(const std::string& id, wire::MessageStatus status) {
    auto m = Msg();
    m.mutable_report()->set_message_id(id);
    m.mutable_report()->set_status(status);
    Send(m);
  }
  // Everything that arrives until `quiet_ms` pass without a frame.
  std::vector<wire::BrokerMessage> Drain(int first_ms, int quiet_ms = 700) {
    std::vector<wire::BrokerMessage> out;
    while (auto m = Receive(out.empty() ? first_ms : quiet_ms)) out.push_back(std::move(*m));
    return out;
  }

 private:
  zmq::socket_t sock_;
};

struct RunningBroker {
  test::TempDir dir;
  Config config;
  zmq::context_t ctx{1};
  std::unique_ptr<Server> server;
  std::thread thread;
  Status result;
  std::string endpoint;

  // `open` makes the store from its path (a real SQLite store, or one wrapped by a test); without
  // it the server opens the store its config names, as `bud-broker run` does. `configure` changes
  // the config before the server is made.
  explicit RunningBroker(
      const std::function<std::unique_ptr<QueueStore>(const std::string&)>& open = nullptr,
      const std::function<void(Config&)>& configure = nullptr) {
    config.listen = "tcp://127.0.0.1:*";
    config.store = dir / "broker.db";
    config.endpoint_file = dir / "endpoint";
    config.store_max_bytes = 1ll << 30;
    if (configure) configure(config);
    server = open ? std::make_unique<Server>(config, ctx, open(config.store))
                  : std::make_unique<Server>(config, ctx);
    thread = std::thread([this] { result = server->Run(); });
    const int64_t until = MonoMs() + 10000;
    while (MonoMs() < until) {
      auto text = ReadFile(config.endpoint_file);
      if (text.ok() && !text->empty()) {
        endpoint = *text;
        while (!endpoint.empty() && (endpoint.back() == '\n' || endpoint.back() == ' ')) {
          endpoint.pop_back();
        }
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE_FALSE(endpoint.empty());
  }
  ~RunningBroker() {
    server->Stop();
    if (thread.joinable()) thread.join();
  }
};

}  // namespace bud::broker::test_server
