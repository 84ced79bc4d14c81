// The broker store on PostgreSQL. See pg_queue_store.h and docs/storage.md.
#include "broker/pg_queue_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "common/clock.h"
#include "common/log.h"

namespace bud::broker {

namespace pg = storage::pg;

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("broker"); }

// One script per version; migrations[i] brings the schema from version i to i + 1.
const std::vector<std::string> kPgMigrations = {
    R"(CREATE SEQUENCE broker_message_seq;
       CREATE TABLE broker_messages (
         seq bigint PRIMARY KEY,
         message_id text NOT NULL,
         sender text NOT NULL,
         receiver text NOT NULL,
         envelope bytea NOT NULL,
         received_ms bigint NOT NULL,
         expires_ms bigint NOT NULL,
         attempts integer NOT NULL DEFAULT 0
       );
       CREATE INDEX broker_messages_by_receiver ON broker_messages(receiver, seq);
       CREATE INDEX broker_messages_by_expiry ON broker_messages(expires_ms);
       CREATE INDEX broker_messages_with_attempts ON broker_messages(attempts) WHERE attempts > 0;
       CREATE TABLE broker_seen (
         message_id text PRIMARY KEY,
         sender text NOT NULL,
         receiver text NOT NULL,
         first_seen_ms bigint NOT NULL,
         seq bigint
       );
       CREATE INDEX broker_seen_by_first_seen ON broker_seen(first_seen_ms);
       CREATE TABLE broker_reports (
         message_id text NOT NULL,
         status integer NOT NULL,
         PRIMARY KEY (message_id, status)
       );
       CREATE TABLE broker_notices (
         notice_id bigserial PRIMARY KEY,
         org text NOT NULL,
         message_id text NOT NULL,
         status integer NOT NULL,
         reason text NOT NULL,
         at_ms bigint NOT NULL
       );
       CREATE INDEX broker_notices_by_org ON broker_notices(org, notice_id);
       CREATE TABLE broker_uploads (
         message_id text PRIMARY KEY,
         sender text NOT NULL,
         receiver text NOT NULL,
         head bytea NOT NULL,
         next_chunk bigint NOT NULL,
         expires_ms bigint NOT NULL
       );)",
    // 2: the chunks of streamed messages, in the database (rows per chunk). Their records are
    // ciphertext: stored out of line, not compressed.
    R"(CREATE TABLE broker_chunks (
         message_id text NOT NULL,
         idx bigint NOT NULL,
         record bytea NOT NULL,
         PRIMARY KEY (message_id, idx)
       );
       ALTER TABLE broker_chunks ALTER COLUMN record SET STORAGE EXTERNAL;)",
    // 3: several brokers on one database. The session leases (one row per organisation ever
    // seen, kept when released so that its epoch only grows), and the index the per-sender cap
    // counts through.
    R"(CREATE TABLE broker_sessions (
         org text PRIMARY KEY,
         holder text NOT NULL,
         epoch bigint NOT NULL,
         taken_ms bigint NOT NULL,
         expires_ms bigint NOT NULL
       );
       CREATE INDEX broker_sessions_by_holder ON broker_sessions(holder);
       CREATE INDEX broker_messages_by_sender ON broker_messages(sender);)",
    // 4: message channels (docs/protocol.md, "Message channels"). A session takes the mailbox
    // (organisation, channel): the receiver's queue read and a sender's notices stay index range
    // scans; `seen` keeps both channels for the reports after the payload left the queue. The
    // session leases are keyed by the mailbox key (broker/queue_store.h) in their org column.
    R"(ALTER TABLE broker_messages ADD COLUMN receiver_channel text NOT NULL DEFAULT '';
       ALTER TABLE broker_seen ADD COLUMN sender_channel text NOT NULL DEFAULT '',
                               ADD COLUMN receiver_channel text NOT NULL DEFAULT '';
       ALTER TABLE broker_notices ADD COLUMN channel text NOT NULL DEFAULT '';
       DROP INDEX broker_messages_by_receiver;
       CREATE INDEX broker_messages_by_receiver
         ON broker_messages(receiver, receiver_channel, seq);
       DROP INDEX broker_notices_by_org;
       CREATE INDEX broker_notices_by_org ON broker_notices(org, channel, notice_id);)",
    // 5: the queued messages per receiver ('r <org>') and per sender ('s <org>'), kept by every
    // batch that stores or removes messages, in its transaction. The caps read and lock these
    // rows instead of counting the queue (a count per batch grew with the queue: at 15,000
    // queued it was 85 % of a batch's time). The per-sender index was only for that count.
    R"(CREATE TABLE broker_queue_counts (
         key text PRIMARY KEY,
         n bigint NOT NULL
       );
       INSERT INTO broker_queue_counts(key, n)
         SELECT 'r ' || receiver, count(*) FROM broker_messages GROUP BY receiver
         UNION ALL
         SELECT 's ' || sender, count(*) FROM broker_messages GROUP BY sender;
       DROP INDEX broker_messages_by_sender;)",
};

// The database server's clock in milliseconds: leases are timed by one clock for all brokers.
#define BUD_DB_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

// Reports applied by one set of statements at most (ApplyReports; parameters stay far below
// PostgreSQL's 65,535).
constexpr size_t kReportsPerStatement = 1000;

// The channel of wake-ups: the payload is the mailbox key with something new.
constexpr const char* kWakeChannel = "bud_broker_wake";
// A lost listener connection is opened again at most this often.
constexpr int64_t kListenRetryMs = 1000;

// Held while the schema is created or migrated (pg_advisory_xact_lock): "bud-broker".
constexpr int64_t kSchemaLock = 0x6275642d62726f6b;
constexpr int64_t kBytesRefreshMs = 2000;

pg::ConnectOptions Defaults(pg::ConnectOptions options) {
  if (options.application_name == "budstikke") options.application_name = "bud-broker";
  return options;
}

// synchronous_commit is the server's default; the broker says so itself, whatever the server's
// or the role's settings are.
// Every statement of the broker is short and most run in its loop: no parallel plans (starting
// the workers alone took ~7 ms a statement, e.g. the history prune on a young table).
Status SetUpSession(pg::Connection& c) {
  return c.ExecScript("SET synchronous_commit = on; SET max_parallel_workers_per_gather = 0");
}

// The schema version, 0 when there is no schema yet.
Result<int> ReadVersion(pg::Connection& c) {
  BUD_ASSIGN_OR_RETURN(auto t, c.Exec("SELECT to_regclass('broker_schema') IS NOT NULL"));
  if (t.empty() || t.Int(0, 0) == 0) return 0;
  BUD_ASSIGN_OR_RETURN(auto v, c.Exec("SELECT max(version) FROM broker_schema"));
  return v.empty() || v.IsNull(0, 0) ? 0 : static_cast<int>(v.Int(0, 0));
}

Status CheckVersion(pg::Connection& c) {
  BUD_ASSIGN_OR_RETURN(int version, ReadVersion(c));
  if (version != PgSchemaVersion()) {
    return Status(Code::kUnsupported,
                  fmt::format("the broker store in {} has schema version {}, this release reads "
                              "version {} (`bud-broker db migrate` or `bud-broker run` migrates it)",
                              c.description(), version, PgSchemaVersion()));
  }
  return Status::Ok();
}

// Creates or migrates the schema in one transaction; returns the version found.
Result<int> Migrate(pg::Connection& c) {
  pg::Transaction tx(c);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_RETURN_IF_ERROR(c.Exec("SELECT pg_advisory_xact_lock($1)", pg::Params::Of(kSchemaLock))
                          .status());
  BUD_RETURN_IF_ERROR(c.ExecScript("CREATE TABLE IF NOT EXISTS broker_schema (version integer NOT NULL)"));
  BUD_ASSIGN_OR_RETURN(int from, ReadVersion(c));
  if (from > PgSchemaVersion()) {
    return Status(Code::kUnsupported,
                  fmt::format("the broker store in {} has schema version {}, newer than this "
                              "release's {}; run the release that wrote it",
                              c.description(), from, PgSchemaVersion()));
  }
  if (from == PgSchemaVersion()) return from;  // rolled back: nothing was changed
  for (int v = from; v < PgSchemaVersion(); ++v) {
    BUD_RETURN_IF_ERROR(c.ExecScript(kPgMigrations[static_cast<size_t>(v)]));
  }
  BUD_RETURN_IF_ERROR(c.ExecScript("DELETE FROM broker_schema"));
  BUD_RETURN_IF_ERROR(c.Exec("INSERT INTO broker_schema(version) VALUES ($1)",
                             pg::Params::Of(static_cast<int64_t>(PgSchemaVersion())))
                          .status());
  pg::CommitResult done = tx.Commit();
  if (!done.durable()) return done.status.Context("migrating the broker schema");
  Log()->info("broker store {}: schema version {} (was {})", c.description(), PgSchemaVersion(),
              from);
  return from;
}

