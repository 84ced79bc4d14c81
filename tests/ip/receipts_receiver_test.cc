// A receipt through the receiver's pipeline (integration-point/engine/receiver.h with the
// engine's receipts hook, receipts.h), in process: a sealed arkivmelding_kvittering without
// files from the peer, delivered over a real inproc:// socket pair, is written to the inbox
// (message.json only) and marks the original LEST in the same turn; the same receipt signed by
// a third organisation changes nothing.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/crypto/envelope.h"
#include "common/fs.h"
#include "common/uuid.h"
#include "integration-point/engine/receipts.h"
#include "tests/ip/support/parts_rig.h"

namespace bud::ip {
namespace {

using nlohmann::json;
using rig::Rig;

constexpr const char* kReceiptType = "urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering";

// The rig's receiver again, with the engine's receipts hook.
void HookReceipts(Rig& r, Receipts& receipts) {
  r.receiver = std::make_unique<Receiver>(Receiver::Deps{
      r.config, r.config.me(), r.store->incoming, *r.turn, *r.inbox, *r.reports, *r.defer,
      r.registry, *r.certs, r.decryption, r.clock, r.metrics,
      [&receipts](const MessageRow& in, const wire::Payload& p) { receipts.OnReceived(in, p); }});
  r.streams =
      std::make_unique<StreamReceiver>(*r.receiver, *r.link, r.config.me(), *r.trust, r.decryption);
}

// A receipt for `related` from `from` (its keys sign it), no attachments.
std::string ReceiptEnvelope(Rig& r, wire::Header& h, const std::string& related,
                            const std::string& type, const rig::Keys& from) {
  h.set_document_type(kReceiptType);
  wire::Payload p;
  p.set_message_id(h.message_id());
  p.set_sender(h.sender());
  p.set_receiver(h.receiver());
  p.set_conversation_id(h.conversation_id());
  p.set_metadata_json(
      json{{"arkivmelding_kvittering", {{"receiptType", type}, {"relatedToMessageId", related}}}}
          .dump());
  auto env = crypto::Seal(h, p, {from.sign.key.get(), from.sign.cert.get()}, r.me.enc.cert.get());
  REQUIRE(env.ok());
  return *env;
}

// An outgoing message from the point to `to`, reported MOTTATT.
MessageRow Sent(Rig& r, const std::string& to) {
  MessageRow out;
  out.message_id = NewUuid();
  out.conversation_id = NewUuid();
  out.sender = r.config.me().wire();
  out.receiver = "0192:" + to;
  out.process = "urn:test:process";
  out.document_type = "urn:test:doc";
  out.created_ms = r.clock.NowMs();
  out.expires_ms = out.created_ms + 3600'000;
  out.payload = "p";
  REQUIRE(r.store->outgoing.CreateOutgoing(out).ok());
  REQUIRE(r.store->outgoing.ApplyStatus(out.message_id, wire::MOTTATT, "", NowMs()).ok());
  return out;
}

std::string OutStatus(Rig& r, const std::string& id) {
  auto row = r.store->outgoing.Get(id).value();
  return row ? row->status : "";
}

TEST_CASE("receiver: a receipt without files is kept and marks the original LEST",
          "[ip][receiver][receipts]") {
  Rig r;
  Receipts receipts(r.store->outgoing, r.clock);
  HookReceipts(r, receipts);
  r.Connect();
  MessageRow original = Sent(r, rig::kPeer);
  wire::Header h = r.Header();
  auto answer = r.DeliverSmall(ReceiptEnvelope(r, h, original.message_id, "OK", r.peer));
  REQUIRE(answer);
  REQUIRE(answer->has_report());
  CHECK(answer->report().status() == wire::MOTTATT);
  const std::string folder = JoinPath(r.config.inbox, h.message_id());
  CHECK(Exists(JoinPath(folder, "message.json")));
  CHECK(ListDir(folder).value() == std::vector<std::string>{"message.json"});
  CHECK(OutStatus(r, original.message_id) == "LEST");
}

TEST_CASE(
    "receiver: a receipt from another organisation than the original's receiver is "
    "kept and changes nothing",
    "[ip][receiver][receipts][hostile]") {
  Rig r;
  Receipts receipts(r.store->outgoing, r.clock);
  HookReceipts(r, receipts);
  r.Connect();
  MessageRow original = Sent(r, rig::kThird);  // went to the third organisation
  wire::Header h = r.Header();                 // the peer answers for it
  auto answer = r.DeliverSmall(ReceiptEnvelope(r, h, original.message_id, "ERROR", r.peer));
  REQUIRE(answer);
  REQUIRE(answer->has_report());
  CHECK(answer->report().status() == wire::MOTTATT);
  CHECK(OutStatus(r, original.message_id) == "MOTTATT");
}

}  // namespace
}  // namespace bud::ip
