// OutgoingStore over a real SQLite file: taking messages in (once), drafts, sealing, statuses
// through the state machine, upload progress.
#include <filesystem>

#include "tests/ip/store_fixture.h"

namespace bud::ip {
namespace {

using store_test::Fixture;
using store_test::Row;

TEST_CASE("outgoing store: an outbox folder is taken in once, with its import record",
          "[ip][store]") {
  Fixture f;
  MessageRow m = Row();
  REQUIRE_FALSE(f.store->outgoing.FolderImported("folder-1").value());
  REQUIRE(f.store->outgoing.ImportOutgoing(m, "folder-1").ok());
  CHECK(f.store->outgoing.FolderImported("folder-1").value());
  CHECK(f.store->outgoing.Has(m.message_id).value());
  auto row = f.store->outgoing.Get(m.message_id).value();
  REQUIRE(row.has_value());
  CHECK(row->status == "OPPRETTET");
  CHECK(row->state == WorkState::kNew);
  CHECK(row->payload == m.payload);
  CHECK(row->title == m.title);

  // The same id again, from a folder or the API: refused, and nothing of it is kept.
  Status again = f.store->outgoing.ImportOutgoing(m, "folder-2");
  CHECK(again.code() == Code::kAlreadyExists);
  CHECK_FALSE(f.store->outgoing.FolderImported("folder-2").value());
  CHECK(f.store->outgoing.CreateOutgoing(m).code() == Code::kAlreadyExists);
  CHECK(f.store->history.History(m.message_id, Direction::kOut).value().size() == 1);
}

TEST_CASE("outgoing store: new -> sealed keeps the envelope and drops the payload", "[ip][store]") {
  Fixture f;
  MessageRow a = Row(), b = Row();
  REQUIRE(f.store->outgoing.CreateOutgoing(a).ok());
  REQUIRE(f.store->outgoing.CreateOutgoing(b).ok());
  auto fresh = f.store->outgoing.OutgoingInState(WorkState::kNew, 10).value();
  CHECK(fresh.size() == 2);
  CHECK(f.store->outgoing.OutgoingInState(WorkState::kNew, 1).value().size() == 1);

  REQUIRE(f.store->outgoing.MarkSealed(a.message_id, "sealed envelope").ok());
  auto row = f.store->outgoing.Get(a.message_id).value();
  REQUIRE(row.has_value());
  CHECK(row->state == WorkState::kSealed);
  CHECK(row->envelope == "sealed envelope");
  CHECK(row->payload.empty());
  auto sealed = f.store->outgoing.OutgoingInState(WorkState::kSealed, 10).value();
  REQUIRE(sealed.size() == 1);
  CHECK(sealed[0].message_id == a.message_id);
  // Sealing again does nothing: only a new message is sealed.
  REQUIRE(f.store->outgoing.MarkSealed(a.message_id, "other").ok());
  CHECK(f.store->outgoing.Get(a.message_id).value()->envelope == "sealed envelope");
}

TEST_CASE("outgoing store: statuses go through the state machine, once each", "[ip][store]") {
  Fixture f;
  MessageRow m = Row();
  REQUIRE(f.store->outgoing.CreateOutgoing(m).ok());
  REQUIRE(f.store->outgoing.MarkSealed(m.message_id, "env").ok());
  const int64_t t = NowMs();
  CHECK(f.store->outgoing.ApplyStatus(m.message_id, wire::SENDT, "", t, WorkState::kSent).value());
  auto row = f.store->outgoing.Get(m.message_id).value();
  CHECK(row->status == "SENDT");
  CHECK(row->state == WorkState::kSent);
  CHECK(row->envelope.empty());  // kept only while sealed
  // A repeat is ignored entirely; a skip forwards advances; a late one is kept, not current.
  CHECK_FALSE(f.store->outgoing.ApplyStatus(m.message_id, wire::SENDT, "", t + 1).value());
  CHECK(f.store->outgoing.ApplyStatus(m.message_id, wire::LEVERT, "", t + 2).value());
  CHECK_FALSE(f.store->outgoing.ApplyStatus(m.message_id, wire::MOTTATT, "", t + 3).value());
  auto hist = f.store->history.History(m.message_id, Direction::kOut).value();
  REQUIRE(hist.size() == 4);
  CHECK(hist[3].status == "MOTTATT");
  CHECK_FALSE(hist[3].current);
  CHECK(f.store->outgoing.Get(m.message_id).value()->status == "LEVERT");
  // A final status ends the work: state done.
  CHECK(f.store->outgoing.ApplyStatus(m.message_id, wire::FEIL, "why", t + 4).value());
  row = f.store->outgoing.Get(m.message_id).value();
  CHECK(row->status == "FEIL");
  CHECK(row->state == WorkState::kDone);
  // An unknown message is an error, not a silent no-op.
  CHECK(f.store->outgoing.ApplyStatus("no-such-id", wire::SENDT, "", t).status().code() ==
        Code::kNotFound);
}

TEST_CASE("outgoing store: messages in a state, leaving out those the caller skips",
          "[ip][store]") {
  Fixture f;
  MessageRow a = Row(), b = Row(), c = Row();
  a.created_ms = 1000;
  b.created_ms = 2000;
  c.created_ms = 3000;
  for (const auto* m : {&a, &b, &c}) {
    REQUIRE(f.store->outgoing.CreateOutgoing(*m).ok());
    REQUIRE(f.store->outgoing.MarkSealed(m->message_id, "envelope of " + m->message_id).ok());
  }
  std::vector<std::string> asked;
  auto rows = f.store->outgoing
                  .OutgoingInState(WorkState::kSealed, 10,
                                   [&](const std::string& id) {
                                     asked.push_back(id);
                                     return id == b.message_id;
                                   })
                  .value();
  CHECK(asked ==
        std::vector<std::string>{a.message_id, b.message_id, c.message_id});  // oldest first
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].message_id == a.message_id);
  CHECK(rows[0].envelope == "envelope of " + a.message_id);
  CHECK(rows[1].message_id == c.message_id);
  CHECK(rows[1].envelope == "envelope of " + c.message_id);
  // The limit counts the skipped ones too.
  asked.clear();
  rows = f.store->outgoing
             .OutgoingInState(WorkState::kSealed, 2,
                              [&](const std::string& id) {
                                asked.push_back(id);
                                return false;
                              })
             .value();
  CHECK(asked.size() == 2);
  CHECK(rows.size() == 2);
  // Sent: no longer sealed.
  REQUIRE(f.store->outgoing.ApplyStatus(a.message_id, wire::SENDT, "", NowMs(), WorkState::kSent)
              .value());
  rows = f.store->outgoing
             .OutgoingInState(WorkState::kSealed, 10, [](const std::string&) { return false; })
             .value();
  CHECK(rows.size() == 2);
  CHECK(f.store->outgoing.OutgoingInState(WorkState::kSent, 10).value().size() == 1);
}