Result<StoreStats> ReadStats(pg::Connection& c, bool count_history) {
  // One snapshot for every count below.
  pg::Transaction tx(c, pg::Transaction::Isolation::kRepeatableRead);
  BUD_RETURN_IF_ERROR(tx.began());
  StoreStats out;
  BUD_ASSIGN_OR_RETURN(out.schema_version, ReadVersion(c));
  BUD_ASSIGN_OR_RETURN(auto q, c.Exec("SELECT receiver, receiver_channel, count(*)::bigint, "
                                      "sum(length(envelope))::bigint, min(received_ms), "
                                      "count(*) FILTER (WHERE attempts > 0)::bigint, max(attempts) "
                                      "FROM broker_messages GROUP BY receiver, receiver_channel "
                                      "ORDER BY receiver, receiver_channel"));
  for (int i = 0; i < q.size(); ++i) {
    ReceiverStats r{q.Text(i, 0), q.Text(i, 1), q.Int(i, 2), q.Int(i, 3),
                    q.Int(i, 4),  q.Int(i, 5),  q.Int(i, 6)};
    out.queued += r.queued;
    out.bytes += r.bytes;
    out.receivers.push_back(std::move(r));
  }
  BUD_ASSIGN_OR_RETURN(auto n,
                       c.Exec("SELECT org, channel, count(*)::bigint, min(at_ms) FROM "
                              "broker_notices GROUP BY org, channel ORDER BY org, channel"));
  for (int i = 0; i < n.size(); ++i) {
    out.senders.push_back({n.Text(i, 0), n.Text(i, 1), n.Int(i, 2), n.Int(i, 3)});
    out.notices += out.senders.back().pending;
  }
  if (count_history) {
    BUD_ASSIGN_OR_RETURN(auto h, c.Exec("SELECT (SELECT count(*) FROM broker_seen)::bigint, "
                                        "(SELECT count(*) FROM broker_reports)::bigint"));
    out.seen_ids = h.Int(0, 0);
    out.reports = h.Int(0, 1);
  }
  BUD_ASSIGN_OR_RETURN(auto u, c.Exec("SELECT count(*)::bigint FROM broker_uploads"));
  out.uploads = u.Int(0, 0);
  BUD_ASSIGN_OR_RETURN(
      auto sessions,
      c.Exec("SELECT org, holder, expires_ms FROM broker_sessions WHERE expires_ms > "
             "(extract(epoch FROM clock_timestamp()) * 1000)::bigint ORDER BY org"));
  out.sessions_known = true;
  for (int i = 0; i < sessions.size(); ++i) {
    out.sessions.push_back({sessions.Text(i, 0), sessions.Text(i, 1), sessions.Int(i, 2)});
  }
  (void)tx.Commit();  // read only: nothing to keep
  return out;
}

Result<int64_t> ReadQueuedCount(pg::Connection& c) {
  BUD_ASSIGN_OR_RETURN(auto r, c.Exec("SELECT count(*)::bigint FROM broker_messages"));
  return r.Int(0, 0);
}

// Ok when the server takes writes (a primary, not read-only).
Status CheckServerWritable(pg::Connection& c) {
  BUD_ASSIGN_OR_RETURN(auto ro, c.Exec("SELECT pg_is_in_recovery() OR "
                                       "current_setting('default_transaction_read_only') = 'on'"));
  if (ro.Int(0, 0) != 0) {
    return Status(Code::kUnavailable,
                  fmt::format("PostgreSQL {} ({}) takes no writes (a standby in recovery, or "
                              "read-only)",
                              c.server(), c.description()));
  }
  return Status::Ok();
}

// Sends a wake-up for each organisation, delivered to listeners when the transaction commits
// (PostgreSQL folds repeats within one transaction).
Status Notify(pg::Connection& c, const std::set<std::string>& orgs) {
  for (const auto& org : orgs) {
    BUD_RETURN_IF_ERROR(
        c.Exec("SELECT pg_notify($1, $2)", pg::Params::Of(kWakeChannel, org)).status());
  }
  return Status::Ok();
}

Result<int64_t> ReadBytes(pg::Connection& c) {
  BUD_ASSIGN_OR_RETURN(auto r, c.Exec("SELECT pg_database_size(current_database())::bigint"));
  return r.Int(0, 0);
}

// The read side on a connection of its own.
class PgQueueReader final : public QueueStoreReader {
 public:
  explicit PgQueueReader(std::unique_ptr<pg::Connection> c) : c_(std::move(c)) {}
  Result<StoreStats> Stats(bool count_history) override {
    BUD_RETURN_IF_ERROR(Ready());
    return ReadStats(*c_, count_history);
  }
  Result<int64_t> QueuedCount() override {
    BUD_RETURN_IF_ERROR(Ready());
    return ReadQueuedCount(*c_);
  }
  Result<int64_t> BytesUsed() override {
    BUD_RETURN_IF_ERROR(Ready());
    return ReadBytes(*c_);
  }
  std::string Describe() const override { return "PostgreSQL " + c_->description(); }
  Status CheckWritable() override {
    BUD_RETURN_IF_ERROR(Ready());
    return CheckServerWritable(*c_);
  }

 private:
  Status Ready() { return c_->NeedsReconnect() ? c_->Reconnect() : Status::Ok(); }
  std::unique_ptr<pg::Connection> c_;
};

bool LostConnection(const Status& s, pg::Connection& c) {
  return !s.ok() && c.NeedsReconnect();
}
}  // namespace

int PgSchemaVersion() { return static_cast<int>(kPgMigrations.size()); }

Result<PgStoreInfo> MigratePgQueueStore(const pg::ConnectOptions& options) {
  BUD_ASSIGN_OR_RETURN(auto c, pg::Connection::Open(Defaults(options)));
  PgStoreInfo info;
  BUD_ASSIGN_OR_RETURN(info.migrated_from, Migrate(*c));
  info.server = c->server();
  info.database = c->description();
  info.schema_version = PgSchemaVersion();
  info.writable = true;
  return info;
}

Result<PgStoreInfo> CheckPgQueueStore(const pg::ConnectOptions& options) {
  pg::ConnectOptions any = Defaults(options);
  any.read_write = false;  // a standby is reported as such, not refused
  BUD_ASSIGN_OR_RETURN(auto c, pg::Connection::Open(any));
  PgStoreInfo info;
  info.server = c->server();
  info.database = c->description();
  BUD_ASSIGN_OR_RETURN(info.schema_version, ReadVersion(*c));
  BUD_ASSIGN_OR_RETURN(auto ro, c->Exec("SELECT pg_is_in_recovery() OR "
                                        "current_setting('transaction_read_only') = 'on' OR "
                                        "current_setting('default_transaction_read_only') = 'on'"));
  info.writable = ro.Int(0, 0) == 0;
  return info;
}

Result<std::unique_ptr<QueueStoreReader>> OpenPgQueueReader(const pg::ConnectOptions& options) {
  pg::ConnectOptions any = Defaults(options);
  any.read_write = false;  // statistics can be read from a standby too
  BUD_ASSIGN_OR_RETURN(auto c, pg::Connection::Open(any));
  BUD_RETURN_IF_ERROR(CheckVersion(*c));
  return std::unique_ptr<QueueStoreReader>(std::make_unique<PgQueueReader>(std::move(c)));
}

Result<std::unique_ptr<PgQueueStore>> PgQueueStore::Open(const pg::ConnectOptions& options,
                                                         int64_t max_bytes) {
  BUD_ASSIGN_OR_RETURN(auto c, pg::Connection::Open(Defaults(options)));
  BUD_RETURN_IF_ERROR(SetUpSession(*c));
  BUD_RETURN_IF_ERROR(Migrate(*c).status());
  std::unique_ptr<PgQueueStore> store(new PgQueueStore(std::move(c)));
  store->options_ = Defaults(options);
  if (Status l = store->Listen(); !l.ok()) {
    Log()->warn("broker store: no wake-ups from other brokers for now ({}); polling meanwhile",
                l.ToString());
  }
  if (max_bytes > 0) BUD_RETURN_IF_ERROR(store->LimitBytes(max_bytes));
  return store;
}

Result<std::string> PgQueueStore::synchronous_commit() {
  BUD_ASSIGN_OR_RETURN(auto r, Read<pg::Rows>([this] {
    return conn_->Exec("SELECT current_setting('synchronous_commit')");
  }));
  return r.Text(0, 0);
}

std::string PgQueueStore::Describe() const { return "PostgreSQL " + conn_->description(); }

Status PgQueueStore::Ready() {
  if (conn_->NeedsReconnect()) {
    BUD_RETURN_IF_ERROR(conn_->Reconnect());
    BUD_RETURN_IF_ERROR(SetUpSession(*conn_));
    Log()->warn("broker store: connected again to {} ({})", conn_->server(), conn_->description());
    bytes_read_mono_ = -1;
  }
  return Status::Ok();
}

