// The turn (one transaction per loop turn, after-commit effects), the report queue, the defer
// gate and the hand-over queue of the integration point's engine, in process.
#include <catch2/catch.hpp>
#include <thread>

#include "common/fs.h"
#include "common/uuid.h"
#include "integration-point/engine/hand_over.h"
#include "tests/ip/support/parts_rig.h"

namespace bud::ip {
namespace {

using rig::Rig;

// A received message recorded in the store with its MOTTATT report pending.
std::string Received(Rig& r) {
  MessageRow m;
  m.message_id = NewUuid();
  m.sender = std::string("0192:") + rig::kPeer;
  m.receiver = std::string("0192:") + rig::kMe;
  m.process = "urn:test:process";
  m.document_type = "urn:test:doc";
  REQUIRE(r.store->incoming
              .RecordIncoming(m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", r.clock.NowMs())
              .ok());
  return m.message_id;
}

// The broker's answer to the MOTTATT report of `id`.
wire::BrokerMessage ReportReply(const std::string& id, bool ok, const std::string& reason = "") {
  wire::BrokerMessage reply;
  reply.mutable_report_reply()->set_message_id(id);
  reply.mutable_report_reply()->set_status(wire::MOTTATT);
  reply.mutable_report_reply()->set_ok(ok);
  if (!reason.empty()) reply.mutable_report_reply()->set_reason(reason);
  return reply;
}

MessageRow Outgoing() {
  MessageRow m;
  m.message_id = NewUuid();
  m.sender = std::string("0192:") + rig::kMe;
  m.receiver = std::string("0192:") + rig::kPeer;
  m.process = "urn:test:process";
  m.document_type = "urn:test:doc";
  return m;
}

TEST_CASE("turn: what waits for the commit runs after it, not before", "[ip][turn]") {
  Rig r;
  REQUIRE(r.turn->Begin().ok());
  CHECK(r.turn->open());
  int ran = 0;
  r.turn->AfterCommit([&] { ++ran; });
  CHECK(ran == 0);
  auto out = r.turn->Finish();
  CHECK(out.status.ok());
  CHECK(ran == 1);
  CHECK_FALSE(r.turn->open());
}

TEST_CASE("turn: outside a turn an action runs at once and a rollback action is dropped",
          "[ip][turn]") {
  Rig r;
  int ran = 0, rolled = 0;
  r.turn->AfterCommit([&] { ++ran; });
  r.turn->OnRollback([&](const bud::Status&) { ++rolled; });
  CHECK(ran == 1);
  (void)r.turn->Finish();
  CHECK(rolled == 0);
}

TEST_CASE("turn: writes in a turn are durable only after Finish", "[ip][turn]") {
  Rig r;
  REQUIRE(r.turn->Begin().ok());
  const std::string id = Received(r);
  {
    auto reader = PointStore::OpenReadOnly(r.config.store);
    REQUIRE(reader.ok());
    auto row = (*reader)->history.Get(id, Direction::kIn);
    REQUIRE(row.ok());
    CHECK_FALSE(row->has_value());  // not committed yet
  }
  REQUIRE(r.turn->Finish().status.ok());
  auto reader = PointStore::OpenReadOnly(r.config.store);
  REQUIRE(reader.ok());
  auto row = (*reader)->history.Get(id, Direction::kIn);
  REQUIRE(row.ok());
  CHECK(row->has_value());
}

TEST_CASE("turn: when the inbox cannot be published the turn rolls back and says why",
          "[ip][turn]") {
  Rig r;
  r.Connect();
  // A delivery staged for the inbox, then the inbox taken away: Publish fails.
  REQUIRE(r.turn->Begin().ok());
  const auto h = r.Header();
  wire::BrokerMessage m;
  m.mutable_deliver()->set_envelope(r.Small(h));
  r.broker->Send(m);
  zmq::pollitem_t item{r.transport->PollHandle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, std::chrono::milliseconds(500));
  auto frame = r.transport->TryReceive();
  REQUIRE(frame);
  auto msg = r.link->OnFrame(*frame);
  REQUIRE(msg);
  r.receiver->OnDeliver(msg->deliver());
  REQUIRE(RemoveAll(r.config.inbox).ok());
  REQUIRE(WriteFileSynced(r.config.inbox, "not a directory", 0640).ok());
  auto out = r.turn->Finish();
  CHECK_FALSE(out.status.ok());
  CHECK(out.held_back >= 1);  // the MOTTATT report
  // The delivery is answered Defer, never MOTTATT, and nothing is recorded.
  auto answer = r.broker->Next(500);
  REQUIRE(answer);
  CHECK(answer->has_defer());
  auto row = r.store->incoming.Get(h.message_id());
  REQUIRE(row.ok());
  CHECK_FALSE(row->has_value());
  CHECK(r.defer->deferring());
}

TEST_CASE("reports: a report goes out only after the turn that recorded it committed",
          "[ip][reports]") {
  Rig r;
  r.Welcome();
  REQUIRE(r.turn->Begin().ok());
  const std::string id = Received(r);
  r.reports->Report(id, wire::MOTTATT, "");
  CHECK_FALSE(r.broker->NextOf(wire::ClientMessage::kReport, 50));
  (void)r.turn->Finish();
  auto report = r.broker->NextOf(wire::ClientMessage::kReport);
  REQUIRE(report);
  CHECK(report->report().message_id() == id);
  CHECK(report->report().status() == wire::MOTTATT);
  CHECK(r.reports->unanswered() == 1);
}

TEST_CASE("reports: unanswered ones are resent after resend_ms, answered ones leave the store",
          "[ip][reports]") {
  Rig r;
  r.Welcome();
  r.broker->Drain();
  const std::string id = Received(r);
  r.reports->SendPending(false);
  REQUIRE(r.broker->NextOf(wire::ClientMessage::kReport));
  r.clock.Advance(1000);
  r.reports->Tick();
  CHECK_FALSE(r.broker->NextOf(wire::ClientMessage::kReport, 50));  // sent 1 s ago
  r.clock.Advance(4000);
  r.reports->Tick();
  CHECK(r.broker->NextOf(wire::ClientMessage::kReport));  // 5 s unanswered: again
  r.broker->Send(ReportReply(id, true));
  r.RunTurn();
  CHECK(r.reports->unanswered() == 0);
  auto left = r.store->history.PendingReportCount();
  REQUIRE(left.ok());
  CHECK(*left == 0);
  r.clock.Advance(10'000);
  r.reports->Tick();
  CHECK_FALSE(r.broker->NextOf(wire::ClientMessage::kReport, 50));
}

TEST_CASE("reports: a refused report stays pending", "[ip][reports]") {
  Rig r;
  r.Welcome();
  const std::string id = Received(r);
  r.reports->SendPending(true);
  REQUIRE(r.broker->NextOf(wire::ClientMessage::kReport));
  r.broker->Send(ReportReply(id, false, "busy"));
  r.RunTurn();
  auto left = r.store->history.PendingReportCount();
  REQUIRE(left.ok());
  CHECK(*left == 1);
}

TEST_CASE("reports: nothing pending is sent before a Welcome; all of it after one",
          "[ip][reports]") {
  Rig r;
  r.Connect();
  Received(r);
  Received(r);
  r.reports->SendPending(true);
  CHECK_FALSE(r.broker->NextOf(wire::ClientMessage::kReport, 50));
  wire::BrokerMessage w;
  w.mutable_welcome()->set_orgnr(std::string("0192:") + rig::kMe);
  r.broker->Send(w);
  r.RunTurn();  // on_ready: SendPending(true)
  int reports = 0;
  while (r.broker->NextOf(wire::ClientMessage::kReport, 100)) ++reports;
  CHECK(reports == 2);
}

TEST_CASE("reports: a turn's reports and status acks go in one Batch frame after its commit",
          "[ip][reports][batch]") {
  Rig r;
  r.Welcome(256);
  REQUIRE(r.turn->Begin().ok());
  const std::string a = Received(r);
  const std::string b = Received(r);
  r.reports->Report(a, wire::MOTTATT, "");
  r.reports->Report(b, wire::MOTTATT, "");
  wire::StatusNotice n;  // a notice of a message this point does not know: acknowledged
  n.set_notice_id(42);
  n.set_message_id(NewUuid());
  n.set_status(wire::LEVERT);
  r.sender->OnStatusNotice(n);
  (void)r.turn->Finish();
  CHECK_FALSE(r.broker->Next(50));  // committed, queued for the turn's end
  CHECK(r.reports->unanswered() == 2);
  r.link->Flush();
  auto frame = r.broker->Next();
  REQUIRE(frame);
  REQUIRE(frame->has_batch());
  REQUIRE(frame->batch().reports_size() == 2);
  CHECK(frame->batch().reports(0).message_id() == a);
  CHECK(frame->batch().reports(1).message_id() == b);
  REQUIRE(frame->batch().status_acks_size() == 1);
  CHECK(frame->batch().status_acks(0).notice_id() == 42);
  // Pending, but queued already: a resend before resend_ms does not queue them again.
  r.reports->SendPending(false);
  r.link->Flush();
  CHECK_FALSE(r.broker->Next(50));
  for (const auto& id : {a, b}) r.broker->Send(ReportReply(id, true));
  r.RunTurn();
  CHECK(r.reports->unanswered() == 0);
  auto left = r.store->history.PendingReportCount();
  REQUIRE(left.ok());
  CHECK(*left == 0);
}

TEST_CASE("reports: a report whose frame was dropped with its socket does not count as sent",
          "[ip][reports][batch]") {
  Rig r;
  r.Welcome(256);
  Received(r);
  r.reports->SendPending(true);  // outside a turn: queued at once
  CHECK(r.reports->unanswered() == 1);
  r.link->SetListener({});  // the queue does not Forget: what the dropped frame says counts
  r.clock.Advance(3001);    // silence: a new socket
  r.link->Tick();
  CHECK(r.link->batches().queued() == 0);
  CHECK(r.reports->unanswered() == 0);  // so SendPending(false) sends it again at once
}

TEST_CASE("defer gate: storage trouble defers every delivery for a doubling pause", "[ip][defer]") {
  Rig r;
  r.Connect();
  CHECK_FALSE(r.defer->DeferringNow("a"));
  r.defer->Defer("a", bud::Status(Code::kDiskFull, "no space"));
  auto d = r.broker->NextOf(wire::ClientMessage::kDefer);
  REQUIRE(d);
  CHECK(d->defer().retry_after_ms() == 500);
  CHECK_THAT(d->defer().reason(), Catch::Contains("DISK_FULL"));
  CHECK_THAT(d->defer().reason(), !Catch::Contains("no space"));  // no local detail outside
  r.clock.Advance(200);
  CHECK(r.defer->DeferringNow("b"));
  auto db = r.broker->NextOf(wire::ClientMessage::kDefer);
  REQUIRE(db);
  CHECK(db->defer().retry_after_ms() == 300);
  r.clock.Advance(300);
  CHECK_FALSE(r.defer->DeferringNow("c"));               // the probe goes through
  r.defer->Defer("c", bud::Status(Code::kIo, "still"));  // and fails: 1 s now
  CHECK(r.defer->backoff_ms() == 1000);
  r.defer->Stored();
  CHECK_FALSE(r.defer->deferring());
  CHECK_FALSE(r.defer->DeferringNow("d"));
  CHECK(r.metrics.deferred.load() == 3);
}

TEST_CASE("defer gate: the pause stops doubling at 30 s", "[ip][defer]") {
  Rig r;
  r.Connect();
  for (int i = 0; i < 10; ++i) {
    r.defer->Defer("x", bud::Status(Code::kIo, "e"));
    r.clock.Advance(r.defer->backoff_ms());
  }
  CHECK(r.defer->backoff_ms() == 30'000);
}

TEST_CASE("hand-over: a message handed over is stored in the turn and answered after its commit",
          "[ip][handover]") {
  Rig r;
  std::atomic<int> wakes{0};
  HandOverQueue q([&] { ++wakes; });
  bud::Status result(Code::kInternal, "not answered");
  std::thread http([&] { result = q.TakeIn(Outgoing(), 5000); });
  while (wakes.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(r.turn->Begin().ok());
  CHECK(q.StoreQueued(r.store->outgoing));
  (void)r.turn->Finish();
  q.Answer(bud::Status::Ok());
  http.join();
  CHECK(result.ok());
}

TEST_CASE("hand-over: the same message id twice is refused, a failed commit fails all",
          "[ip][handover]") {
  Rig r;
  std::atomic<int> wakes{0};
  HandOverQueue q([&] { ++wakes; });
  const MessageRow m = Outgoing();
  bud::Status first, second;
  std::thread a([&] { first = q.TakeIn(m, 5000); });
  while (wakes.load() < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(q.StoreQueued(r.store->outgoing));
  q.Answer(bud::Status::Ok());
  a.join();
  CHECK(first.ok());
  std::thread b([&] { second = q.TakeIn(m, 5000); });
  while (wakes.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK_FALSE(q.StoreQueued(r.store->outgoing));
  q.Answer(bud::Status::Ok());
  b.join();
  CHECK(second.code() == Code::kAlreadyExists);

  bud::Status third;
  std::thread c([&] { third = q.TakeIn(Outgoing(), 5000); });
  while (wakes.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(q.StoreQueued(r.store->outgoing));
  q.Answer(bud::Status(Code::kIo, "the store's commit failed"));
  c.join();
  CHECK(third.code() == Code::kIo);
}

TEST_CASE("hand-over: no answer within the timeout is UNAVAILABLE; after Stop at once",
          "[ip][handover]") {
  HandOverQueue q([] {});
  auto late = q.TakeIn(Outgoing(), 50);
  CHECK(late.code() == Code::kUnavailable);
  CHECK_THAT(late.message(), Catch::Contains("may still be taken in"));
  q.Stop();
  auto stopped = q.TakeIn(Outgoing(), 5000);
  CHECK(stopped.code() == Code::kUnavailable);
  CHECK_THAT(stopped.message(), Catch::Contains("stopping"));
}

}  // namespace
}  // namespace bud::ip