TEST_CASE("outgoing store: a late status that changes the work state keeps the current status",
          "[ip][store]") {
  // The broker's MOTTATT notice can come before its ACCEPTED for the same message: SENDT then
  // does not advance, but the message is no longer waiting to be submitted.
  Fixture f;
  MessageRow m = Row();
  REQUIRE(f.store->outgoing.CreateOutgoing(m).ok());
  REQUIRE(f.store->outgoing.MarkSealed(m.message_id, "env").ok());
  const int64_t t = NowMs();
  CHECK(f.store->outgoing.ApplyStatus(m.message_id, wire::MOTTATT, "", t).value());
  auto before = f.store->outgoing.Get(m.message_id).value();
  REQUIRE(before.has_value());
  CHECK(before->state == WorkState::kSealed);  // a status alone leaves the work state
  CHECK(before->envelope == "env");
  CHECK_FALSE(f.store->outgoing.ApplyStatus(m.message_id, wire::SENDT, "", t + 1, WorkState::kSent)
                  .value());
  auto row = f.store->outgoing.Get(m.message_id).value();
  CHECK(row->status == "MOTTATT");
  CHECK(row->updated_ms == before->updated_ms);
  CHECK(row->state == WorkState::kSent);
  CHECK(row->envelope.empty());
  auto hist = f.store->history.History(m.message_id, Direction::kOut).value();
  REQUIRE(hist.size() == 3);
  CHECK(hist[2].status == "SENDT");
  CHECK_FALSE(hist[2].current);
}

// The files this process holds open that SQLite made for statement and savepoint journals
// (temp_store=FILE creates them as "etilqs_*" in the temporary directory and unlinks them at once).
int OpenTemporaryJournals() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(e.path(), ec);
    if (!ec && target.filename().string().starts_with("etilqs_")) ++n;
  }
  return n;
}

