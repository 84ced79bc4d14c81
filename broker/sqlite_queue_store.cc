// The broker store on SQLite. See sqlite_queue_store.h and docs/storage.md.
#include "broker/sqlite_queue_store.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <unordered_set>

#include "common/clock.h"
#include "common/fs.h"
#include "common/storage/paced_vfs.h"

namespace bud::broker {

namespace {
const std::vector<std::string> kMigrations = {
    R"(CREATE TABLE messages (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         message_id TEXT NOT NULL UNIQUE,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         envelope BLOB NOT NULL,
         received_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL
       );
       CREATE INDEX messages_by_receiver ON messages(receiver, seq);
       CREATE TABLE seen (
         message_id TEXT PRIMARY KEY,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         first_seen_ms INTEGER NOT NULL
       ) WITHOUT ROWID;
       CREATE TABLE reports (
         message_id TEXT NOT NULL,
         status INTEGER NOT NULL,
         PRIMARY KEY (message_id, status)
       ) WITHOUT ROWID;
       CREATE TABLE notices (
         notice_id INTEGER PRIMARY KEY AUTOINCREMENT,
         org TEXT NOT NULL,
         message_id TEXT NOT NULL,
         status INTEGER NOT NULL,
         reason TEXT NOT NULL,
         at_ms INTEGER NOT NULL
       );
       CREATE INDEX notices_by_org ON notices(org, notice_id);)",
    // 2: delivery attempts survive restarts, so a message no receiver can take ends in FEIL.
    R"(ALTER TABLE messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;)",
    // 3: the expiry sweep and the attempts check (every sweep_ms) find their rows through
    // indexes; they scanned every queued message, which with a million queued stalled the loop.
    R"(CREATE INDEX messages_by_expiry ON messages(expires_ms);
       CREATE INDEX messages_with_attempts ON messages(attempts) WHERE attempts > 0;)",
    // 4: messages loses its UNIQUE index on message_id: `seen` (PRIMARY KEY message_id) already
    // refuses a second copy, and a second random-UUID index dirtied one more B-tree page per
    // message in every commit. `seen` keeps the queued copy's seq; lookups by id go through it.
    // AUTOINCREMENT's counter is carried over, so no seq is ever handed out twice.
    R"(ALTER TABLE seen ADD COLUMN seq INTEGER;
       UPDATE seen SET seq=(SELECT m.seq FROM messages m WHERE m.message_id=seen.message_id);
       CREATE TABLE messages_v4 (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         message_id TEXT NOT NULL,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         envelope BLOB NOT NULL,
         received_ms INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL,
         attempts INTEGER NOT NULL DEFAULT 0
       );
       INSERT INTO messages_v4(seq, message_id, sender, receiver, envelope, received_ms,
                               expires_ms, attempts)
         SELECT seq, message_id, sender, receiver, envelope, received_ms, expires_ms, attempts
         FROM messages;
       DELETE FROM sqlite_sequence WHERE name='messages_v4';
       INSERT INTO sqlite_sequence(name, seq)
         SELECT 'messages_v4', seq FROM sqlite_sequence WHERE name='messages';
       DROP TABLE messages;
       ALTER TABLE messages_v4 RENAME TO messages;
       CREATE INDEX messages_by_receiver ON messages(receiver, seq);
       CREATE INDEX messages_by_expiry ON messages(expires_ms);
       CREATE INDEX messages_with_attempts ON messages(attempts) WHERE attempts > 0;)",
    // 5: streamed uploads in progress (broker/streams.h). The chunks are in spool files beside the
    // store; next_chunk is committed only after the spool is fsynced up to it.
    R"(CREATE TABLE uploads (
         message_id TEXT PRIMARY KEY,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         head BLOB NOT NULL,
         next_chunk INTEGER NOT NULL,
         expires_ms INTEGER NOT NULL
       ) WITHOUT ROWID;)",
    // 6: `seen` and `reports` are pruned after the retention window
    // (SqliteQueueStore::PruneHistory); the oldest ids are found through this index. first_seen_ms
    // grows with time, so its inserts land on the index's last page, not on a random one.
    R"(CREATE INDEX seen_by_first_seen ON seen(first_seen_ms);)",
    // 7: message channels (docs/protocol.md, "Message channels"). A session takes the mailbox
    // (organisation, channel): the receiver's queue read stays one index range scan, and so does
    // a sender's notices. `seen` keeps both channels of a message, for the reports that come
    // after its payload left the queue.
    R"(ALTER TABLE messages ADD COLUMN receiver_channel TEXT NOT NULL DEFAULT '';
       ALTER TABLE seen ADD COLUMN sender_channel TEXT NOT NULL DEFAULT '';
       ALTER TABLE seen ADD COLUMN receiver_channel TEXT NOT NULL DEFAULT '';
       ALTER TABLE notices ADD COLUMN channel TEXT NOT NULL DEFAULT '';
       DROP INDEX messages_by_receiver;
       CREATE INDEX messages_by_receiver ON messages(receiver, receiver_channel, seq);
       DROP INDEX notices_by_org;
       CREATE INDEX notices_by_org ON notices(org, channel, notice_id);)",
    // 8: `seen` becomes a log in commit order (row number n), found by id through the id index
    // beside the store (broker/seen_index.h): a random-UUID primary key dirtied a random page per
    // message. The reports applied are bits of their seen row (1 << status), not rows of a second
    // random-id table. Pruning goes in row order (first_seen_ms grows with n), so seen has no
    // index of its own to write. store_meta's token ties the index file to this store.
    R"(CREATE TABLE seen_v8 (
         n INTEGER PRIMARY KEY,
         message_id TEXT NOT NULL,
         sender TEXT NOT NULL,
         receiver TEXT NOT NULL,
         first_seen_ms INTEGER NOT NULL,
         seq INTEGER,
         sender_channel TEXT NOT NULL DEFAULT '',
         receiver_channel TEXT NOT NULL DEFAULT '',
         reported INTEGER NOT NULL DEFAULT 0
       );
       INSERT INTO seen_v8(message_id, sender, receiver, first_seen_ms, seq, sender_channel,
                           receiver_channel, reported)
         SELECT s.message_id, s.sender, s.receiver, s.first_seen_ms, s.seq, s.sender_channel,
                s.receiver_channel,
                coalesce((SELECT sum(1 << r.status) FROM reports r
                          WHERE r.message_id=s.message_id), 0)
         FROM seen s ORDER BY s.first_seen_ms, s.message_id;
       DROP TABLE seen;
       DROP TABLE reports;
       ALTER TABLE seen_v8 RENAME TO seen;
       CREATE TABLE store_meta (
         key TEXT PRIMARY KEY,
         value TEXT NOT NULL
       ) WITHOUT ROWID;
       INSERT INTO store_meta(key, value)
         VALUES('seen_index_token', lower(hex(randomblob(16))));)",
};

