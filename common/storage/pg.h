// PostgreSQL, the way every Budstikke store uses it (libpq).
//
// Operation: a Connection is one libpq connection, owned and used by one thread. It is opened from
// a libpq connection string (keyword=value or a postgresql:// URI) that may name several hosts
// ("host=a,b,c port=5432,5432,5432"); unless the string says otherwise, Budstikke adds
// connect_timeout, TCP keepalives, an application_name and target_session_attrs=read-write, so
// libpq tries the hosts in turn and settles on the one that takes writes (after a failover: the
// promoted standby). The password never comes from the connection string (Open refuses one that
// carries it); it is read from a password file and handed to libpq as a separate parameter.
//
// Statements run as prepared statements of the session: each statement text (with its parameter
// types) is prepared once per connection (PQprepare: parsed and planned once) and then executed
// by name (PQexecPrepared), for up to kMaxPrepared texts of up to kMaxPreparedText bytes; longer
// or further texts run unprepared (PQexecParams). A reconnection starts with none. Parameters
// travel apart from the SQL text, in binary (bytea exactly as given, text checked by the server as
// UTF-8, integers as int8, arrays of those in PostgreSQL's binary array format), and results come
// back in binary, so bytea columns cost no escaping. Rows owns one PGresult. (A connection pooler
// between us and the server must keep a session's prepared statements: PgBouncer in session
// mode, or in transaction mode with max_prepared_statements.)
//
// A Transaction is BEGIN .. COMMIT with a guard that rolls back unless committed. A COMMIT has
// three outcomes (CommitOutcome): durable; failed, when nothing was written (the server refused
// it, or the connection was already gone before COMMIT was sent); and unknown, when COMMIT was
// sent and no clean answer came back: the connection dropped before the answer, or the server
// cancelled its wait for synchronous replication (it then has the transaction locally, but no
// standby may have it, so a failover can lose it). A caller treats unknown as "answer nothing":
// the client retries and the store's idempotence (dedup by id) makes the retry exact.
//
// Errors map to Status codes by SQLSTATE (CodeFromSqlState): connection failures (08xxx,
// 57P01-57P03, a dropped connection) and a read-only server (25006, a standby) -> kUnavailable,
// the caller may reconnect and so find the current primary; a missing database (3D000) ->
// kNotFound; failed authentication (28xxx) or missing privilege (42501) -> kConfig; disk full
// (53100) -> kDiskFull; serialization failure and deadlock (40001, 40P01) or a lock not
// available (55P03) -> kBusy; unique violation (23505) -> kAlreadyExists; other integrity and
// data errors (23xxx, 22xxx) -> kInvalidArgument; statement timeout or cancel (57014) ->
// kTimeout; data corruption (XX001, XX002) -> kCorrupt; I/O errors (58030) -> kIo; else
// kInternal. Messages name the server (host, port, database, user: Describe()) and the SQLSTATE,
// never the password. Connection failures carry no SQLSTATE; Open classifies libpq's message
// (PostgreSQL's English texts: authentication, missing database, read-only or standby server;
// anything else is kUnavailable).
//
// Notifications: a connection that ran LISTEN collects the NOTIFY payloads the server sends
// (TakeNotifications); its socket() can be polled for readability between statements.
//
// Limitations: one statement in flight per connection; no COPY. Int() decodes
// int2/int4/int8/bool/oid columns (cast others in SQL, e.g. `count(*)::bigint`).
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"

namespace bud::storage::pg {

// How to reach the server.
struct ConnectOptions {
  // libpq connection string or URI, without a password (Open refuses one with a password).
  std::string conninfo;
  // A file whose first line is the password (readable by the process only or its group;
  // world-readable or group-writable files are refused). Empty: no password is given (libpq may
  // still use its own passfile, or the server may not ask).
  std::string password_file;
  // Defaults, used only where the connection string does not set the keyword itself.
  int connect_timeout_seconds = 5;
  bool read_write = true;  // target_session_attrs=read-write
  std::string application_name = "budstikke";
};

// "host=a,b port=5432,5433 dbname=bud user=bud" for a connection string (only those keywords,
// never a password), or the libpq parse error when it cannot be parsed.
std::string Describe(const std::string& conninfo);

// The Status code for a five-character SQLSTATE (see the file comment).
Code CodeFromSqlState(std::string_view sqlstate);

// Reads a password file (see ConnectOptions::password_file): the first line, without its line end.
// kNotFound when missing, kConfig when empty, not a regular file, too open, or over 4 KiB.
Result<std::string> ReadPasswordFile(const std::string& path);

// One query result. Rows are 0-based; columns too.
class Rows {
 public:
  Rows() = default;
  explicit Rows(PGresult* res) : res_(res) {}
  Rows(Rows&&) noexcept = default;
  Rows& operator=(Rows&&) noexcept = default;