TEST_CASE("outgoing store: a turn's nested transactions keep their journal in memory",
          "[ip][store]") {
  // Each role view's write is a savepoint inside the engine's turn. What a savepoint must undo
  // stays in memory: no temporary file holding copies of the store's pages (plaintext payloads
  // included) outside the store's folder, and no file created and removed turn after turn.
  Fixture f;
  REQUIRE(f.store->point->BeginTurn().ok());
  for (int i = 0; i < 100; ++i) {
    MessageRow m = Row();
    m.payload = std::string(10240, 'p');
    REQUIRE(f.store->outgoing.ImportOutgoing(m, "folder-" + std::to_string(i)).ok());
    REQUIRE(f.store->outgoing.MarkSealed(m.message_id, std::string(11000, 'e')).ok());
    REQUIRE(f.store->outgoing.ApplyStatus(m.message_id, wire::SENDT, "", NowMs(), WorkState::kSent)
                .ok());
  }
  CHECK(OpenTemporaryJournals() == 0);
  REQUIRE(f.store->point->CommitTurn().ok());
  CHECK(f.store->outgoing.OutgoingInState(WorkState::kSent, 1000).value().size() == 100);
}

TEST_CASE("outgoing store: drafts are created once, take files and end with their message",
          "[ip][store]") {
  Fixture f;
  const std::string id = NewUuid();
  REQUIRE(f.store->outgoing.CreateDraft(id, R"({"sbd":1})").ok());
  CHECK(f.store->outgoing.CreateDraft(id, "{}").code() == Code::kAlreadyExists);
  CHECK(f.store->outgoing.GetDraft(id).value() == std::optional<std::string>(R"({"sbd":1})"));

  DraftFile a{"a.pdf", "A", "application/pdf", "", "a.file", 10};
  CHECK(f.store->outgoing.AddDraftFile(id, a).value().empty());
  a.file = "a2.file";
  CHECK(f.store->outgoing.AddDraftFile(id, a).value() == "a.file");  // replaced: caller removes
  auto files = f.store->outgoing.DraftFiles(id).value();
  REQUIRE(files.size() == 1);
  CHECK(files[0].file == "a2.file");
  CHECK(f.store->outgoing.AddDraftFile("no-draft", a).status().code() == Code::kNotFound);

  // Sending it ends the draft in the same transaction; its id cannot start a new draft.
  MessageRow m = Row();
  m.message_id = id;
  REQUIRE(f.store->outgoing.CreateOutgoing(m).ok());
  CHECK_FALSE(f.store->outgoing.GetDraft(id).value().has_value());
  CHECK(f.store->outgoing.DraftFiles(id).value().empty());
  CHECK(f.store->outgoing.CreateDraft(id, "{}").code() == Code::kAlreadyExists);

  const std::string other = NewUuid();
  REQUIRE(f.store->outgoing.CreateDraft(other, "{}").ok());
  REQUIRE(f.store->outgoing.DeleteDraft(other).ok());
  CHECK(f.store->outgoing.DeleteDraft(other).code() == Code::kNotFound);
}

TEST_CASE("outgoing store: upload progress is the outgoing message's transfer row", "[ip][store]") {
  Fixture f;
  MessageRow m = Row();
  REQUIRE(f.store->outgoing.CreateOutgoing(m).ok());
  REQUIRE(f.store->outgoing.StartTransfer(m, 0, 1000).ok());
  REQUIRE(f.store->outgoing.TransferProgress(m.message_id, 400, "broker busy").ok());
  auto t = f.store->history.Transfer(m.message_id, Direction::kOut).value();
  REQUIRE(t.has_value());
  CHECK(t->done_bytes == 400);
  CHECK(t->total_bytes == 1000);
  CHECK(t->note == "broker busy");
  REQUIRE(f.store->outgoing.TransferProgress(m.message_id, -1, "").ok());  // all of it
  t = f.store->history.Transfer(m.message_id, Direction::kOut).value();
  CHECK(t->done_bytes == 1000);
  CHECK(t->note.empty());
  // Not the incoming one of the same id.
  CHECK_FALSE(f.store->history.Transfer(m.message_id, Direction::kIn).value().has_value());
  // Restarting resets the bytes; a message without a row is left alone.
  REQUIRE(f.store->outgoing.StartTransfer(m, 100, 1000).ok());
  CHECK(f.store->history.Transfer(m.message_id, Direction::kOut).value()->done_bytes == 100);
  REQUIRE(f.store->outgoing.TransferProgress("no-such-id", 5).ok());
  CHECK_FALSE(f.store->history.Transfer("no-such-id", Direction::kOut).value().has_value());
}

}  // namespace
}  // namespace bud::ip