// The reports applied to a message, counted from its seen row's `reported` bits (statuses 0..15).
std::string CountReportBits() {
  std::string sum = "SELECT coalesce(sum(";
  for (int bit = 0; bit < 16; ++bit) {
    if (bit > 0) sum += '+';
    sum += fmt::format("((reported>>{})&1)", bit);
  }
  return sum + "), 0) FROM seen";
}

// Page cache of the broker's connection (KiB; SQLite's default is 2 MiB). Holds the upper levels
// of the message-id indexes, so a random UUID insert touches the disk cache less. Not a
// durability setting.
constexpr int64_t kCacheKib = 16 * 1024;
// WAL pages that start a background checkpoint (storage::Checkpointer; SQLite's own automatic
// checkpoint, 1,000 pages, ran inside the commit and stalled the loop). The random `seen` index
// dirties a page per message, so a longer interval also copies a page once for several changes.
// The loop still checkpoints and truncates the WAL every checkpoint_ms.
constexpr int64_t kCheckpointPages = 4096;
}  // namespace

int SchemaVersion() { return static_cast<int>(kMigrations.size()); }

const std::vector<std::string>& Migrations() { return kMigrations; }

namespace {
// The statistics of the broker store open in `db`, in one read transaction; `db` must not be
// inside a transaction.
Result<StoreStats> ReadStats(storage::Db& db, bool count_history) {
  // A read transaction: every count below sees the same snapshot.
  BUD_RETURN_IF_ERROR(db.Exec("BEGIN"));
  struct EndRead {
    storage::Db& db;
    ~EndRead() { (void)db.Exec("COMMIT"); }
  } end_read{db};
  StoreStats out;
  BUD_ASSIGN_OR_RETURN(out.schema_version, db.UserVersion());
  BUD_ASSIGN_OR_RETURN(
      auto* q,
      db.Prepare(
          "SELECT receiver, receiver_channel, count(*), sum(length(envelope)), min(received_ms), "
          "sum(attempts > 0), max(attempts) FROM messages GROUP BY receiver, receiver_channel "
          "ORDER BY receiver, receiver_channel"));
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    ReceiverStats r{q->Text(0), q->Text(1), q->Int(2), q->Int(3), q->Int(4), q->Int(5), q->Int(6)};
    out.queued += r.queued;
    out.bytes += r.bytes;
    out.receivers.push_back(std::move(r));
  }
  BUD_ASSIGN_OR_RETURN(
      auto* n,
      db.Prepare("SELECT org, channel, count(*), min(at_ms) FROM notices GROUP BY org, channel "
                 "ORDER BY org, channel"));
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, n->Step());
    if (!row) break;
    out.senders.push_back({n->Text(0), n->Text(1), n->Int(2), n->Int(3)});
    out.notices += out.senders.back().pending;
  }
  if (count_history) {
    const std::string reports = CountReportBits();
    for (auto [sql, target] : {std::pair{std::string("SELECT count(*) FROM seen"), &out.seen_ids},
                               std::pair{reports, &out.reports}}) {
      BUD_ASSIGN_OR_RETURN(auto* c, db.Prepare(sql));
      BUD_ASSIGN_OR_RETURN(bool row, c->Step());
      *target = row ? c->Int(0) : 0;
      c->Reset();
    }
  }
  BUD_ASSIGN_OR_RETURN(auto* u, db.Prepare("SELECT count(*) FROM uploads"));
  BUD_ASSIGN_OR_RETURN(bool urow, u->Step());
  out.uploads = urow ? u->Int(0) : 0;
  u->Reset();
  return out;
}