template <typename T>
Result<T> PgQueueStore::Read(const std::function<Result<T>()>& read) {
  BUD_RETURN_IF_ERROR(Ready());
  Result<T> r = read();
  if (!r.ok() && LostConnection(r.status(), *conn_)) {
    BUD_RETURN_IF_ERROR(Ready());
    r = read();
  }
  return r;
}

// Inside the batch's transaction: the count rows of every organisation the batch may change
// (`keys`, 'r <org>' and 's <org>') are created when missing, then locked in one order (so two
// brokers cannot deadlock) and read. A second broker's batch for the same organisation waits
// until this one committed, then reads what it stored: the caps hold across brokers.
Status PgQueueStore::LockCounts(const std::set<std::string>& keys) {
  if (keys.empty()) return Status::Ok();
  const std::vector<std::string_view> sorted(keys.begin(), keys.end());  // a std::set: sorted
  // Count rows are never deleted: a key this connection found before exists, and the INSERT
  // (a round trip) is only for new organisations, or when the SELECT misses one after all.
  bool all_known = true;
  for (const auto& k : keys) all_known = all_known && count_keys_.contains(k);
  for (int pass = all_known ? 0 : 1; pass < 2; ++pass) {
    if (pass == 1) {
      BUD_RETURN_IF_ERROR(conn_
                              ->Exec("INSERT INTO broker_queue_counts(key, n) "
                                     "SELECT k, 0 FROM unnest($1::text[]) AS k ORDER BY k "
                                     "ON CONFLICT (key) DO NOTHING",
                                     pg::Params().AddTextArray(sorted))
                              .status());
    }
    BUD_ASSIGN_OR_RETURN(auto r, conn_->Exec("SELECT key, n FROM broker_queue_counts "
                                             "WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE",
                                             pg::Params().AddTextArray(sorted)));
    if (pass == 0 && static_cast<size_t>(r.size()) != keys.size()) continue;
    QueueCounts::ByOrg by_receiver, by_sender;
    for (int i = 0; i < r.size(); ++i) {
      std::string key = r.Text(i, 0);
      (key.starts_with("r ") ? by_receiver : by_sender)[key.substr(2)] = r.Int(i, 1);
      if (count_keys_.size() < kMaxCountKeys) count_keys_.insert(std::move(key));
    }
    counts_.Set(std::move(by_receiver), std::move(by_sender));
    return Status::Ok();
  }
  return Status::Ok();
}

// Inside the batch's transaction, after its changes: adds them to the count rows (locked by
// LockCounts).
Status PgQueueStore::SaveCounts() {
  std::vector<std::string> keys;
  std::vector<int64_t> deltas;
  auto add = [&](const char* prefix, const QueueCounts::ByOrg& changes) {
    for (const auto& [org, delta] : changes) {
      if (delta == 0) continue;
      keys.push_back(prefix + org);
      deltas.push_back(delta);
    }
  };
  add("r ", counts_.pending_by_receiver());
  add("s ", counts_.pending_by_sender());
  if (keys.empty()) return Status::Ok();
  return conn_
      ->Exec(
          "INSERT INTO broker_queue_counts AS c(key, n) "
          "SELECT * FROM unnest($1::text[], $2::bigint[]) "
          "ON CONFLICT (key) DO UPDATE SET n = c.n + EXCLUDED.n",
          pg::Params().AddTextArray(keys).AddInt8Array(deltas))
      .status();
}

std::string PgQueueStore::QueueRoom(const std::string& sender, const std::string& receiver) const {
  if (!caps_.per_receiver && !caps_.per_sender) return std::string();
  // A first look for a streamed upload before it starts; CommitBatch decides under the locks.
  // When the count cannot be read, the commit will tell.
  auto r = conn_->Exec(
      "SELECT coalesce((SELECT n FROM broker_queue_counts WHERE key = 'r ' || $1), 0), "
      "coalesce((SELECT n FROM broker_queue_counts WHERE key = 's ' || $2), 0)",
      pg::Params::Of(receiver, sender));
  if (!r.ok() || r->empty()) return std::string();
  QueueCounts counts;
  counts.SetCaps(caps_);
  counts.Set({{receiver, r->Int(0, 0)}}, {{sender, r->Int(0, 1)}});
  return counts.Room(sender, receiver);
}

Status PgQueueStore::Listen() {
  listen_retry_mono_ = MonoMs();
  if (!listen_) {
    pg::ConnectOptions o = options_;
    o.application_name = "bud-broker-listen";
    BUD_ASSIGN_OR_RETURN(listen_, pg::Connection::Open(o));
  } else {
    BUD_RETURN_IF_ERROR(listen_->Reconnect());
  }
  return listen_->ExecScript(fmt::format("LISTEN {}", kWakeChannel));
}

int PgQueueStore::WakeFd() const { return listen_ && listen_->ok() ? listen_->socket() : -1; }

Result<std::vector<std::string>> PgQueueStore::TakeWakeups() {
  if (!listen_ || !listen_->ok()) {
    if (MonoMs() - listen_retry_mono_ < kListenRetryMs) return std::vector<std::string>();
    BUD_RETURN_IF_ERROR(Listen());
    Log()->info("broker store: listening for other brokers' wake-ups again on {}",
                listen_->server());
    return std::vector<std::string>();
  }
  BUD_ASSIGN_OR_RETURN(auto n, listen_->TakeNotifications());
  std::vector<std::string> out;
  for (auto& [channel, org] : n) {
    if (channel == kWakeChannel) out.push_back(std::move(org));
  }
  return out;
}

Result<SessionLease> PgQueueStore::TakeSession(const std::string& org, const std::string& holder,
                                               int64_t lease_ms) {
  BUD_RETURN_IF_ERROR(Ready());
  pg::Transaction tx(*conn_);
  BUD_RETURN_IF_ERROR(tx.began());
  // The row lock orders this take after every claim in progress under the old epoch.
  BUD_ASSIGN_OR_RETURN(auto old, conn_->Exec("SELECT holder, expires_ms > " BUD_DB_NOW_MS
                                             " FROM broker_sessions WHERE org=$1 FOR UPDATE",
                                             pg::Params::Of(org)));
  BUD_ASSIGN_OR_RETURN(
      auto r, conn_->Exec("INSERT INTO broker_sessions(org, holder, epoch, taken_ms, expires_ms) "
                          "VALUES ($1, $2, 1, " BUD_DB_NOW_MS ", " BUD_DB_NOW_MS " + $3) "
                          "ON CONFLICT (org) DO UPDATE SET holder = EXCLUDED.holder, "
                          "epoch = broker_sessions.epoch + 1, taken_ms = EXCLUDED.taken_ms, "
                          "expires_ms = EXCLUDED.expires_ms RETURNING epoch",
                          pg::Params::Of(org, holder, lease_ms)));
  pg::CommitResult done = tx.Commit();
  if (!done.durable()) return done.status.Context(fmt::format("taking the session of {}", org));
  SessionLease out;
  out.epoch = r.Int(0, 0);
  if (!old.empty() && old.Int(0, 1) != 0 && old.Text(0, 0) != holder) {
    out.previous_holder = old.Text(0, 0);
  }
  return out;
}

Result<std::vector<std::pair<std::string, int64_t>>> PgQueueStore::RenewSessions(
    const std::string& holder, int64_t lease_ms) {
  BUD_RETURN_IF_ERROR(Ready());
  BUD_ASSIGN_OR_RETURN(auto r, conn_->Exec("UPDATE broker_sessions SET expires_ms = " BUD_DB_NOW_MS
                                           " + $2 WHERE holder=$1 "
                                           "RETURNING org, epoch",
                                           pg::Params::Of(holder, lease_ms)));
  std::vector<std::pair<std::string, int64_t>> out;
  for (int i = 0; i < r.size(); ++i) out.emplace_back(r.Text(i, 0), r.Int(i, 1));
  return out;
}

Status PgQueueStore::ReleaseSession(const LeaseRef& lease) {
  BUD_RETURN_IF_ERROR(Ready());
  return conn_
      ->Exec(
          "UPDATE broker_sessions SET holder = '', expires_ms = 0 "
          "WHERE org=$1 AND holder=$2 AND epoch=$3",
          pg::Params::Of(lease.org, lease.holder, lease.epoch))
      .status();
}

namespace {
Status LeaseLost(const LeaseRef& lease) {
  return Status(Code::kConflict,
                fmt::format("the session lease of {} (epoch {}) is no longer this broker's: "
                            "another broker took the session over",
                            lease.org, lease.epoch));
}
}  // namespace

