// The sender (integration-point/engine/sender.h) in process: messages in a real store, sealed
// with test keys, submitted over a real inproc:// socket to a broker end the test plays, in
// virtual time.
#include <catch2/catch.hpp>
#include <set>

#include "common/crypto/envelope.h"
#include "common/uuid.h"
#include "tests/ip/support/parts_rig.h"

namespace bud::ip {
namespace {

using rig::Rig;

// A new outgoing message from the point to the peer (OPPRETTET, state new).
std::string NewOutgoing(Rig& r, const std::string& receiver = rig::kPeer) {
  MessageRow m;
  m.message_id = NewUuid();
  m.conversation_id = NewUuid();
  m.sender = std::string("0192:") + rig::kMe;
  m.receiver = std::string("0192:") + receiver;
  m.process = "urn:test:process";
  m.document_type = "urn:test:doc";
  m.title = "Søknad";
  m.created_ms = r.clock.NowMs();
  m.expires_ms = r.clock.NowMs() + 3600'000;
  wire::Payload p;
  p.set_message_id(m.message_id);
  p.set_sender(m.sender);
  p.set_receiver(m.receiver);
  p.set_conversation_id(m.conversation_id);
  auto* a = p.add_attachments();
  a->set_name("soknad.txt");
  a->set_media_type("text/plain");
  a->set_data("Hei.");
  p.SerializeToString(&m.payload);
  REQUIRE(r.store->outgoing.CreateOutgoing(m).ok());
  return m.message_id;
}

MessageRow Out(Rig& r, const std::string& id) {
  auto row = r.store->outgoing.Get(id);
  REQUIRE(row.ok());
  REQUIRE(row->has_value());
  return **row;
}

void Reply(Rig& r, const std::string& id, wire::SubmitCode code, const std::string& reason = "") {
  wire::BrokerMessage m;
  m.mutable_submit_reply()->set_message_id(id);
  m.mutable_submit_reply()->set_code(code);
  m.mutable_submit_reply()->set_reason(reason);
  r.broker->Send(m);
  r.RunTurn();
}

// Seals what is new, commits, submits (as the loop does).
void SealAndSubmit(Rig& r) {
  (void)r.turn->Begin();
  r.sender->SealNew();
  (void)r.turn->Finish();
  r.sender->SubmitSealed();
}

TEST_CASE("sender: a new message is sealed for its receiver and submitted after the Welcome",
          "[ip][sender]") {
  Rig r;
  r.Connect();
  const std::string id = NewOutgoing(r);
  SealAndSubmit(r);
  CHECK(Out(r, id).state == WorkState::kSealed);
  CHECK_FALSE(r.broker->NextOf(wire::ClientMessage::kSubmit, 50));  // not before a Welcome
  r.Welcome();
  r.sender->SubmitSealed();
  auto submit = r.broker->NextOf(wire::ClientMessage::kSubmit);
  REQUIRE(submit);
  // The peer can open it: sealed to its key, signed by the point.
  auto opened = crypto::Open(
      submit->submit().envelope(), *Orgnr::Parse(rig::kPeer), *Orgnr::Parse(rig::kMe),
      std::vector<X509*>{r.me.sign.cert.get()},
      std::vector<crypto::DecryptionKey>{{r.peer.enc.key.get(), r.peer.enc.cert.get()}});
  REQUIRE(opened.ok());
  CHECK(opened->header.message_id() == id);
  CHECK(opened->payload.attachments(0).data() == "Hei.");
  CHECK(r.sender->in_flight() == 1);
  CHECK(r.metrics.submits.load() == 1);
}

TEST_CASE("sender: ACCEPTED records SENDT and forgets the envelope", "[ip][sender]") {
  Rig r;
  r.Welcome();
  const std::string id = NewOutgoing(r);
  SealAndSubmit(r);
  REQUIRE(r.broker->NextOf(wire::ClientMessage::kSubmit));
  Reply(r, id, wire::ACCEPTED);
  const MessageRow m = Out(r, id);
  CHECK(m.status == "SENDT");
  CHECK(m.state == WorkState::kSent);
  CHECK(m.envelope.empty());
  CHECK(r.sender->in_flight() == 0);
  CHECK(r.metrics.accepted.load() == 1);
}

TEST_CASE("sender: a duplicate ACCEPTED (a resubmit) changes nothing", "[ip][sender]") {
  Rig r;
  r.Welcome();
  const std::string id = NewOutgoing(r);
  SealAndSubmit(r);
  Reply(r, id, wire::ACCEPTED);
  Reply(r, id, wire::ACCEPTED);
  CHECK(Out(r, id).status == "SENDT");
  auto hist = r.store->history.History(id, Direction::kOut);
  REQUIRE(hist.ok());
  int sendt = 0;
  for (const auto& h : *hist) sendt += h.status == "SENDT" && h.current;
  CHECK(sendt == 1);  // the second ACCEPTED advances nothing
  CHECK(Out(r, id).state == WorkState::kSent);
  CHECK(r.sender->in_flight() == 0);
}

TEST_CASE("sender: REJECTED is FEIL with the broker's reason", "[ip][sender]") {
  Rig r;
  r.Welcome();
  const std::string id = NewOutgoing(r);
  SealAndSubmit(r);
  Reply(r, id, wire::REJECTED, "sender is not you");
  const MessageRow m = Out(r, id);
  CHECK(m.status == "FEIL");
  CHECK(m.state == WorkState::kDone);
  auto hist = r.store->history.History(id, Direction::kOut);
  REQUIRE(hist.ok());
  CHECK_THAT(hist->back().reason, Catch::Contains("rejected by the broker: sender is not you"));
  CHECK(r.metrics.rejected.load() == 1);
}

TEST_CASE("sender: RETRY_LATER pauses every submit with doubling back-off", "[ip][sender]") {
  Rig r;
  r.Welcome();
  const std::string id = NewOutgoing(r);
  SealAndSubmit(r);
  REQUIRE(r.broker->NextOf(wire::ClientMessage::kSubmit));
  Reply(r, id, wire::RETRY_LATER, "disk full");
  CHECK(Out(r, id).state == WorkState::kSealed);
  r.sender->SubmitSealed();
  CHECK_FALSE(r.broker->NextOf(wire::ClientMessage::kSubmit, 50));  // paused 500 ms
  r.clock.Advance(500);
  r.sender->SubmitSealed();
  REQUIRE(r.broker->NextOf(wire::ClientMessage::kSubmit));
  Reply(r, id, wire::RETRY_LATER, "disk full");
  r.clock.Advance(500);
  r.sender->SubmitSealed();
  CHECK_FALSE(r.broker->NextOf(wire::ClientMessage::kSubmit, 50));  // now 1 s
  r.clock.Advance(500);
  r.sender->SubmitSealed();
  CHECK(r.broker->NextOf(wire::ClientMessage::kSubmit));
  CHECK(r.metrics.retry_later.load() == 2);
}

TEST_CASE("sender: at most max_in_flight submits wait for an answer", "[ip][sender]") {
  Rig r;
  r.Welcome();
  for (int i = 0; i < 6; ++i) NewOutgoing(r);
  SealAndSubmit(r);
  int submits = 0;
  while (r.broker->NextOf(wire::ClientMessage::kSubmit, 50)) ++submits;
  CHECK(submits == 4);
  CHECK(r.sender->in_flight() == 4);
}

TEST_CASE("sender: an unanswered submit is sent again after submit_timeout_ms", "[ip][sender]") {
  Rig r;
  r.Welcome();
  NewOutgoing(r);
  SealAndSubmit(r);
  REQUIRE(r.broker->NextOf(wire::ClientMessage::kSubmit));
  r.clock.Advance(4999);
  r.sender->ExpireInFlight();
  r.sender->SubmitSealed();
  CHECK_FALSE(r.broker->NextOf(wire::ClientMessage::kSubmit, 50));
  r.clock.Advance(1);
  r.sender->ExpireInFlight();
  CHECK(r.sender->Due());
  r.sender->SubmitSealed();
  CHECK(r.broker->NextOf(wire::ClientMessage::kSubmit));
}

TEST_CASE("sender: a new session forgets what was in flight and submits again", "[ip][sender]") {
  Rig r;
  r.Welcome();
  NewOutgoing(r);
  SealAndSubmit(r);
  REQUIRE(r.broker->NextOf(wire::ClientMessage::kSubmit));
  r.sender->Reset();
  CHECK(r.sender->in_flight() == 0);
  r.sender->SubmitSealed();
  CHECK(r.broker->NextOf(wire::ClientMessage::kSubmit));
}

TEST_CASE("sender: a receiver the registry does not know is FEIL at sealing", "[ip][sender]") {
  Rig r;
  r.registry.entries.erase(rig::kPeer);
  const std::string id = NewOutgoing(r);
  SealAndSubmit(r);
  const MessageRow m = Out(r, id);
  CHECK(m.status == "FEIL");
  CHECK(m.state == WorkState::kDone);
}

TEST_CASE("sender: an unreachable registry leaves the message new, sealed later", "[ip][sender]") {
  Rig r;
  r.registry.unavailable = true;
  const std::string id = NewOutgoing(r);
  SealAndSubmit(r);
  CHECK(Out(r, id).state == WorkState::kNew);
  CHECK(Out(r, id).status == "OPPRETTET");
  CHECK_FALSE(r.sender->Due());
  r.clock.Advance(2000);  // the retry timer
  CHECK(r.sender->Due());
  r.registry.unavailable = false;
  SealAndSubmit(r);
  CHECK(Out(r, id).state == WorkState::kSealed);
}

TEST_CASE("sender: a status notice is recorded and acknowledged after the turn's commit",
          "[ip][sender]") {
  Rig r;
  r.Welcome();
  const std::string id = NewOutgoing(r);
  SealAndSubmit(r);
  Reply(r, id, wire::ACCEPTED);
  wire::BrokerMessage n;
  n.mutable_status_notice()->set_notice_id(77);
  n.mutable_status_notice()->set_message_id(id);
  n.mutable_status_notice()->set_status(wire::MOTTATT);
  n.mutable_status_notice()->set_at_unix_ms(r.clock.NowMs());
  r.broker->Send(n);
  r.RunTurn();
  auto ack = r.broker->NextOf(wire::ClientMessage::kStatusAck);
  REQUIRE(ack);
  CHECK(ack->status_ack().notice_id() == 77);
  CHECK(Out(r, id).status == "MOTTATT");
}

TEST_CASE("sender: a notice for an unknown message is acknowledged and ignored", "[ip][sender]") {
  Rig r;
  r.Welcome();
  wire::BrokerMessage n;
  n.mutable_status_notice()->set_notice_id(5);
  n.mutable_status_notice()->set_message_id(NewUuid());
  n.mutable_status_notice()->set_status(wire::LEVERT);
  r.broker->Send(n);
  r.RunTurn();
  auto ack = r.broker->NextOf(wire::ClientMessage::kStatusAck);
  REQUIRE(ack);
  CHECK(ack->status_ack().notice_id() == 5);
}

// Batch frames (docs/protocol.md, "Batch"): to a broker that announces max_batch_items the
// submits a turn made ready go in one frame, each answered on its own.
TEST_CASE("sender: a turn's submits go in one Batch frame, each answered as if alone",
          "[ip][sender][batch]") {
  Rig r;
  r.Welcome(256);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(NewOutgoing(r));
  SealAndSubmit(r);
  CHECK(r.sender->in_flight() == 4);
  CHECK(r.metrics.submits.load() == 0);  // queued, not sent before the turn's end
  r.link->Flush();
  CHECK(r.metrics.submits.load() == 4);
  auto frame = r.broker->Next();
  REQUIRE(frame);
  REQUIRE(frame->has_batch());
  CHECK(frame->batch().submits_size() == 4);
  CHECK_FALSE(r.broker->Next(50));
  Reply(r, ids[0], wire::ACCEPTED);
  Reply(r, ids[1], wire::REJECTED, "CODE: no");
  CHECK(Out(r, ids[0]).status == "SENDT");
  CHECK(Out(r, ids[1]).status == "FEIL");
  CHECK(Out(r, ids[2]).state == WorkState::kSealed);
  CHECK(r.sender->in_flight() == 2);
}

TEST_CASE(
    "sender: a Batch frame the broker refuses as too large: submitted again after "
    "submit_timeout_ms, in smaller frames",
    "[ip][sender][batch]") {
  Rig r;
  r.Welcome(256);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(NewOutgoing(r));
  SealAndSubmit(r);
  r.link->Flush();
  auto frame = r.broker->Next();
  REQUIRE(frame);
  REQUIRE(frame->batch().submits_size() == 4);
  // What broker/server.cc answers a frame beyond its limit: nothing of it is stored or answered.
  wire::BrokerMessage refused;
  refused.mutable_refused()->set_reason(
      "a batch of 4 items is more than this broker takes in one frame (2)");
  r.broker->Send(refused);
  r.RunTurn();
  CHECK(r.link->ready());
  CHECK(r.link->batches().max_batch_items() == 2);
  CHECK(r.sender->in_flight() == 4);  // unanswered, as after any lost frame
  r.clock.Advance(r.config.broker.submit_timeout_ms);
  r.sender->ExpireInFlight();
  CHECK(r.sender->in_flight() == 0);
  r.sender->SubmitSealed();
  r.link->Flush();
  std::set<std::string> again;
  for (int i = 0; i < 2; ++i) {
    auto f = r.broker->Next();
    REQUIRE(f);
    REQUIRE(f->batch().submits_size() == 2);
    for (const auto& sub : f->batch().submits()) {
      auto opened = crypto::Open(
          sub.envelope(), *Orgnr::Parse(rig::kPeer), *Orgnr::Parse(rig::kMe),
          std::vector<X509*>{r.me.sign.cert.get()},
          std::vector<crypto::DecryptionKey>{{r.peer.enc.key.get(), r.peer.enc.cert.get()}});
      REQUIRE(opened.ok());
      again.insert(opened->header.message_id());
    }
  }
  CHECK(again == std::set<std::string>(ids.begin(), ids.end()));
  for (const auto& id : ids) Reply(r, id, wire::ACCEPTED);
  for (const auto& id : ids) CHECK(Out(r, id).status == "SENDT");
}

TEST_CASE("sender: a submit whose frame could not be sent is not in flight",
          "[ip][sender][batch]") {
  Rig r;
  r.Welcome(256);
  NewOutgoing(r);
  SealAndSubmit(r);
  CHECK(r.sender->in_flight() == 1);
  r.link->SetListener({});  // not Reset by the new socket: what the dropped frame says counts
  r.clock.Advance(3001);    // silence: a new socket drops what waited for the frame
  r.link->Tick();
  CHECK(r.sender->in_flight() == 0);
  CHECK(r.metrics.submits.load() == 0);
}

}  // namespace
}  // namespace bud::ip