Result<int64_t> DbBytes(storage::Db& db) {
  BUD_ASSIGN_OR_RETURN(auto* q, db.Prepare(
      "SELECT p.page_count * s.page_size FROM pragma_page_count() p, pragma_page_size() s"));
  BUD_ASSIGN_OR_RETURN(bool row, q->Step());
  const int64_t bytes = row ? q->Int(0) : 0;
  q->Reset();
  return bytes;
}

Result<int64_t> CountQueuedRows(storage::Db& db) {
  BUD_ASSIGN_OR_RETURN(auto* st, db.Prepare("SELECT count(*) FROM messages"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  int64_t n = row ? st->Int(0) : 0;
  st->Reset();
  return n;
}

// The read side on a read-only connection (admin commands, /metrics).
// The file and its folder (for the WAL) take writes, as far as permissions tell.
Status FileWritable(const std::string& path) {
  if (::access(path.c_str(), W_OK) != 0) {
    return Status(Code::kUnavailable,
                  fmt::format("SQLite file {} is not writable: {}", path, std::strerror(errno)));
  }
  const std::string dir = ParentDir(AbsolutePath(path));
  if (::access(dir.c_str(), W_OK) != 0) {
    return Status(Code::kUnavailable, fmt::format("the folder {} of the SQLite file is not "
                                                  "writable: {}",
                                                  dir, std::strerror(errno)));
  }
  return Status::Ok();
}

class SqliteQueueReader final : public QueueStoreReader {
 public:
  explicit SqliteQueueReader(std::unique_ptr<storage::Db> db) : db_(std::move(db)) {}
  Result<StoreStats> Stats(bool count_history) override { return ReadStats(*db_, count_history); }
  Result<int64_t> QueuedCount() override { return CountQueuedRows(*db_); }
  Result<int64_t> BytesUsed() override { return DbBytes(*db_); }
  std::string Describe() const override { return "SQLite file " + db_->path(); }
  Status CheckWritable() override { return FileWritable(db_->path()); }

 private:
  std::unique_ptr<storage::Db> db_;
};
}  // namespace

Result<std::unique_ptr<QueueStoreReader>> OpenSqliteQueueReader(const std::string& path) {
  if (!Exists(path)) {
    return Status(Code::kNotFound, fmt::format("there is no broker store at '{}' (check "
                                               "broker.store; `bud-broker run` creates it)",
                                               path));
  }
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::OpenStoreReadOnly(
                                    path, static_cast<int>(kMigrations.size()), "bud-broker"));
  return std::unique_ptr<QueueStoreReader>(std::make_unique<SqliteQueueReader>(std::move(db)));
}

Result<StoreStats> SqliteQueueStore::Stats(bool count_history) {
  return ReadStats(*db_, count_history);
}

Result<int64_t> SqliteQueueStore::BytesUsed() { return DbBytes(*db_); }

std::string SqliteQueueStore::Describe() const { return "SQLite file " + db_->path(); }

Result<SqliteQueueStore::Durability> SqliteQueueStore::durability() {
  Durability d;
  BUD_ASSIGN_OR_RETURN(auto* s, db_->Prepare("PRAGMA synchronous"));
  BUD_ASSIGN_OR_RETURN(bool row, s->Step());
  d.synchronous = row ? s->Int(0) : -1;
  s->Reset();
  BUD_ASSIGN_OR_RETURN(auto* j, db_->Prepare("PRAGMA journal_mode"));
  BUD_ASSIGN_OR_RETURN(row, j->Step());
  d.journal_mode = row ? j->Text(0) : "";
  j->Reset();
  return d;
}

std::optional<IdIndexStats> SqliteQueueStore::IdIndex() const {
  const SeenIndex& i = *seen_index_;
  return IdIndexStats{i.in_memory(),  i.merges(),       i.merge_failures(),
                      i.side_reads(), i.filter_ready(), i.level_merges()};
}

Status SqliteQueueStore::Maintain() {
  seen_index_->Tick(/*force=*/true);  // at a quiet rate too, the ids reach the index file
  return db_->Checkpoint();
}