// One statement: the lease row is read FOR SHARE, so a TakeSession of the org (which updates the
// row) either committed before (then the row no longer matches and nothing is returned) or
// waits until this statement is over. Row 0 (seq 0, never a queue position) says the lease held.
Result<std::vector<Queued>> PgQueueStore::ClaimDeliveries(const LeaseRef& lease,
                                                          const std::vector<int64_t>& handed_out,
                                                          int limit) {
  const std::pair<std::string, std::string> mailbox = SplitMailboxKey(lease.org);
  BUD_ASSIGN_OR_RETURN(
      auto r, Read<pg::Rows>([&] {
        return conn_->Exec(
            "WITH lease AS (SELECT epoch FROM broker_sessions "
            "  WHERE org=$1 AND holder=$2 AND epoch=$3 FOR SHARE) "
            "SELECT 0::bigint, ''::text, ''::bytea FROM lease "
            "UNION ALL "
            "(SELECT seq, message_id, envelope FROM broker_messages "
            "  WHERE receiver=$6 AND receiver_channel=$7 AND EXISTS (SELECT 1 FROM lease) "
            "  AND NOT (seq = ANY($4::bigint[])) ORDER BY seq LIMIT $5)",
            pg::Params::Of(lease.org, lease.holder, lease.epoch)
                .AddInt8Array(handed_out)
                .Add(static_cast<int64_t>(limit))
                .Add(mailbox.first)
                .Add(mailbox.second));
      }));
  bool held = false;
  std::vector<Queued> out;
  for (int i = 0; i < r.size(); ++i) {
    if (r.Int(i, 0) == 0) {
      held = true;
      continue;
    }
    out.push_back({r.Int(i, 0), r.Text(i, 1), std::string(r.Bytes(i, 2))});
  }
  if (!held) return LeaseLost(lease);
  std::sort(out.begin(), out.end(), [](const Queued& a, const Queued& b) { return a.seq < b.seq; });
  return out;
}

// One statement, as ClaimDeliveries: the attempt is counted only under the current lease.
Result<std::optional<Queued>> PgQueueStore::ClaimRedelivery(const LeaseRef& lease, int64_t seq) {
  BUD_RETURN_IF_ERROR(Ready());
  const auto [org, channel] = SplitMailboxKey(lease.org);
  BUD_ASSIGN_OR_RETURN(
      auto r,
      conn_->Exec("WITH lease AS (SELECT epoch FROM broker_sessions "
                  "  WHERE org=$1 AND holder=$2 AND epoch=$3 FOR SHARE), "
                  "upd AS (UPDATE broker_messages SET attempts = attempts + 1 "
                  "  WHERE seq=$4 AND receiver=$5 AND receiver_channel=$6 "
                  "  AND EXISTS (SELECT 1 FROM lease) "
                  "  RETURNING seq, message_id, envelope) "
                  "SELECT (SELECT count(*) FROM lease)::bigint, u.seq, u.message_id, u.envelope "
                  "FROM (SELECT 1) AS one LEFT JOIN upd u ON true",
                  pg::Params::Of(lease.org, lease.holder, lease.epoch, seq, org, channel)));
  if (r.empty() || r.Int(0, 0) == 0) return LeaseLost(lease);
  if (r.IsNull(0, 1)) return std::optional<Queued>();
  return std::optional<Queued>(Queued{r.Int(0, 1), r.Text(0, 2), std::string(r.Bytes(0, 3))});
}

Status PgQueueStore::CheckWritable() {
  BUD_RETURN_IF_ERROR(Ready());
  return CheckServerWritable(*conn_);
}

Status PgQueueStore::LimitBytes(int64_t max_bytes) {
  max_bytes_ = max_bytes;
  return Status::Ok();
}

Result<int64_t> PgQueueStore::BytesUsed() {
  auto bytes = Read<int64_t>([this] { return ReadBytes(*conn_); });
  if (bytes.ok()) {
    bytes_ = *bytes;
    bytes_read_mono_ = MonoMs();
  }
  return bytes;
}

Result<int64_t> PgQueueStore::QueuedCount() {
  return Read<int64_t>([this] { return ReadQueuedCount(*conn_); });
}

Result<StoreStats> PgQueueStore::Stats(bool count_history) {
  return Read<StoreStats>([this, count_history] { return ReadStats(*conn_, count_history); });
}

CommitResult PgQueueStore::CommitBatch(std::vector<SubmitItem>& submits,
                                       std::vector<ReportItem>& reports,
                                       const std::vector<NoticeAck>& acks) {
  counts_.Drop();
  if (Status ready = Ready(); !ready.ok()) return CommitResult::From(ready);
  int64_t adding = 0;
  for (const auto& s : submits) adding += static_cast<int64_t>(s.envelope.size());
  if (max_bytes_ > 0 && adding > 0) {
    if (bytes_read_mono_ < 0 || MonoMs() - bytes_read_mono_ >= kBytesRefreshMs) {
      if (auto b = BytesUsed(); !b.ok()) return CommitResult::From(b.status());
    }
    if (bytes_ + adding > max_bytes_) {
      return CommitResult::From(Status(
          Code::kDiskFull, fmt::format("the broker store would pass store_max_bytes ({} bytes in "
                                       "the database, {} more in this batch, {} allowed)",
                                       bytes_, adding, max_bytes_)));
    }
  }
  const int64_t now = NowMs();
  if (reports.empty() && acks.empty() && !submits.empty()) {
    if (auto alone = SubmitAlone(submits, now)) {
      if (alone->durable()) bytes_ += adding;
      return {alone->outcome == pg::CommitOutcome::kDurable  ? CommitOutcome::kDurable
              : alone->outcome == pg::CommitOutcome::kFailed ? CommitOutcome::kFailed
                                                             : CommitOutcome::kUnknown,
              alone->status};
    }
  }
  pg::Transaction tx(*conn_);
  Status st = tx.began();
  if (st.ok()) st = DoBatch(submits, reports, acks, now);
  if (!st.ok()) {
    // Nothing was committed: the transaction rolls back (or died with its connection).
    counts_.Drop();
    return CommitResult::From(st);
  }
  pg::CommitResult done = tx.Commit();
  switch (done.outcome) {
    case pg::CommitOutcome::kDurable:
      counts_.Commit();
      bytes_ += adding;
      return {CommitOutcome::kDurable, Status::Ok()};
    case pg::CommitOutcome::kFailed:
      counts_.Drop();
      return {CommitOutcome::kFailed, done.status};
    case pg::CommitOutcome::kUnknown:
      break;
  }
  counts_.Drop();
  return {CommitOutcome::kUnknown, done.status};
}