  int size() const { return res_ ? PQntuples(res_.get()) : 0; }
  bool empty() const { return size() == 0; }
  int columns() const { return res_ ? PQnfields(res_.get()) : 0; }
  bool IsNull(int row, int col) const { return PQgetisnull(res_.get(), row, col) != 0; }
  // The value's bytes: text and varchar as UTF-8, bytea as stored. Empty for NULL.
  std::string_view Bytes(int row, int col) const;
  std::string Text(int row, int col) const { return std::string(Bytes(row, col)); }
  // int2/int4/int8/oid/bool columns (binary or text format); 0 for NULL.
  int64_t Int(int row, int col) const;
  // Rows touched by INSERT/UPDATE/DELETE (PQcmdTuples).
  int64_t Affected() const;
  // The command tag, e.g. "INSERT 0 1", "COMMIT", "ROLLBACK".
  std::string_view Command() const { return res_ ? PQcmdStatus(res_.get()) : ""; }

 private:
  struct Clear {
    void operator()(PGresult* r) const { PQclear(r); }
  };
  std::unique_ptr<PGresult, Clear> res_;
};

// Statement parameters ($1, $2, ... in the order added).
class Params {
 public:
  Params& Add(int64_t v);
  Params& Add(int v) { return Add(static_cast<int64_t>(v)); }
  Params& Add(uint64_t v) { return Add(static_cast<int64_t>(v)); }
  Params& Add(bool v);
  // Text: the server checks it is valid UTF-8 without NUL bytes (22021 -> kInvalidArgument).
  Params& Add(std::string_view text);
  Params& Add(const char* text) { return Add(std::string_view(text)); }
  Params& Add(const std::string& text) { return Add(std::string_view(text)); }
  Params& AddBytea(std::string_view bytes);
  Params& AddNull();
  // One-dimensional arrays in binary ($n::text[], $n::bytea[], $n::bigint[] in the SQL), e.g. for
  // `unnest`: one statement text whatever the number of rows, nothing quoted.
  Params& AddTextArray(const std::vector<std::string_view>& items);
  Params& AddTextArray(const std::vector<std::string>& items) {
    return AddTextArray(std::vector<std::string_view>(items.begin(), items.end()));
  }
  Params& AddByteaArray(const std::vector<std::string_view>& items);
  Params& AddInt8Array(const std::vector<int64_t>& items);
  template <typename... Args>
  static Params Of(const Args&... args) {
    Params p;
    (p.Add(args), ...);
    return p;
  }

  int size() const { return static_cast<int>(values_.size()); }