Result<std::optional<SqliteQueueStore::SeenRow>> SqliteQueueStore::FindSeen(
    const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto* q,
                       db_->Prepare("SELECT message_id, sender, receiver, seq, sender_channel, "
                                    "receiver_channel, reported FROM seen WHERE n=?"));
  // The index may name a row that was pruned or belongs to another id: only the row decides.
  auto row_of = [&](int64_t n) -> Result<std::optional<SeenRow>> {
    BUD_ASSIGN_OR_RETURN(bool row, q->Bind(1, n).Step());
    std::optional<SeenRow> out;
    if (row && q->Text(0) == message_id) {
      out = SeenRow{n, q->Text(1), q->Text(2), q->Int(3), q->Text(4), q->Text(5), q->Int(6)};
    }
    q->Reset();
    return out;
  };
  // Memory first: a report usually follows its submit closely, and the side file is then not read.
  for (int64_t n : seen_index_->Recent(message_id)) {
    BUD_ASSIGN_OR_RETURN(auto found, row_of(n));
    if (found) return found;
  }
  BUD_ASSIGN_OR_RETURN(auto merged, seen_index_->Merged(message_id));
  for (int64_t n : merged) {
    BUD_ASSIGN_OR_RETURN(auto found, row_of(n));
    if (found) return found;
  }
  return std::optional<SeenRow>();
}

Result<std::unique_ptr<SqliteQueueStore>> SqliteQueueStore::Open(const std::string& path,
                                                                 int64_t max_bytes,
                                                                 int64_t merge_at) {
  storage::Db::Options options;
  options.vfs = storage::GatheredWritesVfs();  // synchronous=FULL, as Options has it
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::OpenStore(path, kMigrations, options));
  BUD_RETURN_IF_ERROR(db->Exec(fmt::format("PRAGMA cache_size=-{}", kCacheKib)));
  std::unique_ptr<SqliteQueueStore> store(new SqliteQueueStore(std::move(db)));
  BUD_ASSIGN_OR_RETURN(store->checkpointer_,
                       storage::Checkpointer::Attach(*store->db_, kCheckpointPages));
  // Above every seq ever handed out: AUTOINCREMENT's counter survives deletes, max(seq) covers a
  // store whose counter row is missing.
  BUD_ASSIGN_OR_RETURN(auto* q, store->db_->Prepare(
      "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name='messages'), 0), "
      "coalesce((SELECT max(seq) FROM messages), 0))"));
  BUD_ASSIGN_OR_RETURN(bool row, q->Step());
  store->next_seq_ = (row ? q->Int(0) : 0) + 1;
  q->Reset();
  QueueCounts::ByOrg by_receiver, by_sender;
  for (auto [sql, target] :
       {std::pair{"SELECT receiver, count(*) FROM messages GROUP BY receiver", &by_receiver},
        std::pair{"SELECT sender, count(*) FROM messages GROUP BY sender", &by_sender}}) {
    BUD_ASSIGN_OR_RETURN(auto* c, store->db_->Prepare(sql));
    for (;;) {
      BUD_ASSIGN_OR_RETURN(bool r, c->Step());
      if (!r) break;
      (*target)[c->Text(0)] = c->Int(1);
    }
  }
  store->counts_.Set(std::move(by_receiver), std::move(by_sender));
  BUD_ASSIGN_OR_RETURN(store->seen_index_,
                       SeenIndex::Open(SeenIndex::PathFor(path), *store->db_, merge_at));
  // Above every row number in the log and in the index (a restored older store must not hand out
  // numbers the index already holds for other ids: they would count as merged at the next open).
  BUD_ASSIGN_OR_RETURN(auto* top, store->db_->Prepare("SELECT coalesce(max(n), 0) FROM seen"));
  BUD_ASSIGN_OR_RETURN(bool any, top->Step());
  store->next_n_ = std::max(any ? top->Int(0) : 0, store->seen_index_->watermark()) + 1;
  top->Reset();
  if (max_bytes > 0) BUD_RETURN_IF_ERROR(store->LimitBytes(max_bytes));
  return store;
}

Result<int64_t> SqliteQueueStore::PruneHistory(int64_t before_ms, int limit) {
  // The oldest rows, in commit order (the log's row number), a bounded window of them: rows still
  // queued or uploading, or stamped by a clock that was ahead, are skipped, not scanned past
  // without end.
  BUD_ASSIGN_OR_RETURN(
      auto* q,
      db_->Prepare("SELECT s.message_id, s.n FROM "
                   "(SELECT n, message_id, seq, first_seen_ms FROM seen ORDER BY n LIMIT ?) s "
                   "WHERE s.first_seen_ms<? "
                   "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.seq=s.seq) "
                   "AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.message_id=s.message_id) "
                   "LIMIT ?"));
  q->Bind(1, int64_t{4} * limit + 64).Bind(2, before_ms).Bind(3, limit);
  std::vector<std::pair<std::string, int64_t>> rows;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    rows.emplace_back(q->Text(0), q->Int(1));
  }
  if (rows.empty()) return int64_t{0};
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  for (const auto& row : rows) {
    BUD_ASSIGN_OR_RETURN(auto* d, db_->Prepare("DELETE FROM seen WHERE n=?"));
    BUD_RETURN_IF_ERROR(d->Bind(1, row.second).Run());
  }
  BUD_RETURN_IF_ERROR(tx.Commit());
  const auto pruned = static_cast<int64_t>(rows.size());
  seen_index_->Forget(std::move(rows));
  return pruned;
}

