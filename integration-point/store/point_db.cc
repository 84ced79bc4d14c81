// The integration point's database: schema, migrations, checkpoints, the engine's turn. See
// point_db.h and docs/storage.md.
#include "integration-point/store/point_db.h"

#include <chrono>

#include "common/log.h"

namespace bud::ip {

namespace {
const std::vector<std::string> kMigrations = {
    R"(CREATE TABLE messages (
         message_id TEXT NOT NULL,
         direction TEXT NOT NULL CHECK (direction IN ('OUT', 'IN')),
         conversation_id TEXT NOT NULL,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         process TEXT NOT NULL,
         document_type TEXT NOT NULL,
         title TEXT NOT NULL DEFAULT '',
         created_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL,
         status TEXT NOT NULL,
         state TEXT NOT NULL,
         payload BLOB,
         envelope BLOB,
         updated_ms INTEGER NOT NULL,
         PRIMARY KEY (message_id, direction)
       );
       CREATE INDEX messages_by_state ON messages(direction, state);
       CREATE INDEX messages_by_conversation ON messages(conversation_id);
       CREATE TABLE history (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         message_id TEXT NOT NULL,
         direction TEXT NOT NULL,
         status TEXT NOT NULL,
         reason TEXT NOT NULL DEFAULT '',
         at_ms INTEGER NOT NULL,
         advanced INTEGER NOT NULL
       );
       CREATE INDEX history_by_message ON history(message_id, direction, id);
       CREATE TABLE outbox_imports (
         folder_key TEXT PRIMARY KEY,
         message_id TEXT NOT NULL,
         at_ms INTEGER NOT NULL
       ) WITHOUT ROWID;
       CREATE TABLE pending_reports (
         message_id TEXT NOT NULL,
         status INTEGER NOT NULL,
         reason TEXT NOT NULL,
         at_ms INTEGER NOT NULL,
         PRIMARY KEY (message_id, status)
       ) WITHOUT ROWID;)",
    // v2: the HTTP API. Incoming messages kept for peek/pop/delete (state 'api', payload kept,
    // lock_until_ms set by a peek), drafts of the large-message flow, time index for /statuses.
    R"(ALTER TABLE messages ADD COLUMN lock_until_ms INTEGER NOT NULL DEFAULT 0;
       CREATE INDEX history_by_time ON history(at_ms);
       CREATE INDEX messages_by_updated ON messages(updated_ms);
       CREATE TABLE api_drafts (
         message_id TEXT PRIMARY KEY,
         sbd TEXT NOT NULL,
         created_ms INTEGER NOT NULL
       ) WITHOUT ROWID;
       CREATE TABLE api_draft_files (
         message_id TEXT NOT NULL,
         name TEXT NOT NULL,
         title TEXT NOT NULL,
         media_type TEXT NOT NULL,
         data BLOB NOT NULL,
         added_ms INTEGER NOT NULL,
         PRIMARY KEY (message_id, name)
       ) WITHOUT ROWID;)",
    // v3: progress of streamed transfers (docs/large-messages.md), for `bud-ip status`. The
    // header fields are here too because an incoming message has no `messages` row until it is
    // complete.
    R"(CREATE TABLE transfers (
         message_id TEXT NOT NULL,
         direction TEXT NOT NULL CHECK (direction IN ('OUT', 'IN')),
         done_bytes INTEGER NOT NULL,
         total_bytes INTEGER NOT NULL,
         note TEXT NOT NULL DEFAULT '',
         updated_ms INTEGER NOT NULL,
         conversation_id TEXT NOT NULL,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         process TEXT NOT NULL,
         document_type TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL,
         PRIMARY KEY (message_id, direction)
       ) WITHOUT ROWID;)",
    // v4: large files through the HTTP API. A draft's file is on disk (spool/drafts/<id>/<file>,
    // `data` empty) unless `file` is '' (drafts from before v4: the bytes are in `data`). An
    // incoming streamed message kept for the API has its attachments in api-in/<id>/, listed in
    // `files` (JSON: name, mediaType, size, crc32).
    R"(ALTER TABLE api_draft_files ADD COLUMN file TEXT NOT NULL DEFAULT '';
       ALTER TABLE api_draft_files ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
       UPDATE api_draft_files SET size=length(data);
       ALTER TABLE messages ADD COLUMN files TEXT NOT NULL DEFAULT '';)",
    // v5: the Next Move status queue and ids in any case (docs/storage.md, "v5"). Message and
    // conversation ids are compared without regard to case (COLLATE NOCASE; a client's
    // upper-case UUID is kept as it sent it), so the tables that hold them are rebuilt with
    // their rowids and ids kept; history gets the raw receipt behind a LEST or FEIL; every new
    // history line enters status_queue until DELETE /api/statuses/{id} removes it; the expiry
    // sweep finds MOTTATT messages by messages_by_status.
    R"(CREATE TABLE messages_v5 (
         message_id TEXT NOT NULL COLLATE NOCASE,
         direction TEXT NOT NULL CHECK (direction IN ('OUT', 'IN')),
         conversation_id TEXT NOT NULL COLLATE NOCASE,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         process TEXT NOT NULL,
         document_type TEXT NOT NULL,
         title TEXT NOT NULL DEFAULT '',
         created_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL,
         status TEXT NOT NULL,
         state TEXT NOT NULL,
         payload BLOB,
         envelope BLOB,
         updated_ms INTEGER NOT NULL,
         lock_until_ms INTEGER NOT NULL DEFAULT 0,
         files TEXT NOT NULL DEFAULT '',
         PRIMARY KEY (message_id, direction)
       );
       INSERT INTO messages_v5(rowid, message_id, direction, conversation_id, sender, receiver,
         process, document_type, title, created_ms, expires_ms, status, state, payload, envelope,
         updated_ms, lock_until_ms, files)
       SELECT rowid, message_id, direction, conversation_id, sender, receiver, process,
         document_type, title, created_ms, expires_ms, status, state, payload, envelope,
         updated_ms, lock_until_ms, files FROM messages;
       DROP TABLE messages;
       ALTER TABLE messages_v5 RENAME TO messages;
       CREATE INDEX messages_by_state ON messages(direction, state);
       CREATE INDEX messages_by_conversation ON messages(conversation_id);
       CREATE INDEX messages_by_updated ON messages(updated_ms);
       CREATE INDEX messages_by_status ON messages(direction, status, expires_ms);
       CREATE TABLE history_v5 (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         message_id TEXT NOT NULL COLLATE NOCASE,
         direction TEXT NOT NULL,
         status TEXT NOT NULL,
         reason TEXT NOT NULL DEFAULT '',
         at_ms INTEGER NOT NULL,
         advanced INTEGER NOT NULL,
         raw_receipt TEXT NOT NULL DEFAULT ''
       );
       INSERT INTO history_v5(id, message_id, direction, status, reason, at_ms, advanced)
       SELECT id, message_id, direction, status, reason, at_ms, advanced FROM history;
       DROP TABLE history;
       ALTER TABLE history_v5 RENAME TO history;
       CREATE INDEX history_by_message ON history(message_id, direction, id);
       CREATE INDEX history_by_time ON history(at_ms);
       CREATE TABLE api_drafts_v5 (
         message_id TEXT PRIMARY KEY COLLATE NOCASE,
         sbd TEXT NOT NULL,
         created_ms INTEGER NOT NULL
       ) WITHOUT ROWID;
       INSERT INTO api_drafts_v5 SELECT message_id, sbd, created_ms FROM api_drafts;
       DROP TABLE api_drafts;
       ALTER TABLE api_drafts_v5 RENAME TO api_drafts;
       CREATE TABLE api_draft_files_v5 (
         message_id TEXT NOT NULL COLLATE NOCASE,
         name TEXT NOT NULL,
         title TEXT NOT NULL,
         media_type TEXT NOT NULL,
         data BLOB NOT NULL,
         added_ms INTEGER NOT NULL,
         file TEXT NOT NULL DEFAULT '',
         size INTEGER NOT NULL DEFAULT 0,
         PRIMARY KEY (message_id, name)
       ) WITHOUT ROWID;
       INSERT INTO api_draft_files_v5 SELECT message_id, name, title, media_type, data, added_ms,
         file, size FROM api_draft_files;
       DROP TABLE api_draft_files;
       ALTER TABLE api_draft_files_v5 RENAME TO api_draft_files;
       CREATE TABLE transfers_v5 (
         message_id TEXT NOT NULL COLLATE NOCASE,
         direction TEXT NOT NULL CHECK (direction IN ('OUT', 'IN')),
         done_bytes INTEGER NOT NULL,
         total_bytes INTEGER NOT NULL,
         note TEXT NOT NULL DEFAULT '',
         updated_ms INTEGER NOT NULL,
         conversation_id TEXT NOT NULL,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         process TEXT NOT NULL,
         document_type TEXT NOT NULL,
         created_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL,
         PRIMARY KEY (message_id, direction)
       ) WITHOUT ROWID;
       INSERT INTO transfers_v5 SELECT message_id, direction, done_bytes, total_bytes, note,
         updated_ms, conversation_id, sender, receiver, process, document_type, created_ms,
         expires_ms FROM transfers;
       DROP TABLE transfers;
       ALTER TABLE transfers_v5 RENAME TO transfers;
       CREATE TABLE status_queue (
         history_id INTEGER PRIMARY KEY
       );
       CREATE TRIGGER history_enters_status_queue AFTER INSERT ON history BEGIN
         INSERT INTO status_queue(history_id) VALUES (new.id);
       END;)",
    // v6: refused intake (refusal_store.h): outbox folders moved to .failed and API requests
    // refused after their body, open until a folder of that name is taken in.
    R"(CREATE TABLE refusals (
         id INTEGER PRIMARY KEY,
         source TEXT NOT NULL CHECK (source IN ('outbox', 'api')),
         name TEXT NOT NULL,
         moved_to TEXT NOT NULL DEFAULT '',
         failed_name TEXT NOT NULL DEFAULT '',
         reason TEXT NOT NULL,
         class TEXT NOT NULL,
         refused_ms INTEGER NOT NULL,
         resolved_ms INTEGER NOT NULL DEFAULT 0,
         resolved_message_id TEXT NOT NULL DEFAULT ''
       );
       CREATE INDEX refusals_open ON refusals (resolved_ms, name);)",
    // v7: webhook subscriptions (subscription_store.h). Each holds a cursor into the history:
    // the status lines after `pushed_through` are the events it has still to be sent.
    R"(CREATE TABLE subscriptions (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         name TEXT NOT NULL,
         push_endpoint TEXT NOT NULL,
         resource TEXT NOT NULL,
         event TEXT NOT NULL,
         filter TEXT NOT NULL DEFAULT '',
         pushed_through INTEGER NOT NULL,
         created_ms INTEGER NOT NULL
       );)",
    // v8: the message id a refused API request named ('' when it named none), by which a later
    // take-in of that id resolves it.
    R"(ALTER TABLE refusals ADD COLUMN message_id TEXT NOT NULL DEFAULT '' COLLATE NOCASE;)",
    // v9: DELETE /api/conversations (docs/http-api.md): a deleted conversation is hidden from the
    // API's conversation and status views (deleted_ms set), never removed, because the engine
    // may still work on it and an incoming row is the dedup of its message id. Its lines leave
    // the status queue, and later ones do not enter it.
    // Also the arkivmelding's reference (eFormidling's messageReference) of an outgoing message.
    R"(ALTER TABLE messages ADD COLUMN deleted_ms INTEGER NOT NULL DEFAULT 0;
       ALTER TABLE messages ADD COLUMN message_reference TEXT NOT NULL DEFAULT '';
       DROP TRIGGER history_enters_status_queue;
       CREATE TRIGGER history_enters_status_queue AFTER INSERT ON history
       WHEN NOT EXISTS (SELECT 1 FROM messages WHERE message_id=new.message_id
                        AND direction=new.direction AND deleted_ms<>0) BEGIN
         INSERT INTO status_queue(history_id) VALUES (new.id);
       END;)",
    // v10: message channels (docs/protocol.md, "Message channels"): the channel of the point an
    // incoming message came from, where a receipt answering it is sent.
    R"(ALTER TABLE messages ADD COLUMN sender_channel TEXT NOT NULL DEFAULT '';)",
};