namespace {
// Resets the submits' answers and marks a repeat of an id earlier in the batch as its duplicate
// (a conflict when another sender); returns the indexes of the others, in order.
std::vector<size_t> MarkRepeats(std::vector<SubmitItem>& submits) {
  std::map<std::string, std::string> sender_of;  // message id -> its sender, within the batch
  std::vector<size_t> fresh;
  for (size_t i = 0; i < submits.size(); ++i) {
    auto& s = submits[i];
    s.duplicate = s.conflict = false;
    s.refused.clear();
    if (auto [it, first] = sender_of.emplace(s.message_id, s.sender); !first) {
      s.duplicate = true;
      s.conflict = it->second != s.sender;
      continue;
    }
    fresh.push_back(i);
  }
  return fresh;
}

// $1 the time, $2..$8 the submits [from, to) of `which` as arrays, for kInsertSubmits.
pg::Params SubmitArrays(const std::vector<SubmitItem>& submits, const std::vector<size_t>& which,
                        size_t from, size_t to, int64_t now) {
  std::vector<std::string_view> ids, senders, receivers, sender_channels, receiver_channels;
  std::vector<std::string_view> envelopes;
  std::vector<int64_t> expires;
  for (size_t j = from; j < to; ++j) {
    const auto& s = submits[which[j]];
    ids.push_back(s.message_id);
    senders.push_back(s.sender);
    receivers.push_back(s.receiver);
    sender_channels.push_back(s.sender_channel);
    receiver_channels.push_back(s.receiver_channel);
    envelopes.push_back(s.envelope);
    expires.push_back(s.expires_ms);
  }
  pg::Params p;
  p.Add(now).AddTextArray(ids).AddTextArray(senders).AddTextArray(receivers);
  p.AddTextArray(sender_channels).AddTextArray(receiver_channels).AddByteaArray(envelopes);
  p.AddInt8Array(expires);
  return p;
}

// The submits as rows ($2..$8, SubmitArrays), and their dedup rows inserted in order, skipping
// known ids; `seen` returns what went in with its seq.
#define BUD_SUBMITS_CTE                                                                 \
  "WITH input AS ("                                                                     \
  "  SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], " \
  "    $7::bytea[], $8::bigint[]) WITH ORDINALITY AS u(message_id, sender, receiver, "  \
  "    sender_channel, receiver_channel, envelope, expires_ms, ord)), "

#define BUD_SUBMITS_SEEN(condition)                                                         \
  "seen AS ("                                                                               \
  "  INSERT INTO broker_seen(message_id, sender, receiver, first_seen_ms, seq, "            \
  "    sender_channel, receiver_channel) "                                                  \
  "  SELECT message_id, sender, receiver, $1, nextval('broker_message_seq'), "              \
  "    sender_channel, receiver_channel FROM input " condition                              \
  " ORDER BY ord "                                                                          \
  "  ON CONFLICT (message_id) DO NOTHING RETURNING message_id, seq), "                      \
  "stored AS ("                                                                             \
  "  INSERT INTO broker_messages(seq, message_id, sender, receiver, envelope, "             \
  "    received_ms, expires_ms, receiver_channel) "                                         \
  "  SELECT seen.seq, input.message_id, input.sender, input.receiver, input.envelope, $1, " \
  "    input.expires_ms, input.receiver_channel FROM seen JOIN input USING (message_id) "   \
  "  RETURNING message_id, sender, receiver, receiver_channel) "

// Inside a transaction.
constexpr const char* kInsertSubmits =
    BUD_SUBMITS_CTE BUD_SUBMITS_SEEN("") "SELECT message_id FROM stored";

// A transaction of its own (ExecAlone), for submits whose ids are all new: the count rows of the
// submits' organisations ($9 keys, $10 how many each gains) locked in key order and checked
// against the caps ($11 per receiver, $12 per sender; 0: none); only then the dedup rows and the
// messages go in, both from the input with the seq drawn once per row (plain inserts: a known id
// fails the whole statement with a unique violation, 23505, and nothing is written), the count
// rows take them, and the mailboxes $13 are woken. One row: `ok`, false when a count row is
// missing or a cap would be passed (nothing was written).
constexpr const char* kSubmitAlone =
    "WITH input AS ("
    "  SELECT u.*, nextval('broker_message_seq') AS seq FROM unnest($2::text[], $3::text[], "
    "    $4::text[], $5::text[], $6::text[], $7::bytea[], $8::bigint[]) WITH ORDINALITY AS "
    "    u(message_id, sender, receiver, sender_channel, receiver_channel, envelope, expires_ms, "
    "    ord) ORDER BY ord), "
    "want AS (SELECT * FROM unnest($9::text[], $10::bigint[]) AS w(k, d)), "
    "locked AS (SELECT key, n FROM broker_queue_counts WHERE key IN (SELECT k FROM want) "
    "  ORDER BY key FOR UPDATE), "
    "room AS (SELECT count(*) = (SELECT count(*) FROM want) AND coalesce(bool_and("
    "  CASE WHEN l.key LIKE 'r %' THEN $11 = 0 OR l.n + w.d <= $11 "
    "  ELSE $12 = 0 OR l.n + w.d <= $12 END), true) AS ok "
    "  FROM locked l JOIN want w ON w.k = l.key), "
    "seen AS (INSERT INTO broker_seen(message_id, sender, receiver, first_seen_ms, seq, "
    "  sender_channel, receiver_channel) SELECT message_id, sender, receiver, $1, seq, "
    "  sender_channel, receiver_channel FROM input WHERE (SELECT ok FROM room)), "
    "stored AS (INSERT INTO broker_messages(seq, message_id, sender, receiver, envelope, "
    "  received_ms, expires_ms, receiver_channel) SELECT seq, message_id, sender, receiver, "
    "  envelope, $1, expires_ms, receiver_channel FROM input WHERE (SELECT ok FROM room)), "
    "counted AS (INSERT INTO broker_queue_counts AS c(key, n) "
    "  SELECT k, d FROM want WHERE (SELECT ok FROM room) "
    "  ON CONFLICT (key) DO UPDATE SET n = c.n + EXCLUDED.n), "
    "woken AS (SELECT pg_notify('bud_broker_wake', m) FROM unnest($13::text[]) AS m "
    "  WHERE (SELECT ok FROM room)) "
    "SELECT r.ok FROM room r CROSS JOIN (SELECT count(*) FROM woken) w";
#undef BUD_SUBMITS_SEEN
#undef BUD_SUBMITS_CTE
}  // namespace

// The sender that has each of these ids, for those `broker_seen` has (one statement).
Result<std::map<std::string, std::string>> PgQueueStore::SendersOf(
    const std::vector<std::string_view>& ids) {
  BUD_ASSIGN_OR_RETURN(auto rows, conn_->ExecPlanned("SELECT message_id, sender FROM broker_seen "
                                                     "WHERE message_id = ANY($1::text[])",
                                                     pg::Params().AddTextArray(ids)));
  std::map<std::string, std::string> out;
  for (int i = 0; i < rows.size(); ++i) out[rows.Text(i, 0)] = rows.Text(i, 1);
  return out;
}

// The submits `skipped` by an insert were known (stored before, or by another broker meanwhile):
// duplicates, and conflicts where another sender has the id.
Status PgQueueStore::MarkKnown(std::vector<SubmitItem>& submits,
                               const std::vector<size_t>& skipped) {
  if (skipped.empty()) return Status::Ok();
  std::vector<std::string_view> ids;
  for (size_t i : skipped) ids.push_back(submits[i].message_id);
  BUD_ASSIGN_OR_RETURN(auto stored_by, SendersOf(ids));
  for (size_t i : skipped) {
    auto k = stored_by.find(submits[i].message_id);
    submits[i].duplicate = true;
    submits[i].conflict = k != stored_by.end() && k->second != submits[i].sender;
  }
  return Status::Ok();
}

// The usual batch (submits only, new ids, organisations seen before, no cap near) as one
// statement that is its own transaction (kSubmitAlone): one round trip instead of six (BEGIN, the
// count rows, the rows, the counts, the wake-up, COMMIT), and no ON CONFLICT (its check first
// cost a descent of the dedup index per id, and the messages a join with what went in). nullopt
// when it did not apply (a known id, a missing count row, a cap near): nothing was written, the
// caller takes the full path, which tells the known ids apart.
std::optional<pg::CommitResult> PgQueueStore::SubmitAlone(std::vector<SubmitItem>& submits,
                                                          int64_t now) {
  if (submits.size() > kRowsPerInsert) return std::nullopt;
  std::vector<size_t> fresh = MarkRepeats(submits);
  std::map<std::string, int64_t> want;  // count row -> how many it gains
  std::set<std::string> wake;
  for (size_t i : fresh) {
    const auto& s = submits[i];
    for (std::string key : {"r " + s.receiver, "s " + s.sender}) {
      if (!count_keys_.contains(key)) return std::nullopt;
      ++want[std::move(key)];
    }
    wake.insert(MailboxKey(s.receiver, s.receiver_channel));
  }
  std::vector<std::string_view> keys, woken(wake.begin(), wake.end());
  std::vector<int64_t> gains;
  for (const auto& [key, n] : want) {
    keys.push_back(key);
    gains.push_back(n);
  }
  pg::Params p = SubmitArrays(submits, fresh, 0, fresh.size(), now);
  p.AddTextArray(keys).AddInt8Array(gains).Add(caps_.per_receiver).Add(caps_.per_sender);
  p.AddTextArray(woken);
  pg::Rows rows;
  pg::CommitResult done = conn_->ExecAlone(kSubmitAlone, p, &rows);
  if (done.outcome == pg::CommitOutcome::kFailed && conn_->last_sqlstate() == "23505") {
    return std::nullopt;  // an id is known (or being stored by another broker)
  }
  if (!done.durable()) return done;
  if (rows.empty() || rows.IsNull(0, 0) || rows.Int(0, 0) == 0) return std::nullopt;
  return done;
}

// Inside the batch's transaction: the submits in one statement, whatever their number (one
// statement per submit made every submit a round trip and a parse): the ids and envelopes go as
// arrays, the dedup rows are inserted with ON CONFLICT DO NOTHING, and the messages whose dedup
// row went in are inserted from what that returned. In the batch's order: a known id is a
// duplicate (a conflict when another organisation sent it), then the queue caps, then the rest
// is stored. While every submit fits the caps even if all were new (the usual case), the known
// ids need no SELECT first: the ones the INSERT skipped are the known ones; near a cap they are
// read first, so that a duplicate never takes a new message's room.
Status PgQueueStore::StoreSubmits(std::vector<SubmitItem>& submits, int64_t now,
                                  std::set<std::string>& wake) {
  if (submits.empty()) return Status::Ok();
  std::vector<size_t> fresh = MarkRepeats(submits);
  size_t counted = 0;
  for (size_t i : fresh) {
    if (!counts_.Room(submits[i].sender, submits[i].receiver).empty()) break;
    counts_.Count(submits[i].sender, submits[i].receiver, +1);
    ++counted;
  }
  if (counted < fresh.size()) {
    for (size_t j = 0; j < counted; ++j) {
      counts_.Count(submits[fresh[j]].sender, submits[fresh[j]].receiver, -1);
    }
    std::vector<std::string_view> ids;
    for (size_t i : fresh) ids.push_back(submits[i].message_id);
    BUD_ASSIGN_OR_RETURN(auto stored_by, SendersOf(ids));
    std::vector<size_t> kept;
    for (size_t i : fresh) {
      auto& s = submits[i];
      if (auto k = stored_by.find(s.message_id); k != stored_by.end()) {
        // A resubmission is answered as the duplicate it is, full queue or not.
        s.duplicate = true;
        s.conflict = k->second != s.sender;
        continue;
      }
      if (std::string why = counts_.Room(s.sender, s.receiver); !why.empty()) {
        s.refused = std::move(why);
        continue;
      }
      counts_.Count(s.sender, s.receiver, +1);
      kept.push_back(i);
    }
    fresh = std::move(kept);
  }
  std::vector<size_t> skipped;
  for (size_t from = 0; from < fresh.size(); from += kRowsPerInsert) {
    const size_t to = std::min(fresh.size(), from + kRowsPerInsert);
    BUD_ASSIGN_OR_RETURN(auto stored,
                         conn_->Exec(kInsertSubmits, SubmitArrays(submits, fresh, from, to, now)));
    std::set<std::string_view> went_in;
    for (int i = 0; i < stored.size(); ++i) went_in.insert(stored.Bytes(i, 0));
    for (size_t j = from; j < to; ++j) {
      auto& s = submits[fresh[j]];
      if (went_in.contains(s.message_id)) {
        wake.insert(MailboxKey(s.receiver, s.receiver_channel));
        continue;
      }
      counts_.Count(s.sender, s.receiver, -1);
      skipped.push_back(fresh[j]);
    }
  }
  return MarkKnown(submits, skipped);
}

