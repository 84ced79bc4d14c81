// Receipts, the status queue, completion and ids in any case, in process over a real store:
// ParseReceipt and Receipts (engine/receipts.h) mapping an arkivmelding_kvittering onto the
// original at its sender, only for the organisation it went to; the ExpirySweep
// (engine/expiry_sweep.h) after MOTTATT; StatusQueue (store/status_queue.h) FIFO with removal;
// ids stored as spelled and found in any case.
#include "integration-point/engine/receipts.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/storage/sqlite.h"
#include "common/uuid.h"
#include "integration-point/engine/clock.h"
#include "integration-point/engine/expiry_sweep.h"
#include "integration-point/outbox.h"
#include "tests/ip/store_fixture.h"

namespace bud::ip {
namespace {

using nlohmann::json;
using store_test::Fixture;
using store_test::Row;

constexpr const char* kReceiptType = "urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering";
constexpr const char* kUs = "0192:910076787";
constexpr const char* kThem = "0192:910075918";
constexpr const char* kOther = "0192:974760673";

std::string Upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// The SBD of a receipt as an archive system sends it back.
std::string ReceiptSbd(const std::string& related, const std::string& type,
                       const std::string& text = "Arkivert") {
  json sbd = {{"standardBusinessDocumentHeader",
               {{"documentIdentification",
                 {{"standard", kReceiptType}, {"type", "arkivmelding_kvittering"}}}}},
              {"arkivmelding_kvittering",
               {{"receiptType", type},
                {"relatedToMessageId", related},
                {"messages", json::array({{{"code", "200"}, {"text", text}}})}}}};
  return sbd.dump();
}

// A receipt received from `from`: its row and its payload.
std::pair<MessageRow, wire::Payload> ReceivedReceipt(const std::string& from,
                                                     const std::string& sbd) {
  MessageRow in = Row(from, kUs);
  in.document_type = kReceiptType;
  wire::Payload p;
  p.set_message_id(in.message_id);
  p.set_metadata_json(sbd);
  return {in, p};
}

// An outgoing message from us to `to`, taken in and reported MOTTATT.
MessageRow SentTo(Fixture& f, const std::string& to) {
  MessageRow out = Row(kUs, to);
  REQUIRE(f.store->outgoing.CreateOutgoing(out).ok());
  REQUIRE(f.store->outgoing.ApplyStatus(out.message_id, wire::SENDT, "", NowMs()).ok());
  REQUIRE(f.store->outgoing.ApplyStatus(out.message_id, wire::MOTTATT, "", NowMs()).ok());
  return out;
}

std::string Current(Fixture& f, const std::string& id) {
  auto row = f.store->outgoing.Get(id).value();
  return row ? row->status : "";
}

TEST_CASE("receipts: OK and WARNING give LEST, ERROR and NOTSUPPORTED give FEIL",
          "[ip][receipts]") {
  for (const auto& [type, expected] : std::vector<std::pair<std::string, std::string>>{
           {"OK", "LEST"}, {"WARNING", "LEST"}, {"ERROR", "FEIL"}, {"NOTSUPPORTED", "FEIL"}}) {
    INFO(type);
    Fixture f;
    ManualClock clock;
    Receipts receipts(f.store->outgoing, clock);
    MessageRow out = SentTo(f, kThem);
    auto [in, payload] = ReceivedReceipt(kThem, ReceiptSbd(out.message_id, type, "Journalført"));
    receipts.OnReceived(in, payload);
    CHECK(Current(f, out.message_id) == expected);
    StatusQuery q;
    q.message_id = out.message_id;
    q.status = expected;
    auto lines = f.store->history.Statuses(q).value();
    REQUIRE(lines.items.size() == 1);
    CHECK_THAT(lines.items[0].reason, Catch::Matchers::Contains(type));
    CHECK_THAT(lines.items[0].reason, Catch::Matchers::Contains("Journalført"));
    const json raw = json::parse(lines.items[0].raw_receipt);
    CHECK(raw["receiptType"] == type);
    CHECK(raw["relatedToMessageId"] == out.message_id);
  }
}

TEST_CASE("receipts: one naming a message not sent to its sender changes nothing",
          "[ip][receipts][hostile]") {
  Fixture f;
  ManualClock clock;
  Receipts receipts(f.store->outgoing, clock);
  MessageRow to_them = SentTo(f, kThem);
  MessageRow to_other = SentTo(f, kOther);
  // The other organisation answers for a message that went to them: ignored.
  auto [in1, p1] = ReceivedReceipt(kOther, ReceiptSbd(to_them.message_id, "ERROR"));
  receipts.OnReceived(in1, p1);
  CHECK(Current(f, to_them.message_id) == "MOTTATT");
  // An id this point never sent, and an incoming message's id: ignored.
  auto [in2, p2] = ReceivedReceipt(kThem, ReceiptSbd(NewUuid(), "OK"));
  receipts.OnReceived(in2, p2);
  MessageRow incoming = Row(kThem, kUs);
  incoming.state = WorkState::kDone;
  REQUIRE(f.store->incoming
              .RecordIncoming(incoming, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", NowMs())
              .ok());
  auto [in3, p3] = ReceivedReceipt(kThem, ReceiptSbd(incoming.message_id, "OK"));
  receipts.OnReceived(in3, p3);
  CHECK(f.store->incoming.Get(incoming.message_id).value()->status == "INNKOMMENDE_MOTTATT");
  // Not receipts, or receipts that say nothing usable: ignored, no crash.
  for (const std::string& metadata :
       {std::string("{"), std::string("[]"), std::string("{\"arkivmelding_kvittering\": 3}"),
        ReceiptSbd(to_other.message_id, "MAYBE"), ReceiptSbd("not-a-uuid", "OK"),
        std::string("{\"arkivmelding_kvittering\": {\"receiptType\": \"OK\"}}"),
        std::string(200, '[')}) {
    auto [in, p] = ReceivedReceipt(kOther, metadata);
    receipts.OnReceived(in, p);
  }
  CHECK(Current(f, to_other.message_id) == "MOTTATT");
  // An arkivmelding (not a receipt) with a receipt's body: not a receipt.
  auto [in4, p4] = ReceivedReceipt(kOther, ReceiptSbd(to_other.message_id, "OK"));
  in4.document_type = "urn:no:difi:arkivmelding:xsd::arkivmelding";
  receipts.OnReceived(in4, p4);
  CHECK(Current(f, to_other.message_id) == "MOTTATT");
  // The right sender, finally: LEST.
  auto [in5, p5] = ReceivedReceipt(kOther, ReceiptSbd(to_other.message_id, "OK"));
  receipts.OnReceived(in5, p5);
  CHECK(Current(f, to_other.message_id) == "LEST");
}

TEST_CASE("receipts: parsed from the SBD, type in any case, related id in any case",
          "[ip][receipts]") {
  auto none = ParseReceipt("urn:no:difi:arkivmelding:xsd::arkivmelding", "{}");
  REQUIRE(none.ok());
  CHECK_FALSE(*none);
  const std::string id = NewUuid();
  auto r = ParseReceipt("urn:x::ARKIVMELDING_KVITTERING", ReceiptSbd(Upper(id), "warning"));
  REQUIRE(r.ok());
  REQUIRE(*r);
  CHECK((*r)->status == wire::LEST);
  CHECK((*r)->related_message_id == Upper(id));
  auto bad = ParseReceipt(kReceiptType, ReceiptSbd(id, ""));
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK_THAT(bad.status().message(), Catch::Matchers::Contains("receiptType"));

  Fixture f;
  ManualClock clock;
  Receipts receipts(f.store->outgoing, clock);
  MessageRow out = SentTo(f, kThem);
  auto [in, p] = ReceivedReceipt(kThem, ReceiptSbd(Upper(out.message_id), "OK"));
  receipts.OnReceived(in, p);
  CHECK(Current(f, out.message_id) == "LEST");
}

TEST_CASE("expiry: MOTTATT but not LEVERT by the expiry gives LEVETID_UTLOPT", "[ip][receipts]") {
  Fixture f;
  ManualClock clock(NowMs());
  ExpirySweep sweep(f.store->outgoing, clock, 1000);
  MessageRow received = SentTo(f, kThem);   // MOTTATT, expires in an hour
  MessageRow delivered = SentTo(f, kThem);  // LEVERT: not swept
  REQUIRE(f.store->outgoing.ApplyStatus(delivered.message_id, wire::LEVERT, "", NowMs()).ok());
  MessageRow fresh = Row(kUs, kThem);  // OPPRETTET: the broker decides
  REQUIRE(f.store->outgoing.CreateOutgoing(fresh).ok());
  CHECK(sweep.RunIfDue() == 0);  // not expired yet
  clock.Advance(2 * 3600 * 1000);
  CHECK(sweep.RunIfDue() == 1);
  CHECK(Current(f, received.message_id) == "LEVETID_UTLOPT");
  CHECK(Current(f, delivered.message_id) == "LEVERT");
  CHECK(Current(f, fresh.message_id) == "OPPRETTET");
  CHECK(sweep.RunIfDue() == 0);  // not due again yet, and nothing left
  clock.Advance(5000);
  CHECK(sweep.RunIfDue() == 0);
  // Final: a LEVERT that comes late does not change it.
  REQUIRE(f.store->outgoing.ApplyStatus(received.message_id, wire::LEVERT, "", NowMs()).ok());
  CHECK(Current(f, received.message_id) == "LEVETID_UTLOPT");
}

TEST_CASE("status queue: every new status line enters, FIFO, peek removes nothing",
          "[ip][store][status-queue]") {
  Fixture f;
  CHECK_FALSE(f.store->status_queue.Peek().value());
  MessageRow out = Row(kUs, kThem);
  REQUIRE(f.store->outgoing.CreateOutgoing(out).ok());  // OPPRETTET
  REQUIRE(f.store->outgoing.ApplyStatus(out.message_id, wire::SENDT, "", NowMs()).ok());  // SENDT
  MessageRow in = Row(kThem, kUs);
  in.state = WorkState::kApi;
  REQUIRE(f.store->incoming
              .RecordIncoming(in, wire::INNKOMMENDE_MOTTATT, "", wire::MOTTATT, "", NowMs())
              .ok());
  // A repeat is ignored (one line per status); ANNET is kept, never current, and enters.
  REQUIRE(f.store->outgoing.ApplyStatus(out.message_id, wire::OPPRETTET, "", NowMs()).ok());
  REQUIRE(f.store->outgoing.ApplyStatus(out.message_id, wire::ANNET, "other", NowMs()).ok());
  CHECK(f.store->status_queue.Size().value() == 4);
  CHECK(Current(f, out.message_id) == "SENDT");  // ANNET never becomes current

  std::vector<std::string> drained;
  for (;;) {
    auto head = f.store->status_queue.Peek().value();
    if (!head) break;
    auto again = f.store->status_queue.Peek().value();
    REQUIRE(again);
    CHECK(again->id == head->id);  // peeking removed nothing
    drained.push_back(head->status + " " + head->message_id);
    REQUIRE(f.store->status_queue.Remove(head->id).ok());
    CHECK(f.store->status_queue.Remove(head->id).code() == Code::kNotFound);
  }
  CHECK(drained == std::vector<std::string>{
                       "OPPRETTET " + out.message_id, "SENDT " + out.message_id,
                       "INNKOMMENDE_MOTTATT " + in.message_id, "ANNET " + out.message_id});
  CHECK(f.store->status_queue.Remove(999999).code() == Code::kNotFound);
  // The history keeps them all.
  StatusQuery all;
  CHECK(f.store->history.Statuses(all).value().total == 4);
  // A new status after the queue emptied enters it.
  REQUIRE(f.store->outgoing.ApplyStatus(out.message_id, wire::MOTTATT, "", NowMs()).ok());
  auto head = f.store->status_queue.Peek().value();
  REQUIRE(head);
  CHECK(head->status == "MOTTATT");
  CHECK(head->conversation_id == out.conversation_id);
}

TEST_CASE("status queue: survives a reopen of the store", "[ip][store][status-queue]") {
  Fixture f;
  MessageRow out = Row(kUs, kThem);
  REQUIRE(f.store->outgoing.CreateOutgoing(out).ok());
  REQUIRE(f.store->outgoing.ApplyStatus(out.message_id, wire::SENDT, "", NowMs()).ok());
  const int64_t first = f.store->status_queue.Peek().value()->id;
  REQUIRE(f.store->status_queue.Remove(first).ok());
  f.store.reset();
  auto reopened = PointStore::Open(f.path).value();
  auto head = reopened->status_queue.Peek().value();
  REQUIRE(head);
  CHECK(head->status == "SENDT");
  CHECK(reopened->status_queue.Size().value() == 1);
}

TEST_CASE("ids: kept as spelled, found in any case, one message per id", "[ip][store][ids]") {
  Fixture f;
  MessageRow out = Row(kUs, kThem);
  out.message_id = Upper(NewUuid());
  out.conversation_id = Upper(NewUuid());
  REQUIRE(f.store->outgoing.CreateOutgoing(out).ok());
  const std::string lower = LowerId(out.message_id);
  auto found = f.store->outgoing.Get(lower).value();
  REQUIRE(found);
  CHECK(found->message_id == out.message_id);  // as spelled
  MessageRow twice = out;
  twice.message_id = lower;
  CHECK(f.store->outgoing.CreateOutgoing(twice).code() == Code::kAlreadyExists);
  // A status by the broker's lower-case id lands on it, and the history shows the spelling.
  REQUIRE(f.store->outgoing.ApplyStatus(lower, wire::SENDT, "", NowMs()).ok());
  StatusQuery q;
  q.message_id = lower;
  auto lines = f.store->history.Statuses(q).value();
  REQUIRE(lines.items.size() == 2);
  CHECK(lines.items[1].message_id == out.message_id);
  CHECK(lines.items[1].conversation_id == out.conversation_id);
  ConversationQuery c;
  c.conversation_id = LowerId(out.conversation_id);
  CHECK(f.store->history.Conversations(c).value().total == 1);
  // Drafts too.
  const std::string draft = Upper(NewUuid());
  REQUIRE(f.store->outgoing.CreateDraft(draft, "{}").ok());
  CHECK(f.store->outgoing.GetDraft(LowerId(draft)).value());
  CHECK(f.store->outgoing.CreateDraft(LowerId(draft), "{}").code() == Code::kAlreadyExists);
  REQUIRE(f.store->outgoing.DeleteDraft(LowerId(draft)).ok());
}

TEST_CASE("finished: LEVERT, LEST, FEIL, LEVETID_UTLOPT, INNKOMMENDE_LEVERT", "[ip][receipts]") {
  for (MsgStatus s :
       {wire::LEVERT, wire::LEST, wire::FEIL, wire::LEVETID_UTLOPT, wire::INNKOMMENDE_LEVERT}) {
    CHECK(IsFinished(s));
  }
  for (MsgStatus s :
       {wire::OPPRETTET, wire::SENDT, wire::MOTTATT, wire::INNKOMMENDE_MOTTATT, wire::ANNET}) {
    CHECK_FALSE(IsFinished(s));
  }
  CHECK(StatusFromName("ANNET") == wire::ANNET);
  Fixture f;
  MessageRow delivered = SentTo(f, kThem);
  MessageRow waiting = SentTo(f, kThem);
  REQUIRE(f.store->outgoing.ApplyStatus(delivered.message_id, wire::LEVERT, "", NowMs()).ok());
  ConversationQuery queue;
  queue.unfinished_only = true;
  auto rows = f.store->history.Conversations(queue).value();
  REQUIRE(rows.total == 1);
  CHECK(rows.items[0].message_id == waiting.message_id);
}

TEST_CASE("folder contract: a receipt's message.json alone is a message; an arkivmelding's is not",
          "[ip][receipts][outbox]") {
  test::TempDir dir;
  const std::string outbox = dir / "outbox";
  REQUIRE(MakeDirs(outbox).ok());
  const Orgnr me = *Orgnr::Parse("910076787");
  auto read = [&](const std::string& name, const std::string& document_type) {
    REQUIRE(MakeDirs(JoinPath(outbox, name)).ok());
    std::ofstream(JoinPath(JoinPath(outbox, name), "message.json")) << json{
        {"receiver", kThem},
        {"process", "urn:no:difi:profile:arkivmelding:response:ver1.0"},
        {"documentType", document_type},
        {"arkivmelding_kvittering",
         {{"receiptType", "OK"}, {"relatedToMessageId", NewUuid()}}}}.dump();
    auto fd = OpenDir(outbox).value();
    auto folder = OpenOutboxFolder(fd.get(), outbox, name);
    REQUIRE(folder.ok());
    return ReadOutboxFolder(*folder, me, OutboxLimits{});
  };
  auto receipt = read("kvittering", kReceiptType);
  REQUIRE(receipt.ok());
  CHECK(receipt->payload.attachments_size() == 0);
  CHECK(json::parse(receipt->payload.metadata_json())["arkivmelding_kvittering"]["receiptType"] ==
        "OK");
  auto arkivmelding = read("arkivmelding", "urn:no:difi:arkivmelding:xsd::arkivmelding");
  REQUIRE_FALSE(arkivmelding.ok());
  CHECK(arkivmelding.status().code() == Code::kInvalidArgument);
  CHECK_THAT(arkivmelding.status().message(), Catch::Matchers::Contains("no attachments"));
  CHECK(TakesNoFiles("urn:no:difi:eformidling:xsd::STATUS"));
  CHECK(TakesNoFiles("avtalt"));
  CHECK(TakesNoFiles("einnsyn_kvittering"));
  CHECK_FALSE(TakesNoFiles("urn:no:difi:arkivmelding:xsd::arkivmelding"));
  CHECK_FALSE(TakesNoFiles(""));
}

// A store of schema version 4 (as docs/storage.md describes it) with an outgoing message whose
// rowid is not 1, its history, a draft and a transfer, opened by this release.
TEST_CASE("store: version 4 migrates to 5 keeping rowids and history ids; ids then in any case",
          "[ip][store][ids]") {
  test::TempDir dir;
  const std::string path = dir / "ip.db";
  const std::string id = "abcdef00-0000-4000-8000-000000000001";
  {
    auto db = storage::Db::Open(path).value();
    REQUIRE(db->Exec(R"(
      CREATE TABLE messages (message_id TEXT NOT NULL, direction TEXT NOT NULL CHECK (direction
        IN ('OUT', 'IN')), conversation_id TEXT NOT NULL, sender TEXT NOT NULL, receiver TEXT NOT
        NULL, process TEXT NOT NULL, document_type TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, status TEXT NOT NULL, state TEXT
        NOT NULL, payload BLOB, envelope BLOB, updated_ms INTEGER NOT NULL, lock_until_ms INTEGER
        NOT NULL DEFAULT 0, files TEXT NOT NULL DEFAULT '', PRIMARY KEY (message_id, direction));
      CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL,
        direction TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', at_ms
        INTEGER NOT NULL, advanced INTEGER NOT NULL);
      CREATE TABLE outbox_imports (folder_key TEXT PRIMARY KEY, message_id TEXT NOT NULL, at_ms
        INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE pending_reports (message_id TEXT NOT NULL, status INTEGER NOT NULL, reason TEXT
        NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (message_id, status)) WITHOUT ROWID;
      CREATE TABLE api_drafts (message_id TEXT PRIMARY KEY, sbd TEXT NOT NULL, created_ms INTEGER
        NOT NULL) WITHOUT ROWID;
      CREATE TABLE api_draft_files (message_id TEXT NOT NULL, name TEXT NOT NULL, title TEXT NOT
        NULL, media_type TEXT NOT NULL, data BLOB NOT NULL, added_ms INTEGER NOT NULL, file TEXT
        NOT NULL DEFAULT '', size INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (message_id, name))
        WITHOUT ROWID;
      CREATE TABLE transfers (message_id TEXT NOT NULL, direction TEXT NOT NULL, done_bytes INTEGER
        NOT NULL, total_bytes INTEGER NOT NULL, note TEXT NOT NULL DEFAULT '', updated_ms INTEGER
        NOT NULL, conversation_id TEXT NOT NULL, sender TEXT NOT NULL, receiver TEXT NOT NULL,
        process TEXT NOT NULL, document_type TEXT NOT NULL, created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL, PRIMARY KEY (message_id, direction)) WITHOUT ROWID;
      INSERT INTO messages(rowid, message_id, direction, conversation_id, sender, receiver,
        process, document_type, created_ms, expires_ms, status, state, updated_ms)
        VALUES (7, 'abcdef00-0000-4000-8000-000000000001', 'OUT', 'c', '0192:910076787',
        '0192:910075918', 'p', 'd', 1, 4102444800000, 'SENDT', 'sent', 1);
      INSERT INTO history(id, message_id, direction, status, at_ms, advanced) VALUES
        (41, 'abcdef00-0000-4000-8000-000000000001', 'OUT', 'OPPRETTET', 1, 1),
        (42, 'abcdef00-0000-4000-8000-000000000001', 'OUT', 'SENDT', 2, 1);
      INSERT INTO api_drafts VALUES ('abcdef00-0000-4000-8000-00000000000d', '{}', 1);
      INSERT INTO transfers VALUES ('abcdef00-0000-4000-8000-000000000001', 'OUT', 5, 10, '', 1,
        'c', 's', 'r', 'p', 'd', 1, 2);
      PRAGMA user_version=4;)")
                .ok());
  }
  auto store = PointStore::Open(path).value();
  auto row = store->outgoing.Get(Upper(id)).value();
  REQUIRE(row);
  CHECK(row->id == 7);  // the API's conversation id kept
  CHECK(row->status == "SENDT");
  auto history = store->history.History(Upper(id), Direction::kOut).value();
  CHECK(history.size() == 2);
  StatusQuery q;
  auto lines = store->history.Statuses(q).value();
  REQUIRE(lines.items.size() == 2);
  CHECK(lines.items[0].id == 41);
  CHECK(lines.items[1].id == 42);
  CHECK(store->outgoing.GetDraft(Upper("abcdef00-0000-4000-8000-00000000000d")).value());
  CHECK(store->history.Transfer(Upper(id), Direction::kOut).value()->done_bytes == 5);
  // The queue starts empty; the next status line enters it, with the next history id.
  CHECK_FALSE(store->status_queue.Peek().value());
  REQUIRE(store->outgoing.ApplyStatus(Upper(id), wire::MOTTATT, "", NowMs()).ok());
  auto head = store->status_queue.Peek().value();
  REQUIRE(head);
  CHECK(head->id == 43);
  CHECK(head->message_id == id);
}

}  // namespace
}  // namespace bud::ip
