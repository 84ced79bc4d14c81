// A commit whose outcome the store cannot tell (CommitOutcome::kUnknown): the broker answers
// nothing to that batch, and the submitter's resubmission makes the outcome exact, whether the
// lost commit had stored the message or not (docs/protocol.md, "Broker").
//
// The broker runs in-process (broker::Server on a thread, a real ROUTER on 127.0.0.1 with an
// OS-picked port, no CURVE) on a real SQLite store wrapped by a fault injector that makes chosen
// commits end "unknown" after really committing them, or without committing them: what a
// database server's dropped connection can leave. The peers are plain DEALER sockets speaking
// proto/broker.proto.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <zmq.hpp>

#include "broker/server.h"
#include "broker/sqlite_queue_store.h"
#include "common/clock.h"
#include "common/crypto/envelope.h"
#include "common/fs.h"
#include "common/uuid.h"
#include "common/wire/zmq.h"
#include "proto/envelope.pb.h"
#include "tests/support/temp_dir.h"

namespace bud::broker {
namespace {

constexpr const char* kA = "0192:910076787";
constexpr const char* kB = "0192:910075918";

// Passes every call to a real SQLite store; the next `unknown` commits that carry submits end
// kUnknown, after committing (stored = true) or instead of committing (stored = false).
class UnknownCommits final : public QueueStore {
 public:
  UnknownCommits(std::unique_ptr<SqliteQueueStore> inner, int unknown, bool stored)
      : inner_(std::move(inner)), unknown_(unknown), stored_(stored) {}
  int injected() const { return injected_.load(); }

  CommitResult CommitBatch(std::vector<SubmitItem>& submits, std::vector<ReportItem>& reports,
                           const std::vector<NoticeAck>& acks) override {
    if (submits.empty() || unknown_ <= 0) return inner_->CommitBatch(submits, reports, acks);
    --unknown_;
    ++injected_;
    if (stored_) {
      CommitResult r = inner_->CommitBatch(submits, reports, acks);
      if (!r.durable()) return r;
    }
    return {CommitOutcome::kUnknown,
            Status(Code::kUnavailable, "the connection dropped during COMMIT (injected)")};
  }

  Result<StoreStats> Stats(bool h) override { return inner_->Stats(h); }
  Result<int64_t> QueuedCount() override { return inner_->QueuedCount(); }
  Result<int64_t> BytesUsed() override { return inner_->BytesUsed(); }
  std::string Describe() const override { return inner_->Describe(); }
  Status CheckWritable() override { return inner_->CheckWritable(); }
  Result<SessionLease> TakeSession(const std::string& o, const std::string& h, int64_t l) override {
    return inner_->TakeSession(o, h, l);
  }
  Result<std::vector<std::pair<std::string, int64_t>>> RenewSessions(const std::string& h,
                                                                     int64_t l) override {
    return inner_->RenewSessions(h, l);
  }
  Status ReleaseSession(const LeaseRef& l) override { return inner_->ReleaseSession(l); }
  Result<std::vector<Queued>> ClaimDeliveries(const LeaseRef& l, const std::vector<int64_t>& h,
                                              int n) override {
    return inner_->ClaimDeliveries(l, h, n);
  }
  Result<std::optional<Queued>> ClaimRedelivery(const LeaseRef& l, int64_t s) override {
    return inner_->ClaimRedelivery(l, s);
  }
  void SetQueueCaps(const QueueCaps& c) override { inner_->SetQueueCaps(c); }
  std::string QueueRoom(const std::string& s, const std::string& r) const override {
    return inner_->QueueRoom(s, r);
  }
  Status LimitBytes(int64_t b) override { return inner_->LimitBytes(b); }
  Result<std::vector<Queued>> NextFor(const std::string& r, int64_t a, int l) override {
    return inner_->NextFor(r, a, l);
  }
  Result<std::optional<Queued>> BySeq(int64_t s) override { return inner_->BySeq(s); }
  Result<std::vector<Notice>> NoticesFor(const std::string& o, int64_t a, int l) override {
    return inner_->NoticesFor(o, a, l);
  }
  Result<int64_t> AddAttempts(const std::vector<std::string>& ids) override {
    return inner_->AddAttempts(ids);
  }
  Result<int64_t> Attempts(const std::string& id) override { return inner_->Attempts(id); }
  Result<std::vector<Expired>> FailExhausted(int64_t m, int64_t n) override {
    return inner_->FailExhausted(m, n);
  }
  Result<std::vector<Expired>> ExpireDue(int64_t n, int l) override {
    return inner_->ExpireDue(n, l);
  }
  Result<int64_t> PruneHistory(int64_t b, int l) override { return inner_->PruneHistory(b, l); }
  Result<bool> IsKnown(const std::string& id) override { return inner_->IsKnown(id); }
  Result<bool> IsQueued(const std::string& id) override { return inner_->IsQueued(id); }
  Result<std::vector<UploadRow>> LoadUploads() override { return inner_->LoadUploads(); }
  Status InsertUpload(const UploadRow& r) override { return inner_->InsertUpload(r); }
  Status SetUploadPositions(const std::vector<std::pair<std::string, uint64_t>>& p) override {
    return inner_->SetUploadPositions(p);
  }
  Status DeleteUploads(const std::vector<std::string>& ids) override {
    return inner_->DeleteUploads(ids);
  }
  Status Maintain() override { return inner_->Maintain(); }