Status PgQueueStore::DoBatch(std::vector<SubmitItem>& submits, std::vector<ReportItem>& reports,
                             const std::vector<NoticeAck>& acks, int64_t now) {
  std::set<std::string> wake;
  // Every count row the batch may change, locked first: the submits' organisations, and those
  // of the messages the reports may remove.
  std::set<std::string> keys;
  for (const auto& s : submits) {
    keys.insert("r " + s.receiver);
    keys.insert("s " + s.sender);
  }
  std::vector<std::string> reported;
  for (const auto& r : reports) reported.push_back(r.message_id);
  BUD_ASSIGN_OR_RETURN(SeenRows seen, ReadSeen(reported));
  for (const auto& [id, m] : seen) {
    keys.insert("s " + m.sender);
    keys.insert("r " + m.receiver);
  }
  BUD_RETURN_IF_ERROR(LockCounts(keys));
  BUD_RETURN_IF_ERROR(StoreSubmits(submits, now, wake));
  // A report may name a message this same batch stored: its row is read now (its organisations
  // were locked as the submit's).
  std::vector<std::string> unread;
  for (const auto& id : reported) {
    if (!seen.contains(id)) unread.push_back(id);
  }
  if (!unread.empty() && !submits.empty()) {
    BUD_ASSIGN_OR_RETURN(SeenRows more, ReadSeen(unread));
    seen.merge(more);
  }
  for (size_t from = 0; from < reports.size(); from += kReportsPerStatement) {
    BUD_RETURN_IF_ERROR(ApplyReports(
        reports, from, std::min(reports.size(), from + kReportsPerStatement), seen, now));
  }
  for (const auto& r : reports) {
    if (!r.notify_mailbox.empty()) wake.insert(r.notify_mailbox);
  }
  if (!acks.empty()) {
    // One statement for the batch's status acks: each deletes its notice only when the notice
    // belongs to the acking mailbox.
    std::vector<int64_t> ids;
    std::vector<std::string> orgs, channels;
    for (const auto& a : acks) {
      const auto [org, channel] = SplitMailboxKey(a.org);
      ids.push_back(a.notice_id);
      orgs.push_back(org);
      channels.push_back(channel);
    }
    BUD_RETURN_IF_ERROR(
        conn_
            ->Exec("DELETE FROM broker_notices n USING unnest($1::bigint[], $2::text[], "
                   "$3::text[]) AS a(id, org, channel) "
                   "WHERE n.notice_id = a.id AND n.org = a.org AND n.channel = a.channel",
                   pg::Params().AddInt8Array(ids).AddTextArray(orgs).AddTextArray(channels))
            .status());
  }
  BUD_RETURN_IF_ERROR(SaveCounts());
  return Notify(*conn_, wake);
}

// The broker_seen rows of these message ids (one statement, planned for its ids: a cached
// generic plan from when broker_seen was small scanned the whole table), by message id.
Result<PgQueueStore::SeenRows> PgQueueStore::ReadSeen(const std::vector<std::string>& ids) {
  SeenRows seen;
  if (ids.empty()) return seen;
  BUD_ASSIGN_OR_RETURN(
      auto q,
      conn_->ExecPlanned("SELECT message_id, sender, receiver, coalesce(seq, 0), sender_channel, "
                         "receiver_channel FROM broker_seen WHERE message_id = ANY($1::text[])",
                         pg::Params().AddTextArray(ids)));
  for (int i = 0; i < q.size(); ++i) {
    seen[q.Text(i, 0)] = {q.Text(i, 1), q.Text(i, 2), q.Text(i, 4), q.Text(i, 5), q.Int(i, 3)};
  }
  return seen;
}

// Inside a transaction: reports [from, to) (a refused one, not the reporter's message, is recorded
// in its result and is not an error of the batch), with their messages' `seen` rows (ReadSeen), in
// four statements whatever their number (the report rows, the messages and their chunks removed,
// the notices), so a group commit of many reports is not a round trip per statement each.
Status PgQueueStore::ApplyReports(std::vector<ReportItem>& reports, size_t from, size_t to,
                                  const SeenRows& seen, int64_t now) {
  std::vector<size_t> valid;
  for (size_t i = from; i < to; ++i) {
    ReportItem& r = reports[i];
    r.result = Status::Ok();
    r.notify_mailbox.clear();
    auto it = seen.find(r.message_id);
    if (it == seen.end()) {
      r.result = Status(Code::kNotFound, fmt::format("message {} is unknown here", r.message_id));
      continue;
    }
    const SeenRow& m = it->second;
    if (m.receiver != r.reporter || m.receiver_channel != r.reporter_channel) {
      r.result = Status(Code::kInvalidArgument,
                        fmt::format("message {} is addressed to {}, not to {}", r.message_id,
                                    MailboxKey(m.receiver, m.receiver_channel),
                                    MailboxKey(r.reporter, r.reporter_channel)));
      continue;
    }
    valid.push_back(i);
  }
  if (valid.empty()) return Status::Ok();
  // The report rows: the first report of a (message, status) makes the notice.
  std::vector<std::string_view> ids;
  std::vector<int64_t> statuses;
  for (size_t i : valid) {
    ids.push_back(reports[i].message_id);
    statuses.push_back(static_cast<int64_t>(reports[i].status));
  }
  BUD_ASSIGN_OR_RETURN(auto logged,
                       conn_->Exec("INSERT INTO broker_reports(message_id, status) "
                                   "SELECT * FROM unnest($1::text[], $2::bigint[]) "
                                   "ON CONFLICT DO NOTHING RETURNING message_id, status",
                                   pg::Params().AddTextArray(ids).AddInt8Array(statuses)));
  std::set<std::pair<std::string, int64_t>> first;
  for (int i = 0; i < logged.size(); ++i) first.insert({logged.Text(i, 0), logged.Int(i, 1)});
  // MOTTATT and final statuses end delivery: the queued copy goes, with a streamed message's
  // chunks (none unless an upload is still in progress).
  std::vector<int64_t> seqs;
  for (size_t i : valid) {
    const ReportItem& r = reports[i];
    const int64_t seq = seen.at(r.message_id).seq;
    if ((r.status == wire::MOTTATT || IsFinal(r.status)) && seq != 0) seqs.push_back(seq);
  }
  if (!seqs.empty()) {
    BUD_ASSIGN_OR_RETURN(auto del,
                         conn_->Exec("DELETE FROM broker_messages WHERE seq = ANY($1::bigint[]) "
                                     "RETURNING message_id",
                                     pg::Params().AddInt8Array(seqs)));
    std::vector<std::string> gone;
    for (int i = 0; i < del.size(); ++i) {
      gone.push_back(del.Text(i, 0));
      const SeenRow& m = seen.at(gone.back());
      counts_.Count(m.sender, m.receiver, -1);
    }
    if (!gone.empty()) {
      BUD_RETURN_IF_ERROR(conn_
                              ->Exec("DELETE FROM broker_chunks c WHERE c.message_id = "
                                     "ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM "
                                     "broker_uploads u WHERE u.message_id = c.message_id)",
                                     pg::Params().AddTextArray(gone))
                              .status());
    }
  }
  // One notice per first report, in the reports' order; a repeated report makes none.
  std::vector<std::string_view> orgs, message_ids, reasons, channels;
  std::vector<int64_t> notice_statuses, ats;
  for (size_t i : valid) {
    ReportItem& r = reports[i];
    if (first.erase({r.message_id, static_cast<int64_t>(r.status)}) == 0) continue;
    const SeenRow& m = seen.at(r.message_id);
    orgs.push_back(m.sender);
    message_ids.push_back(r.message_id);
    notice_statuses.push_back(static_cast<int64_t>(r.status));
    reasons.push_back(r.reason);
    ats.push_back(r.at_ms ? r.at_ms : now);
    channels.push_back(m.sender_channel);
    r.notify_mailbox = MailboxKey(m.sender, m.sender_channel);
  }
  if (!orgs.empty()) {
    pg::Params np;
    np.AddTextArray(orgs).AddTextArray(message_ids).AddInt8Array(notice_statuses);
    np.AddTextArray(reasons).AddInt8Array(ats).AddTextArray(channels);
    BUD_RETURN_IF_ERROR(
        conn_
            ->Exec("INSERT INTO broker_notices(org, message_id, status, reason, at_ms, channel) "
                   "SELECT org, message_id, status, reason, at_ms, channel FROM unnest($1::text[], "
                   "$2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[]) WITH "
                   "ORDINALITY AS u(org, message_id, status, reason, at_ms, channel, ord) "
                   "ORDER BY ord",
                   np)
            .status());
  }
  return Status::Ok();
}

