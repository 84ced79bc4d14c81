// IncomingStore over a real SQLite file: recording received messages with their reports,
// delivery, the HTTP API's peek/lock/deliver, reports for the broker, download progress.
#include "tests/ip/store_fixture.h"

namespace bud::ip {
namespace {

using store_test::Fixture;
using store_test::Row;

MessageRow Incoming(WorkState state = WorkState::kDone) {
  MessageRow m = Row("0192:222222222", "0192:111111111");
  m.state = state;
  return m;
}

TEST_CASE("incoming store: a received message is recorded with its report, once", "[ip][store]") {
  Fixture f;
  MessageRow m = Incoming();
  const int64_t t = NowMs();
  REQUIRE(f.store->incoming.RecordIncoming(m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", t)
              .ok());
  auto row = f.store->incoming.Get(m.message_id).value();
  REQUIRE(row.has_value());
  CHECK(row->status == "INNKOMMENDE_MOTTATT");
  CHECK(row->state == WorkState::kDone);
  CHECK(row->payload.empty());  // only kept for the API
  auto reports = f.store->incoming.PendingReports().value();
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].status == wire::MOTTATT);
  // The broker delivering it again changes nothing.
  REQUIRE(
      f.store->incoming.RecordIncoming(m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", t + 1)
          .ok());
  CHECK(f.store->incoming.History(m.message_id).value().size() == 1);
  CHECK(f.store->incoming.PendingReports().value().size() == 1);
  // Not an outgoing message.
  CHECK_FALSE(f.store->outgoing.Get(m.message_id).value().has_value());

  REQUIRE(f.store->incoming.ReportDone(m.message_id, wire::MOTTATT).ok());
  CHECK(f.store->incoming.PendingReports().value().empty());
}

TEST_CASE("incoming store: a received message's first history line is its current status",
          "[ip][store]") {
  Fixture f;
  MessageRow m = Incoming(WorkState::kApi);
  m.payload = "the payload";
  const int64_t t = NowMs() - 5000;
  REQUIRE(f.store->incoming.RecordIncoming(m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", t)
              .ok());
  auto row = f.store->incoming.Get(m.message_id).value();
  REQUIRE(row.has_value());
  CHECK(row->status == "INNKOMMENDE_MOTTATT");
  CHECK(row->state == WorkState::kApi);
  CHECK(row->payload == "the payload");  // kept for the API
  CHECK(row->updated_ms >= t + 5000);    // when it was recorded, as a status change sets it
  auto hist = f.store->incoming.History(m.message_id).value();
  REQUIRE(hist.size() == 1);
  CHECK(hist[0].status == "INNKOMMENDE_MOTTATT");
  CHECK(hist[0].at_ms == t);
  CHECK(hist[0].current);
  // Its line entered the status queue, as every history line does.
  CHECK(f.store->status_queue.Size().value() == 1);
  // Recorded again, as FEIL: through the state machine (FEIL is final, so it advances) and
  // dropping the payload, as for any status on a recorded message.
  REQUIRE(
      f.store->incoming.RecordIncoming(m, wire::FEIL, "again", wire::FEIL, "again", t + 1).ok());
  row = f.store->incoming.Get(m.message_id).value();
  CHECK(row->status == "FEIL");
  CHECK(row->state == WorkState::kDone);
  CHECK(row->payload.empty());
  CHECK(f.store->incoming.History(m.message_id).value().size() == 2);
  CHECK(f.store->status_queue.Size().value() == 2);
}

TEST_CASE("incoming store: a refused message is recorded as FEIL with its reason", "[ip][store]") {
  Fixture f;
  MessageRow m = Incoming(WorkState::kApi);
  REQUIRE(
      f.store->incoming
          .RecordIncoming(m, wire::FEIL, "bad signature", wire::FEIL, "ENVELOPE_REJECTED", NowMs())
          .ok());
  auto row = f.store->incoming.Get(m.message_id).value();
  CHECK(row->status == "FEIL");
  CHECK(row->state == WorkState::kDone);  // nothing kept for the API
  auto hist = f.store->incoming.History(m.message_id).value();
  REQUIRE(hist.size() == 1);
  CHECK(hist[0].reason == "bad signature");
  auto reports = f.store->incoming.PendingReports().value();
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].reason == "ENVELOPE_REJECTED");
}

TEST_CASE("incoming store: delivered messages advance and queue LEVERT", "[ip][store]") {
  Fixture f;
  MessageRow m = Incoming();
  const int64_t t = NowMs();
  REQUIRE(f.store->incoming.RecordIncoming(m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", t)
              .ok());
  auto waiting =
      f.store->incoming.IncomingWithStatus(wire::INNKOMMENDE_MOTTATT, WorkState::kDone, 10).value();
  REQUIRE(waiting.size() == 1);
  REQUIRE(
      f.store->incoming.AdvanceIncoming(m.message_id, wire::INNKOMMENDE_LEVERT, wire::LEVERT, t + 1)
          .ok());
  CHECK(f.store->incoming.Get(m.message_id).value()->status == "INNKOMMENDE_LEVERT");
  CHECK(f.store->incoming.PendingReports().value().size() == 2);
  CHECK(f.store->incoming.IncomingWithStatus(wire::INNKOMMENDE_MOTTATT, WorkState::kDone, 10)
            .value()
            .empty());
  // Again: not advanced, no second LEVERT.
  REQUIRE(
      f.store->incoming.AdvanceIncoming(m.message_id, wire::INNKOMMENDE_LEVERT, wire::LEVERT, t + 2)
          .ok());
  CHECK(f.store->incoming.PendingReports().value().size() == 2);
  CHECK(f.store->incoming.AdvanceIncoming("no-such-id", wire::INNKOMMENDE_LEVERT, wire::LEVERT, t)
            .code() == Code::kNotFound);
}

TEST_CASE("incoming store: the API's peek locks, deliver needs the lock", "[ip][store]") {
  Fixture f;
  MessageRow a = Incoming(WorkState::kApi), b = Incoming(WorkState::kApi);
  b.process = "urn:other:process";
  b.created_ms = a.created_ms + 1;
  const int64_t t = NowMs();
  for (const MessageRow* m : {&a, &b}) {
    REQUIRE(
        f.store->incoming.RecordIncoming(*m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", t)
            .ok());
  }
  CHECK(f.store->incoming.Get(a.message_id).value()->payload == a.payload);  // kept for the API

  // Not peeked: not locked.
  CHECK(f.store->incoming.LockedIncoming(a.message_id, t).status().code() ==
        Code::kInvalidArgument);
  CHECK(f.store->incoming.DeliverIncoming(a.message_id, t).code() == Code::kInvalidArgument);
  CHECK(f.store->incoming.LockedIncoming("no-such-id", t).status().code() == Code::kNotFound);

  auto first = f.store->incoming.PeekIncoming(t, 1000, "").value();
  REQUIRE(first.has_value());
  CHECK(first->message_id == a.message_id);
  CHECK(first->lock_until_ms == t + 1000);
  // Locked: the next peek gets the other one; with a process filter, only its own.
  auto second = f.store->incoming.PeekIncoming(t, 1000, "").value();
  REQUIRE(second.has_value());
  CHECK(second->message_id == b.message_id);
  CHECK_FALSE(f.store->incoming.PeekIncoming(t, 1000, "").value().has_value());
  CHECK_FALSE(f.store->incoming.PeekIncoming(t + 2000, 1000, "urn:none").value().has_value());

  REQUIRE(f.store->incoming.LockedIncoming(a.message_id, t + 500).ok());
  REQUIRE(f.store->incoming.DeliverIncoming(a.message_id, t + 500).ok());
  auto row = f.store->incoming.Get(a.message_id).value();
  CHECK(row->status == "INNKOMMENDE_LEVERT");
  CHECK(row->state == WorkState::kDone);
  CHECK(row->payload.empty());
  auto gone = f.store->incoming.LockedIncoming(a.message_id, t + 500);
  CHECK(gone.status().code() == Code::kNotFound);
  CHECK(gone.status().message().find("already deleted") != std::string::npos);
  // The lock ran out: b is free to peek again.
  auto again = f.store->incoming.PeekIncoming(t + 1001, 1000, "urn:other:process").value();
  REQUIRE(again.has_value());
  CHECK(again->message_id == b.message_id);
}

TEST_CASE("incoming store: download progress before the message has a row", "[ip][store]") {
  Fixture f;
  MessageRow m = Incoming();
  REQUIRE(f.store->incoming.StartTransfer(m, 0, 5000).ok());
  REQUIRE(f.store->incoming.TransferProgress(m.message_id, 2500).ok());
  auto arriving = f.store->history.TransfersWithoutMessage({}).value();
  REQUIRE(arriving.size() == 1);
  CHECK(arriving[0].done_bytes == 2500);
  CHECK(arriving[0].message.sender == m.sender);
  REQUIRE(
      f.store->incoming.RecordIncoming(m, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", NowMs())
          .ok());
  REQUIRE(f.store->incoming.TransferProgress(m.message_id, -1).ok());
  CHECK(f.store->history.TransfersWithoutMessage({}).value().empty());
  CHECK(f.store->history.Transfer(m.message_id, Direction::kIn).value()->done_bytes == 5000);
}

}  // namespace
}  // namespace bud::ip