Status SqliteQueueStore::LimitBytes(int64_t max_bytes) {
  BUD_ASSIGN_OR_RETURN(auto* q, db_->Prepare("PRAGMA page_size"));
  BUD_ASSIGN_OR_RETURN(bool row, q->Step());
  const int64_t page = row && q->Int(0) > 0 ? q->Int(0) : 4096;
  q->Reset();
  // SQLite answers SQLITE_FULL beyond this, exactly as on a full disk.
  return db_->Exec(fmt::format("PRAGMA max_page_count={}", std::max<int64_t>(max_bytes / page, 16)));
}

Result<int64_t> SqliteQueueStore::AddAttempts(const std::vector<std::string>& message_ids) {
  if (message_ids.empty()) return int64_t{0};
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  for (const auto& id : message_ids) {
    BUD_ASSIGN_OR_RETURN(auto row, FindSeen(id));
    if (!row) continue;
    BUD_ASSIGN_OR_RETURN(auto* st,
                         db_->Prepare("UPDATE messages SET attempts=attempts+1 WHERE seq=?"));
    BUD_RETURN_IF_ERROR(st->Bind(1, row->seq).Run());
  }
  BUD_RETURN_IF_ERROR(tx.Commit());
  return static_cast<int64_t>(message_ids.size());
}

Result<std::vector<Expired>> SqliteQueueStore::FailExhausted(int64_t max_attempts, int64_t now_ms) {
  BUD_ASSIGN_OR_RETURN(
      auto* q,
      db_->Prepare(
          "SELECT message_id, sender, receiver, receiver_channel, attempts FROM messages "
          "WHERE attempts>0 AND attempts>=? LIMIT 1000"));  // attempts>0: the partial index
  q->Bind(1, max_attempts);
  return Conclude(*q, wire::FEIL, now_ms, [](const Expired& e, int64_t attempts) {
    return fmt::format("{} did not acknowledge the delivery after {} attempts", e.receiver,
                       attempts);
  });
}

Result<std::vector<Expired>> SqliteQueueStore::ExpireDue(int64_t now_ms, int limit) {
  BUD_ASSIGN_OR_RETURN(
      auto* q,
      db_->Prepare(
          "SELECT message_id, sender, receiver, receiver_channel, expires_ms FROM messages "
          "WHERE expires_ms<=? "
          "ORDER BY expires_ms LIMIT ?"));
  q->Bind(1, now_ms).Bind(2, limit);
  return Conclude(*q, wire::LEVETID_UTLOPT, now_ms, [](const Expired& e, int64_t expires_ms) {
    return fmt::format("not received by {} before it expired at {}", e.receiver,
                       FormatTime(expires_ms));
  });
}

// Ends every queued message `query` selects (message_id, sender, receiver, receiver_channel, one
// number for the reason) with `status`, in one transaction, through the same path as a receiver's
// report.
Result<std::vector<Expired>> SqliteQueueStore::Conclude(
    storage::Stmt& query, MsgStatus status, int64_t now_ms,
    const std::function<std::string(const Expired&, int64_t)>& reason) {
  counts_.Drop();
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  std::vector<Expired> out;
  std::vector<int64_t> numbers;
  std::vector<std::string> channels;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    out.push_back({query.Text(0), query.Text(1), query.Text(2), std::string(),
                   MailboxKey(query.Text(2), query.Text(3))});
    channels.push_back(query.Text(3));
    numbers.push_back(query.Int(4));
  }
  for (size_t i = 0; i < out.size(); ++i) {
    ReportItem r;
    r.reporter = out[i].receiver;
    r.reporter_channel = channels[i];
    r.message_id = out[i].message_id;
    r.status = status;
    r.reason = reason(out[i], numbers[i]);
    r.at_ms = now_ms;
    BUD_RETURN_IF_ERROR(ApplyReport(r, now_ms));
    out[i].sender_mailbox = r.notify_mailbox;
  }
  Status committed = tx.Commit();
  if (!committed.ok()) {
    counts_.Drop();
    return committed;
  }
  counts_.Commit();
  return out;
}

CommitResult SqliteQueueStore::CommitBatch(std::vector<SubmitItem>& submits,
                                           std::vector<ReportItem>& reports,
                                           const std::vector<NoticeAck>& acks) {
  // SQLite knows whether its own commit happened: durable or failed, never unknown.
  // The batch's id lookups share one read of the index file (a lock each cost a system call).
  seen_index_->BeginReads();
  Status done = DoCommitBatch(submits, reports, acks);
  seen_index_->EndReads();
  if (done.ok()) seen_index_->Tick(/*force=*/false);
  return CommitResult::From(std::move(done));
}