constexpr int64_t kCheckpointPages = 4096;  // 16 MiB of WAL
constexpr int64_t kTruncateEveryMs = 60000;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

PointDb::PointDb(std::unique_ptr<storage::Db> db) : conn_(std::move(db)) {}
PointDb::~PointDb() = default;

Result<std::unique_ptr<PointDb>> PointDb::Open(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::OpenStore(path, kMigrations));
  // The savepoints inside a turn's transaction (storage::Transaction nests) keep the pages they
  // change in memory instead of in a temporary file: SQLite otherwise created, wrote and removed
  // a file under /var/tmp for them turn after turn (most of the point's write calls), holding
  // copies of the store's pages, plaintext payloads included, outside the store's own folder.
  BUD_RETURN_IF_ERROR(db->Exec("PRAGMA temp_store=MEMORY"));
  std::unique_ptr<PointDb> point(new PointDb(std::move(db)));
  // Checkpoints off the engine's turn (common/storage/checkpointer.h): a turn that crossed
  // SQLite's 1,000-page threshold copied the WAL into the database file before it could answer.
  BUD_ASSIGN_OR_RETURN(point->checkpointer_,
                       storage::Checkpointer::Attach(*point->conn_, kCheckpointPages));
  return point;
}

Result<std::unique_ptr<PointDb>> PointDb::OpenReadOnly(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::OpenStoreReadOnly(
                                    path, static_cast<int>(kMigrations.size()), "bud-ip"));
  return std::unique_ptr<PointDb>(new PointDb(std::move(db)));
}

Status PointDb::BeginTurn() {
  if (turn_) return Status::Ok();
  auto tx = std::make_unique<storage::Transaction>(*conn_);
  BUD_RETURN_IF_ERROR(tx->began());
  turn_ = std::move(tx);
  return Status::Ok();
}

Status PointDb::CommitTurn() {
  if (!turn_) return Status::Ok();
  std::unique_ptr<storage::Transaction> tx = std::move(turn_);
  BUD_RETURN_IF_ERROR(tx->Commit());  // when it fails, tx's destruction rolls the turn back
  tx.reset();
  // Once a minute the WAL file is truncated, so a quiet point does not keep the largest WAL it
  // ever had; a failure here costs disk space only, never the commit.
  const int64_t now = SteadyMs();
  if (now - last_truncate_mono_ms_ >= kTruncateEveryMs) {
    last_truncate_mono_ms_ = now;
    Status c = conn_->Checkpoint();
    if (!c.ok()) Logger("ip")->warn("store: WAL checkpoint: {}", c.ToString());
  }
  return Status::Ok();
}

void PointDb::RollbackTurn() { turn_.reset(); }  // the destructor rolls back

}  // namespace bud::ip