Result<std::vector<Expired>> PgQueueStore::Conclude(
    const std::string& select_sql, const pg::Params& params, MsgStatus status, int64_t now_ms,
    const std::function<std::string(const Expired&, int64_t)>& reason) {
  counts_.Drop();
  BUD_RETURN_IF_ERROR(Ready());
  pg::Transaction tx(*conn_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto q, conn_->Exec(select_sql, params));
  std::set<std::string> keys;
  for (int i = 0; i < q.size(); ++i) {
    keys.insert("s " + q.Text(i, 1));
    keys.insert("r " + q.Text(i, 2));
  }
  if (Status locked = LockCounts(keys); !locked.ok()) {
    counts_.Drop();
    return locked;
  }
  // Ended as reports from their receivers, through the same path as a group commit's.
  std::vector<Expired> out;
  std::vector<ReportItem> reports;
  std::vector<std::string> ids;
  for (int i = 0; i < q.size(); ++i) {
    out.push_back({q.Text(i, 0), q.Text(i, 1), q.Text(i, 2), std::string(),
                   MailboxKey(q.Text(i, 2), q.Text(i, 3))});
    ReportItem r;
    r.reporter = out.back().receiver;
    r.reporter_channel = q.Text(i, 3);
    r.message_id = out.back().message_id;
    r.status = status;
    r.reason = reason(out.back(), q.Int(i, 4));
    r.at_ms = now_ms;
    reports.push_back(std::move(r));
    ids.push_back(out.back().message_id);
  }
  auto seen = ReadSeen(ids);
  if (!seen.ok()) {
    counts_.Drop();
    return seen.status();
  }
  for (size_t from = 0; from < reports.size(); from += kReportsPerStatement) {
    const size_t to = std::min(reports.size(), from + kReportsPerStatement);
    if (Status st = ApplyReports(reports, from, to, *seen, now_ms); !st.ok()) {
      counts_.Drop();
      return st;
    }
  }
  std::set<std::string> wake;
  for (size_t i = 0; i < reports.size(); ++i) {
    out[i].sender_mailbox = reports[i].notify_mailbox;
    if (!reports[i].notify_mailbox.empty()) wake.insert(reports[i].notify_mailbox);
  }
  if (out.empty()) return out;
  if (Status s = SaveCounts(); !s.ok()) {
    counts_.Drop();
    return s;
  }
  if (Status s = Notify(*conn_, wake); !s.ok()) {
    counts_.Drop();
    return s;
  }
  pg::CommitResult done = tx.Commit();
  if (!done.durable()) {
    counts_.Drop();
    return done.status;
  }
  counts_.Commit();
  return out;
}

Result<std::vector<Expired>> PgQueueStore::FailExhausted(int64_t max_attempts, int64_t now_ms) {
  return Conclude(
      // Ordered by the partial index's column so that the planner walks that index (empty
      // while nothing was redelivered): without statistics yet (a young table, before
      // autovacuum's ANALYZE) a bare LIMIT made it scan the whole queue, ~65 ms at 300,000
      // messages, in the broker's loop every second.
      "SELECT message_id, sender, receiver, receiver_channel, attempts::bigint "
      "FROM broker_messages "
      "WHERE attempts > 0 AND attempts >= $1 ORDER BY broker_messages.attempts DESC "
      "LIMIT 1000 FOR UPDATE",
      pg::Params::Of(max_attempts), wire::FEIL, now_ms, [](const Expired& e, int64_t attempts) {
        return fmt::format("{} did not acknowledge the delivery after {} attempts", e.receiver,
                           attempts);
      });
}

Result<std::vector<Expired>> PgQueueStore::ExpireDue(int64_t now_ms, int limit) {
  return Conclude(
      "SELECT message_id, sender, receiver, receiver_channel, expires_ms FROM broker_messages "
      "WHERE expires_ms <= $1 "
      "ORDER BY expires_ms LIMIT $2 FOR UPDATE",
      pg::Params::Of(now_ms, static_cast<int64_t>(limit)), wire::LEVETID_UTLOPT, now_ms,
      [](const Expired& e, int64_t expires_ms) {
        return fmt::format("not received by {} before it expired at {}", e.receiver,
                           FormatTime(expires_ms));
      });
}

Result<int64_t> PgQueueStore::PruneHistory(int64_t before_ms, int limit) {
  BUD_RETURN_IF_ERROR(Ready());
  pg::Transaction tx(*conn_);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto ids, conn_->Exec(
      "SELECT message_id FROM broker_seen s WHERE first_seen_ms < $1 "
      "AND NOT EXISTS (SELECT 1 FROM broker_messages m WHERE m.seq = s.seq) "
      "AND NOT EXISTS (SELECT 1 FROM broker_uploads u WHERE u.message_id = s.message_id) "
      "ORDER BY first_seen_ms LIMIT $2",
      pg::Params::Of(before_ms, static_cast<int64_t>(limit))));
  if (ids.empty()) return int64_t{0};
  for (int i = 0; i < ids.size(); ++i) {
    const std::string id = ids.Text(i, 0);
    BUD_RETURN_IF_ERROR(conn_->Exec("DELETE FROM broker_reports WHERE message_id=$1",
                                    pg::Params::Of(id)).status());
    BUD_RETURN_IF_ERROR(conn_->Exec("DELETE FROM broker_seen WHERE message_id=$1",
                                    pg::Params::Of(id)).status());
  }
  pg::CommitResult done = tx.Commit();
  if (!done.durable()) return done.status;
  return static_cast<int64_t>(ids.size());
}

Result<int64_t> PgQueueStore::AddAttempts(const std::vector<std::string>& message_ids) {
  if (message_ids.empty()) return int64_t{0};
  BUD_RETURN_IF_ERROR(Ready());
  pg::Transaction tx(*conn_);
  BUD_RETURN_IF_ERROR(tx.began());
  for (const auto& id : message_ids) {
    BUD_RETURN_IF_ERROR(conn_->Exec(
        "UPDATE broker_messages SET attempts = attempts + 1 "
        "WHERE seq = (SELECT seq FROM broker_seen WHERE message_id=$1)",
        pg::Params::Of(id)).status());
  }
  pg::CommitResult done = tx.Commit();
  if (!done.durable()) return done.status;
  return static_cast<int64_t>(message_ids.size());
}

Result<int64_t> PgQueueStore::Attempts(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto r, Read<pg::Rows>([&] {
    return conn_->Exec("SELECT attempts FROM broker_messages "
                       "WHERE seq = (SELECT seq FROM broker_seen WHERE message_id=$1)",
                       pg::Params::Of(message_id));
  }));
  if (r.empty()) return Status(Code::kNotFound, fmt::format("message {} is not queued", message_id));
  return r.Int(0, 0);
}

Result<std::vector<Queued>> PgQueueStore::NextFor(const std::string& receiver, int64_t after_seq,
                                                  int limit) {
  BUD_ASSIGN_OR_RETURN(auto r, Read<pg::Rows>([&] {
                         const auto [org, channel] = SplitMailboxKey(receiver);
                         return conn_->Exec(
                             "SELECT seq, message_id, envelope FROM broker_messages "
                             "WHERE receiver=$1 AND receiver_channel=$4 AND seq > $2 "
                             "ORDER BY seq LIMIT $3",
                             pg::Params::Of(org, after_seq, static_cast<int64_t>(limit), channel));
                       }));
  std::vector<Queued> out;
  out.reserve(static_cast<size_t>(r.size()));
  for (int i = 0; i < r.size(); ++i) {
    out.push_back({r.Int(i, 0), r.Text(i, 1), std::string(r.Bytes(i, 2))});
  }
  return out;
}