Status SqliteQueueStore::DoCommitBatch(std::vector<SubmitItem>& submits,
                                       std::vector<ReportItem>& reports,
                                       const std::vector<NoticeAck>& acks) {
  const int64_t now = NowMs();
  counts_.Drop();
  // Any early return below leaves the counts as committed.
  struct DropPending {
    SqliteQueueStore& store;
    bool keep = false;
    ~DropPending() {
      if (!keep) {
        store.counts_.Drop();
        store.seen_index_->Drop();
        store.fresh_.Drop();
      }
    }
  } drop_pending{*this};
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  for (auto& s : submits) {
    s.duplicate = s.conflict = false;
    s.refused.clear();
    // A known id is answered as the duplicate it is, also when a queue is full.
    BUD_ASSIGN_OR_RETURN(auto known, FindSeen(s.message_id));
    if (known) {
      s.duplicate = true;
      s.conflict = known->sender != s.sender;
      continue;
    }
    std::string why = QueueRoom(s.sender, s.receiver);
    if (why.empty()) why = seen_index_->Room();
    if (!why.empty()) {
      s.refused = std::move(why);
      continue;
    }
    // Appended to the log (its last page), with the queue position from the start; the index
    // finds it by id from now on, in this transaction too (a second copy in the same batch).
    BUD_ASSIGN_OR_RETURN(
        auto* seen,
        db_->Prepare("INSERT INTO seen(n, message_id, sender, receiver, first_seen_ms, seq, "
                     "sender_channel, receiver_channel) VALUES(?,?,?,?,?,?,?,?)"));
    // Without copies: the items outlive the statement's run.
    seen->Bind(1, next_n_).BindView(2, s.message_id).BindView(3, s.sender);
    seen->BindView(4, s.receiver).Bind(5, now).Bind(6, next_seq_);
    seen->BindView(7, s.sender_channel).BindView(8, s.receiver_channel);
    BUD_RETURN_IF_ERROR(seen->Run());
    seen_index_->Stage(s.message_id, next_n_++);
    BUD_ASSIGN_OR_RETURN(
        auto* ins,
        db_->Prepare(
            "INSERT INTO messages(seq, message_id, sender, receiver, envelope, received_ms, "
            "expires_ms, receiver_channel) VALUES(?,?,?,?,?,?,?,?)"));
    ins->Bind(1, next_seq_).BindView(2, s.message_id).BindView(3, s.sender);
    ins->BindView(4, s.receiver).BindBlobView(5, s.envelope).Bind(6, now);
    ins->Bind(7, s.expires_ms).BindView(8, s.receiver_channel);
    BUD_RETURN_IF_ERROR(ins->Run());
    if (s.receiver_online) fresh_.Stage(next_seq_, s.message_id, s.envelope);
    counts_.Count(s.sender, s.receiver, +1);
    ++next_seq_;
  }
  for (auto& r : reports) BUD_RETURN_IF_ERROR(ApplyReport(r, now));
  for (const auto& a : acks) {
    const auto [org, channel] = SplitMailboxKey(a.org);
    BUD_ASSIGN_OR_RETURN(
        auto* st, db_->Prepare("DELETE FROM notices WHERE notice_id=? AND org=? AND channel=?"));
    BUD_RETURN_IF_ERROR(st->Bind(1, a.notice_id).Bind(2, org).Bind(3, channel).Run());
  }
  BUD_RETURN_IF_ERROR(tx.Commit());
  counts_.Commit();
  seen_index_->Commit();
  fresh_.Commit();
  drop_pending.keep = true;
  return Status::Ok();
}