 private:
  std::unique_ptr<SqliteQueueStore> inner_;
  int unknown_;  // used by the server's thread only
  bool stored_;
  std::atomic<int> injected_{0};
};

wire::ClientMessage Msg() {
  wire::ClientMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  return m;
}

// A version 1 envelope the broker routes (it never verifies signatures nor opens payloads).
std::string Envelope(const std::string& id) {
  wire::Header h;
  h.set_version(crypto::kEnvelopeVersion);
  h.set_message_id(id);
  h.set_conversation_id(NewUuid());
  h.set_sender(kA);
  h.set_receiver(kB);
  h.set_process("urn:no:difi:profile:arkivmelding:administrasjon:ver1.0");
  h.set_document_type("urn:no:difi:arkivmelding:xsd::arkivmelding");
  h.set_created_unix_ms(NowMs());
  h.set_expires_unix_ms(NowMs() + 3600 * 1000);
  wire::Envelope env;
  env.set_header(h.SerializeAsString());
  env.set_signature("not a signature");
  env.set_payload("payload of " + id);
  return env.SerializeAsString();
}

class Peer {
 public:
  Peer(zmq::context_t& ctx, const std::string& endpoint, const std::string& org)
      : sock_(ctx, zmq::socket_type::dealer) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.connect(endpoint);
    auto hello = Msg();
    hello.mutable_hello()->set_orgnr(org);
    hello.mutable_hello()->set_credit(16);
    Send(hello);
    auto welcome = Receive(5000);
    REQUIRE(welcome);
    REQUIRE(welcome->has_welcome());
  }
  void Send(const wire::ClientMessage& m) { REQUIRE(wire::SendProto(sock_, m).ok()); }
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
  void Submit(const std::string& id) {
    auto m = Msg();
    m.mutable_submit()->set_envelope(Envelope(id));
    Send(m);
  }

 private:
  zmq::socket_t sock_;
};

struct RunningBroker {
  test::TempDir dir;
  Config config;
  zmq::context_t ctx{1};
  UnknownCommits* store = nullptr;
  std::unique_ptr<Server> server;
  std::thread thread;
  Status result;
  std::string endpoint;

  RunningBroker(int unknown, bool stored) {
    config.listen = "tcp://127.0.0.1:*";
    config.store = dir / "broker.db";
    config.endpoint_file = dir / "endpoint";
    config.store_max_bytes = 1ll << 30;
    auto sqlite = SqliteQueueStore::Open(config.store);
    REQUIRE(sqlite.ok());
    auto injector = std::make_unique<UnknownCommits>(std::move(*sqlite), unknown, stored);
    store = injector.get();
    server = std::make_unique<Server>(config, ctx, std::move(injector));
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

// The sender submits, gets no answer, submits again (as the integration point does after
// submit_timeout_ms) and gets ACCEPTED; the receiver gets the message exactly once.
void ResubmitMakesItExact(bool stored) {
  RunningBroker broker(/*unknown=*/1, stored);
  Peer sender(broker.ctx, broker.endpoint, kA);
  Peer receiver(broker.ctx, broker.endpoint, kB);
  const std::string id = NewUuid();
  sender.Submit(id);
  // Nothing comes back for the batch whose commit ended unknown.
  auto none = sender.Receive(1500);
  CHECK_FALSE(none);
  CHECK(broker.store->injected() == 1);

  sender.Submit(id);
  auto reply = sender.Receive(5000);
  REQUIRE(reply);
  REQUIRE(reply->has_submit_reply());
  CHECK(reply->submit_reply().message_id() == id);
  CHECK(reply->submit_reply().code() == wire::ACCEPTED);
  CHECK(broker.server->metrics().duplicates.load() == (stored ? 1 : 0));
  CHECK(broker.server->metrics().commits_unknown.load() == 1);

  int deliveries = 0;
  while (auto m = receiver.Receive(deliveries == 0 ? 5000 : 1000)) {
    if (!m->has_deliver()) continue;
    wire::Envelope env;
    REQUIRE(env.ParseFromString(m->deliver().envelope()));
    CHECK(env.payload() == "payload of " + id);
    ++deliveries;
    auto report = Msg();
    report.mutable_report()->set_message_id(id);
    report.mutable_report()->set_status(wire::MOTTATT);
    receiver.Send(report);
  }
  CHECK(deliveries == 1);
}

}  // namespace

TEST_CASE("a commit of unknown outcome that stored the batch: nothing answered, the resubmission "
          "is a duplicate, one delivery",
          "[broker][unknown]") {
  ResubmitMakesItExact(/*stored=*/true);
}

TEST_CASE("a commit of unknown outcome that stored nothing: nothing answered, the resubmission "
          "stores it, one delivery",
          "[broker][unknown]") {
  ResubmitMakesItExact(/*stored=*/false);
}

}  // namespace bud::broker