 private:
  friend class Connection;
  void Push(Oid type, std::string value, bool null);
  std::vector<Oid> types_;
  std::vector<std::string> values_;
  std::vector<bool> nulls_;
};

// What a COMMIT came to (see the file comment).
enum class CommitOutcome { kDurable, kFailed, kUnknown };
std::string_view CommitOutcomeName(CommitOutcome outcome);  // "durable", "failed", "unknown"

struct CommitResult {
  CommitOutcome outcome = CommitOutcome::kFailed;
  Status status;  // ok when durable; otherwise why not
  bool durable() const { return outcome == CommitOutcome::kDurable; }
};

class Connection {
 public:
  // Connects (see ConnectOptions). Errors name the server (Describe) and never the password:
  // kConfig for a connection string that cannot be parsed or that carries a password, and for
  // failed authentication; kNotFound for a missing database; kUnavailable for a server that cannot
  // be reached, is starting or shutting down, or (with read_write) takes no writes.
  static Result<std::unique_ptr<Connection>> Open(const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // One statement with parameters; rows (or none) on success.
  Result<Rows> Exec(std::string_view sql, const Params& params = {});
  // The same, planned for its parameters at every call and never prepared (PQexecParams): for a
  // lookup whose best plan depends on how big its table has grown. A prepared statement keeps
  // the generic plan it got while the table was young and small (a sequential scan testing
  // `= ANY($1)` on every row) until the table is analysed again.
  Result<Rows> ExecPlanned(std::string_view sql, const Params& params = {});
  // One statement as a transaction of its own (outside any Transaction): when the outcome is
  // durable its changes are committed (flushed, and replicated as synchronous_commit asks) and
  // `rows` holds its result; failed: nothing was written; unknown: the statement went out and no
  // clean answer came back, or the server stopped waiting for synchronous replication (as for
  // Transaction::Commit). One round trip instead of BEGIN, the statement and COMMIT.
  CommitResult ExecAlone(std::string_view sql, const Params& params, Rows* rows);
  // Several statements without parameters in one round trip (schema scripts). Not for input.
  Status ExecScript(std::string_view sql);

  // True while the connection is usable (no failure seen).
  bool ok() const;
  // Drops the connection and connects again with the same options: after a failover, libpq
  // tries the hosts in turn and finds the new primary. Anything prepared or open is gone.
  Status Reconnect();
  // True after an error that lost the connection or found the server read-only, so a Reconnect
  // may help.
  bool NeedsReconnect() const;

  // The SQLSTATE of the last failed statement ("" if none, or the connection was lost).
  const std::string& last_sqlstate() const { return last_sqlstate_; }
  // Server host and port this connection settled on, "host:port" (for logs).
  std::string server() const;
  // The connection string's safe description (Describe).
  const std::string& description() const { return description_; }
  bool in_transaction() const;
  // The connection's socket (-1 when there is none), to poll for readability: a notification
  // (after LISTEN) or the server closing the connection.
  int socket() const { return conn_ ? PQsocket(conn_) : -1; }
  // Reads what the server sent without waiting and returns the (channel, payload) of every
  // notification received since the last call. An error when the connection is lost.
  Result<std::vector<std::pair<std::string, std::string>>> TakeNotifications();
  // The server's process id for this session (pg_backend_pid()), e.g. to cancel it in a test.
  int backend_pid() const { return conn_ ? PQbackendPID(conn_) : 0; }

 private:
  friend class Transaction;
  Connection(ConnectOptions options, std::string password, std::string description);
  Status Connect();
  Status ErrorFromResult(const PGresult* res, std::string_view what);
  Status ErrorFromConnection(std::string_view what);
  static void OnNotice(void* self, const PGresult* res);

  Result<Rows> Run(std::string_view sql, const Params& params, bool prepare);
  // The session's prepared statements: statement text and parameter types -> name.
  static constexpr size_t kMaxPrepared = 256;
  static constexpr size_t kMaxPreparedText = 4096;

  ConnectOptions options_;
  std::string password_;
  std::string description_;
  PGconn* conn_ = nullptr;
  std::unordered_map<std::string, std::string> prepared_;
  uint64_t next_prepared_ = 0;
  std::string last_sqlstate_;
  bool lost_ = false;
  // Warnings the server sent while a COMMIT was in flight (Transaction::Commit inspects them).
  bool capture_notices_ = false;
  std::vector<std::string> notices_;
};

// BEGIN on construction (check began()); ROLLBACK on destruction unless committed. Statements of
// the transaction run on the connection as usual.
class Transaction {
 public:
  enum class Isolation { kReadCommitted, kRepeatableRead, kSerializable };
  explicit Transaction(Connection& conn, Isolation isolation = Isolation::kReadCommitted);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  const Status& began() const { return begin_status_; }
  // COMMIT, with its outcome (see the file comment). Once only.
  CommitResult Commit();

 private:
  Connection& conn_;
  Status begin_status_;
  bool open_ = false;
};

}  // namespace bud::storage::pg