// Inside CommitBatch's transaction. A refused report (not the reporter's message) is recorded in
// r.result and is not an error of the batch.
Status SqliteQueueStore::ApplyReport(ReportItem& r, int64_t now) {
  r.result = Status::Ok();
  r.notify_mailbox.clear();
  BUD_ASSIGN_OR_RETURN(auto found, FindSeen(r.message_id));
  if (!found) {
    r.result = Status(Code::kNotFound, fmt::format("message {} is unknown here", r.message_id));
    return Status::Ok();
  }
  const std::string& sender = found->sender;
  const std::string& receiver = found->receiver;
  const int64_t seq = found->seq;  // 0 (NULL) when the copy was never queued
  const std::string& sender_channel = found->sender_channel;
  const std::string& receiver_channel = found->receiver_channel;
  if (receiver != r.reporter || receiver_channel != r.reporter_channel) {
    r.result = Status(Code::kInvalidArgument,
                      fmt::format("message {} is addressed to {}, not to {}", r.message_id,
                                  MailboxKey(receiver, receiver_channel),
                                  MailboxKey(r.reporter, r.reporter_channel)));
    return Status::Ok();
  }
  // Each status a receiver can report is one bit of the row (statuses are below 16).
  const int64_t bit = int64_t{1} << (static_cast<int>(r.status) & 15);
  const bool first_time = (found->reported & bit) == 0;
  if (first_time) {
    BUD_ASSIGN_OR_RETURN(auto* log, db_->Prepare("UPDATE seen SET reported=reported|? WHERE n=?"));
    BUD_RETURN_IF_ERROR(log->Bind(1, bit).Bind(2, found->n).Run());
  }
  if (r.status == wire::MOTTATT || IsFinal(r.status)) {  // delivery is over: drop the payload
    BUD_ASSIGN_OR_RETURN(auto* del, db_->Prepare("DELETE FROM messages WHERE seq=?"));
    BUD_RETURN_IF_ERROR(del->Bind(1, seq).Run());
    if (del->Changes() > 0) counts_.Count(sender, receiver, -1);
  }
  if (!first_time) return Status::Ok();  // a repeated report: one notice is enough
  BUD_ASSIGN_OR_RETURN(auto* n, db_->Prepare("INSERT INTO notices(org, message_id, status, reason, "
                                             "at_ms, channel) VALUES(?,?,?,?,?,?)"));
  n->BindAll(sender, r.message_id, static_cast<int64_t>(r.status), r.reason,
             r.at_ms ? r.at_ms : now, sender_channel);
  BUD_RETURN_IF_ERROR(n->Run());
  r.notify_mailbox = MailboxKey(sender, sender_channel);
  return Status::Ok();
}

Status SqliteQueueStore::CheckWritable() { return FileWritable(db_->path()); }

Result<SessionLease> SqliteQueueStore::TakeSession(const std::string& org,
                                                   const std::string& holder, int64_t) {
  Lease& l = leases_[org];
  SessionLease out;
  out.previous_holder = l.holder == holder ? std::string() : l.holder;
  l.holder = holder;
  out.epoch = ++l.epoch;
  return out;
}

Result<std::vector<std::pair<std::string, int64_t>>> SqliteQueueStore::RenewSessions(
    const std::string& holder, int64_t) {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& [org, l] : leases_) {
    if (l.holder == holder) out.emplace_back(org, l.epoch);
  }
  return out;
}

Status SqliteQueueStore::ReleaseSession(const LeaseRef& lease) {
  if (CheckLease(lease).ok()) leases_[lease.org].holder.clear();
  return Status::Ok();
}

Status SqliteQueueStore::CheckLease(const LeaseRef& lease) const {
  auto it = leases_.find(lease.org);
  if (it == leases_.end() || it->second.holder.empty() || it->second.holder != lease.holder ||
      it->second.epoch != lease.epoch) {
    return Status(Code::kConflict,
                  fmt::format("the session lease of {} (epoch {}) is no longer this broker's",
                              lease.org, lease.epoch));
  }
  return Status::Ok();
}

Result<std::vector<Queued>> SqliteQueueStore::ClaimDeliveries(
    const LeaseRef& lease, const std::vector<int64_t>& handed_out, int limit) {
  BUD_RETURN_IF_ERROR(CheckLease(lease));
  // The queue's first seqs from the mailbox's index alone (it covers them), those in flight left
  // out; only the envelopes handed out now are read (the ones in flight were read before), and
  // those of the last commits not even that (FreshEnvelopes).
  BUD_ASSIGN_OR_RETURN(
      auto* st, db_->Prepare("SELECT seq FROM messages WHERE receiver=? AND receiver_channel=? "
                             "ORDER BY seq LIMIT ?"));
  const auto [org, channel] = SplitMailboxKey(lease.org);
  st->BindAll(org, channel, limit + static_cast<int>(handed_out.size()));
  const std::unordered_set<int64_t> skip(handed_out.begin(), handed_out.end());
  std::vector<int64_t> seqs;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row || static_cast<int>(seqs.size()) >= limit) break;
    if (!skip.contains(st->Int(0))) seqs.push_back(st->Int(0));
  }
  st->Reset();
  std::vector<Queued> out;
  for (int64_t seq : seqs) {
    if (auto fresh = fresh_.Take(seq)) {
      out.push_back({seq, std::move(fresh->message_id), std::move(fresh->envelope)});
      continue;
    }
    BUD_ASSIGN_OR_RETURN(auto q, BySeq(seq));
    if (q) out.push_back(std::move(*q));
  }
  return out;
}

Result<std::optional<Queued>> SqliteQueueStore::ClaimRedelivery(const LeaseRef& lease,
                                                                int64_t seq) {
  BUD_RETURN_IF_ERROR(CheckLease(lease));
  BUD_ASSIGN_OR_RETURN(auto q, BySeq(seq));
  if (q) BUD_RETURN_IF_ERROR(AddAttempts({q->message_id}).status());
  return q;
}

