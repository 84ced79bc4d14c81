// A commit whose outcome the store cannot tell (CommitOutcome::kUnknown): the broker answers
// nothing to that batch, and the submitter's resubmission makes the outcome exact, whether the
// lost commit had stored the message or not (docs/protocol.md, "Broker").
//
// The broker runs in-process (tests/broker/server_harness.h) on a real SQLite store wrapped by a
// fault injector that makes chosen commits end "unknown" after really committing them, or
// without committing them: what a database server's dropped connection can leave.
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <zmq.hpp>

#include "broker/server.h"
#include "broker/sqlite_queue_store.h"
#include "common/uuid.h"
#include "proto/envelope.pb.h"
#include "tests/broker/server_harness.h"

namespace bud::broker {
namespace {

using test_server::kA;
using test_server::kB;
using test_server::Peer;
using test_server::RunningBroker;

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

// The sender submits, gets no answer, submits again (as the integration point does after
// submit_timeout_ms) and gets ACCEPTED; the receiver gets the message exactly once.
void ResubmitMakesItExact(bool stored) {
  UnknownCommits* store = nullptr;
  RunningBroker broker([&](const std::string& path) -> std::unique_ptr<QueueStore> {
    auto sqlite = SqliteQueueStore::Open(path);
    REQUIRE(sqlite.ok());
    auto injector = std::make_unique<UnknownCommits>(std::move(*sqlite), /*unknown=*/1, stored);
    store = injector.get();
    return injector;
  });
  Peer sender(broker.ctx, broker.endpoint, kA);
  Peer receiver(broker.ctx, broker.endpoint, kB);
  const std::string id = NewUuid();
  sender.Submit(id);
  // Nothing comes back for the batch whose commit ended unknown.
  auto none = sender.Receive(1500);
  CHECK_FALSE(none);
  CHECK(store->injected() == 1);

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
    receiver.Report(id, wire::MOTTATT);
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