Result<std::optional<Queued>> PgQueueStore::BySeq(int64_t seq) {
  BUD_ASSIGN_OR_RETURN(auto r, Read<pg::Rows>([&] {
    return conn_->Exec("SELECT seq, message_id, envelope FROM broker_messages WHERE seq=$1",
                       pg::Params::Of(seq));
  }));
  if (r.empty()) return std::optional<Queued>();
  return std::optional<Queued>(Queued{r.Int(0, 0), r.Text(0, 1), std::string(r.Bytes(0, 2))});
}

Result<std::vector<Notice>> PgQueueStore::NoticesFor(const std::string& org, int64_t after_id,
                                                     int limit) {
  BUD_ASSIGN_OR_RETURN(
      auto r, Read<pg::Rows>([&] {
        const auto [owner, channel] = SplitMailboxKey(org);
        return conn_->Exec(
            "SELECT notice_id, message_id, status, reason, at_ms FROM broker_notices "
            "WHERE org=$1 AND channel=$4 AND notice_id > $2 ORDER BY notice_id LIMIT $3",
            pg::Params::Of(owner, after_id, static_cast<int64_t>(limit), channel));
      }));
  std::vector<Notice> out;
  for (int i = 0; i < r.size(); ++i) {
    out.push_back({r.Int(i, 0), r.Text(i, 1), static_cast<MsgStatus>(r.Int(i, 2)), r.Text(i, 3),
                   r.Int(i, 4)});
  }
  return out;
}

Result<bool> PgQueueStore::IsKnown(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto r, Read<pg::Rows>([&] {
    return conn_->Exec("SELECT 1 FROM broker_seen WHERE message_id=$1",
                       pg::Params::Of(message_id));
  }));
  return !r.empty();
}

Result<bool> PgQueueStore::IsQueued(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto r, Read<pg::Rows>([&] {
    return conn_->Exec("SELECT 1 FROM broker_messages "
                       "WHERE seq = (SELECT seq FROM broker_seen WHERE message_id=$1)",
                       pg::Params::Of(message_id));
  }));
  return !r.empty();
}

Result<std::vector<UploadRow>> PgQueueStore::LoadUploads() {
  BUD_ASSIGN_OR_RETURN(auto r, Read<pg::Rows>([&] {
    return conn_->Exec("SELECT message_id, sender, receiver, head, next_chunk, expires_ms "
                       "FROM broker_uploads");
  }));
  std::vector<UploadRow> out;
  for (int i = 0; i < r.size(); ++i) {
    out.push_back({r.Text(i, 0), r.Text(i, 1), r.Text(i, 2), std::string(r.Bytes(i, 3)),
                   static_cast<uint64_t>(std::max<int64_t>(r.Int(i, 4), 0)), r.Int(i, 5)});
  }
  return out;
}

Result<std::optional<UploadRow>> PgQueueStore::FindUpload(const std::string& message_id) {
  BUD_ASSIGN_OR_RETURN(auto r, Read<pg::Rows>([&] {
                         return conn_->Exec(
                             "SELECT message_id, sender, receiver, head, next_chunk, expires_ms "
                             "FROM broker_uploads WHERE message_id=$1",
                             pg::Params::Of(message_id));
                       }));
  if (r.empty()) return std::optional<UploadRow>();
  return std::optional<UploadRow>(
      UploadRow{r.Text(0, 0), r.Text(0, 1), r.Text(0, 2), std::string(r.Bytes(0, 3)),
                static_cast<uint64_t>(std::max<int64_t>(r.Int(0, 4), 0)), r.Int(0, 5)});
}

Status PgQueueStore::InsertUpload(const UploadRow& row) {
  BUD_RETURN_IF_ERROR(Ready());
  pg::Params p = pg::Params::Of(row.message_id, row.sender, row.receiver);
  p.AddBytea(row.head).Add(row.next_chunk).Add(row.expires_ms);
  BUD_ASSIGN_OR_RETURN(auto r, conn_->Exec(
      "INSERT INTO broker_uploads(message_id, sender, receiver, head, next_chunk, expires_ms) "
      "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING", p));
  if (r.Affected() == 0) {
    return Status(Code::kAlreadyExists,
                  fmt::format("an upload of message {} is in progress", row.message_id));
  }
  return Status::Ok();
}

Status PgQueueStore::SetUploadPositions(
    const std::vector<std::pair<std::string, uint64_t>>& positions) {
  if (positions.empty()) return Status::Ok();
  BUD_RETURN_IF_ERROR(Ready());
  pg::Transaction tx(*conn_);
  BUD_RETURN_IF_ERROR(tx.began());
  for (const auto& [id, next] : positions) {
    BUD_RETURN_IF_ERROR(conn_->Exec("UPDATE broker_uploads SET next_chunk=$1 WHERE message_id=$2",
                                    pg::Params::Of(next, id)).status());
  }
  pg::CommitResult done = tx.Commit();
  return done.durable() ? Status::Ok() : done.status;
}

Status PgQueueStore::DeleteUploads(const std::vector<std::string>& message_ids) {
  if (message_ids.empty()) return Status::Ok();
  BUD_RETURN_IF_ERROR(Ready());
  pg::Transaction tx(*conn_);
  BUD_RETURN_IF_ERROR(tx.began());
  for (const auto& id : message_ids) {
    BUD_RETURN_IF_ERROR(conn_->Exec("DELETE FROM broker_uploads WHERE message_id=$1",
                                    pg::Params::Of(id)).status());
  }
  pg::CommitResult done = tx.Commit();
  return done.durable() ? Status::Ok() : done.status;
}

Result<std::vector<std::string>> PgQueueStore::CommitUploadChunks(
    const std::vector<UploadProgress>& progress) {
  std::vector<std::string> gone;
  if (progress.empty()) return gone;
  BUD_RETURN_IF_ERROR(Ready());
  pg::Transaction tx(*conn_);
  BUD_RETURN_IF_ERROR(tx.began());
  for (const auto& p : progress) {
    // The position first: never back (a broker the sender left may commit its last turn after
    // another took over), and the row stays locked until the commit, so a concurrent drop of the
    // upload waits and then deletes these chunks too. No row: nothing is stored.
    BUD_ASSIGN_OR_RETURN(
        auto moved, conn_->Exec("UPDATE broker_uploads SET next_chunk=GREATEST(next_chunk, $1) "
                                "WHERE message_id=$2",
                                pg::Params::Of(p.next_chunk, p.message_id)));
    if (moved.Affected() == 0) {
      gone.push_back(p.message_id);
      continue;
    }
    for (const auto& c : p.chunks) {
      pg::Params params = pg::Params::Of(p.message_id, c.index);
      params.AddBytea(c.record);
      // A chunk sent again after a lost acknowledgement replaces its earlier copy.
      BUD_RETURN_IF_ERROR(conn_->Exec(
          "INSERT INTO broker_chunks(message_id, idx, record) VALUES ($1, $2, $3) "
          "ON CONFLICT (message_id, idx) DO UPDATE SET record = EXCLUDED.record", params)
                              .status());
    }
  }
  pg::CommitResult done = tx.Commit();
  if (!done.durable()) return done.status;
  return gone;
}

Result<std::string> PgQueueStore::ReadChunk(const std::string& message_id, uint64_t index) {
  BUD_ASSIGN_OR_RETURN(auto r, Read<pg::Rows>([&] {
    return conn_->Exec("SELECT record FROM broker_chunks WHERE message_id=$1 AND idx=$2",
                       pg::Params::Of(message_id, index));
  }));
  if (r.empty()) {
    return Status(Code::kNotFound,
                  fmt::format("chunk {} of message {} is not stored", index, message_id));
  }
  return std::string(r.Bytes(0, 0));
}

Status PgQueueStore::DropUploads(const std::vector<std::string>& message_ids) {
  if (message_ids.empty()) return Status::Ok();
  BUD_RETURN_IF_ERROR(Ready());
  pg::Transaction tx(*conn_);
  BUD_RETURN_IF_ERROR(tx.began());
  for (const auto& id : message_ids) {
    BUD_ASSIGN_OR_RETURN(auto del, conn_->Exec("DELETE FROM broker_uploads WHERE message_id=$1",
                                               pg::Params::Of(id)));
    // Only an upload's own chunks: a message that is queued keeps its chunks.
    if (del.Affected() > 0) {
      BUD_RETURN_IF_ERROR(conn_->Exec(
          "DELETE FROM broker_chunks c WHERE c.message_id=$1 AND NOT EXISTS "
          "(SELECT 1 FROM broker_messages m JOIN broker_seen s ON s.seq = m.seq "
          "WHERE s.message_id = c.message_id)",
          pg::Params::Of(id)).status());
    }
  }
  pg::CommitResult done = tx.Commit();
  return done.durable() ? Status::Ok() : done.status;
}

// The server vacuums and checkpoints by itself; this keeps the connection alive and reconnects
// early after a failover.
Status PgQueueStore::Maintain() {
  BUD_RETURN_IF_ERROR(Ready());
  return conn_->Exec("SELECT 1").status();
}

}  // namespace bud::broker