Result<std::vector<Queued>> SqliteQueueStore::NextFor(const std::string& receiver, int64_t after_seq,
                                           int limit) {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_->Prepare(
          "SELECT seq, message_id, envelope FROM messages WHERE receiver=? AND receiver_channel=? "
          "AND seq>? ORDER BY seq LIMIT ?"));
  const auto [org, channel] = SplitMailboxKey(receiver);
  st->BindAll(org, channel, after_seq, limit);
  std::vector<Queued> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->Int(0), st->Text(1), st->Blob(2)});
  }
  return out;
}

Result<std::optional<Queued>> SqliteQueueStore::BySeq(int64_t seq) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "SELECT seq, message_id, envelope FROM messages WHERE seq=?"));
  st->Bind(1, seq);
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return std::optional<Queued>();
  Queued q{st->Int(0), st->Text(1), st->Blob(2)};
  st->Reset();
  return std::optional<Queued>(std::move(q));
}

Result<std::vector<Notice>> SqliteQueueStore::NoticesFor(const std::string& org, int64_t after_id,
                                              int limit) {
  BUD_ASSIGN_OR_RETURN(
      auto* st,
      db_->Prepare("SELECT notice_id, message_id, status, reason, at_ms FROM notices "
                   "WHERE org=? AND channel=? AND notice_id>? ORDER BY notice_id LIMIT ?"));
  const auto [owner, channel] = SplitMailboxKey(org);
  st->BindAll(owner, channel, after_id, limit);
  std::vector<Notice> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({st->Int(0), st->Text(1), static_cast<MsgStatus>(st->Int(2)), st->Text(3),
                   st->Int(4)});
  }
  return out;
}

Result<int64_t> SqliteQueueStore::QueuedCount() { return CountQueuedRows(*db_); }

Result<int64_t> SqliteQueueStore::Attempts(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto found, FindSeen(message_id));
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare("SELECT attempts FROM messages WHERE seq=?"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Bind(1, found ? found->seq : int64_t{0}).Step());
  if (!row) return Status(Code::kNotFound, fmt::format("message {} is not queued", message_id));
  const int64_t n = st->Int(0);
  st->Reset();
  return n;
}

Result<bool> SqliteQueueStore::IsKnown(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto found, FindSeen(message_id));
  return found.has_value();
}

Result<bool> SqliteQueueStore::IsQueued(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto found, FindSeen(message_id));
  if (!found) return false;
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare("SELECT 1 FROM messages WHERE seq=?"));
  BUD_ASSIGN_OR_RETURN(bool row, st->Bind(1, found->seq).Step());
  st->Reset();
  return row;
}

Result<std::vector<UploadRow>> SqliteQueueStore::LoadUploads() {
  BUD_ASSIGN_OR_RETURN(auto* q, db_->Prepare(
      "SELECT message_id, sender, receiver, head, next_chunk, expires_ms FROM uploads"));
  std::vector<UploadRow> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) break;
    out.push_back({q->Text(0), q->Text(1), q->Text(2), q->Blob(3),
                   static_cast<uint64_t>(std::max<int64_t>(q->Int(4), 0)), q->Int(5)});
  }
  return out;
}

Status SqliteQueueStore::InsertUpload(const UploadRow& row) {
  BUD_ASSIGN_OR_RETURN(auto* known, db_->Prepare("SELECT 1 FROM uploads WHERE message_id=?"));
  BUD_ASSIGN_OR_RETURN(bool exists, known->Bind(1, row.message_id).Step());
  known->Reset();
  if (exists) {
    return Status(Code::kAlreadyExists,
                  fmt::format("an upload of message {} is in progress", row.message_id));
  }
  BUD_ASSIGN_OR_RETURN(auto* ins, db_->Prepare(
      "INSERT INTO uploads (message_id, sender, receiver, head, next_chunk, expires_ms) "
      "VALUES (?, ?, ?, ?, ?, ?)"));
  ins->BindAll(row.message_id, row.sender, row.receiver);
  ins->BindBlob(4, row.head).Bind(5, row.next_chunk).Bind(6, row.expires_ms);
  return ins->Run();
}

Status SqliteQueueStore::SetUploadPositions(
    const std::vector<std::pair<std::string, uint64_t>>& positions) {
  if (positions.empty()) return Status::Ok();
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  for (const auto& [id, next] : positions) {
    BUD_ASSIGN_OR_RETURN(auto* up, db_->Prepare(
        "UPDATE uploads SET next_chunk=? WHERE message_id=?"));
    BUD_RETURN_IF_ERROR(up->Bind(1, next).Bind(2, id).Run());
  }
  return tx.Commit();
}

Status SqliteQueueStore::DeleteUploads(const std::vector<std::string>& message_ids) {
  if (message_ids.empty()) return Status::Ok();
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  for (const auto& id : message_ids) {
    BUD_ASSIGN_OR_RETURN(auto* del, db_->Prepare("DELETE FROM uploads WHERE message_id=?"));
    BUD_RETURN_IF_ERROR(del->Bind(1, id).Run());
  }
  return tx.Commit();
}

}  // namespace bud::broker
