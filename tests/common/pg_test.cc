// PostgreSQL as every Budstikke store uses it (common/storage/pg.h), against a real PostgreSQL 15
// server that the test starts (tests/support/postgres.h): parameters and results in binary,
// transactions that roll back unless committed, the three outcomes of COMMIT (durable, failed,
// unknown), and the error classification for a wrong database, a wrong password, a read-only
// server, a server that is gone and a connection killed in the middle of a transaction.
#include "common/storage/pg.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "tests/integration/harness.h"
#include "tests/support/postgres.h"
#include "tests/support/temp_dir.h"

namespace bud::test {
namespace {

using storage::pg::CommitOutcome;
using storage::pg::Connection;
using storage::pg::ConnectOptions;
using storage::pg::Params;
using storage::pg::Transaction;

// One server for the tests that leave it as they found it.
PostgresServer& SharedServer() {
  static PostgresServer server;
  return server;
}

ConnectOptions OptionsFor(const PostgresServer& pg) {
  ConnectOptions o;
  o.conninfo = pg.ConnString();
  o.password_file = pg.PasswordFile();
  return o;
}

std::unique_ptr<Connection> ConnectOrDie(const ConnectOptions& o) {
  auto c = Connection::Open(o);
  INFO(c.status().ToString());
  REQUIRE(c.ok());
  return std::move(c).value();
}

void ExecOrDie(Connection& c, const std::string& sql, const Params& p = {}) {
  auto r = c.Exec(sql, p);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
}

int64_t CountRows(const PostgresServer& pg, const std::string& table, const std::string& where = "true") {
  auto c = ConnectOrDie(OptionsFor(pg));
  auto r = c->Exec("SELECT count(*) FROM " + table + " WHERE " + where);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return r->Int(0, 0);
}

void WritePasswordFile(const std::string& path, const std::string& text, mode_t mode = 0600) {
  WriteFile(path, text);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

// A port of 127.0.0.1 that nobody listens on (bound to port 0, read back, closed).
int UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST_CASE("pg: parameters and results round-trip in binary", "[pg]") {
  auto& pg = SharedServer();
  auto c = ConnectOrDie(OptionsFor(pg));
  ExecOrDie(*c, "CREATE TABLE IF NOT EXISTS roundtrip (id bigint PRIMARY KEY, name text, "
                "blob bytea, small integer, flag boolean)");
  ExecOrDie(*c, "DELETE FROM roundtrip");
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes += static_cast<char>(i);
  const std::string name = "Fylkesmannen i Vestland \xc3\xb8\xc3\xa6\xc3\xa5";
  Params p;
  p.Add(int64_t{-9007199254740993}).Add(name).AddBytea(all_bytes).Add(int64_t{-7}).Add(true);
  ExecOrDie(*c, "INSERT INTO roundtrip VALUES ($1, $2, $3, $4, $5)", p);
  ExecOrDie(*c, "INSERT INTO roundtrip (id, name, blob) VALUES ($1, $2, $3)",
            Params().Add(int64_t{2}).AddNull().AddBytea(""));

  auto r = c->Exec("SELECT id, name, blob, small, flag FROM roundtrip ORDER BY id");
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  REQUIRE(r->size() == 2);
  CHECK(r->Int(0, 0) == -9007199254740993);
  CHECK(r->Text(0, 1) == name);
  CHECK(r->Bytes(0, 2) == all_bytes);
  CHECK(r->Int(0, 3) == -7);
  CHECK(r->Int(0, 4) == 1);
  CHECK(r->Int(1, 0) == 2);
  CHECK(r->IsNull(1, 1));
  CHECK_FALSE(r->IsNull(1, 2));
  CHECK(r->Bytes(1, 2).empty());
  CHECK(r->IsNull(1, 3));

  auto upd = c->Exec("UPDATE roundtrip SET small = small WHERE id > $1", Params::Of(int64_t{-1}));
  REQUIRE(upd.ok());
  CHECK(upd->Affected() == 1);

  SECTION("text with a NUL byte is refused by the server, and the connection stays usable") {
    auto bad = c->Exec("INSERT INTO roundtrip (id, name) VALUES (3, $1)",
                       Params::Of(std::string("a\0b", 3)));
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.status().code() == Code::kInvalidArgument);
    CHECK(c->last_sqlstate() == "22021");
    CHECK(c->ok());
    CHECK_FALSE(c->NeedsReconnect());
    ExecOrDie(*c, "SELECT 1");
  }
  SECTION("a unique violation is kAlreadyExists") {
    auto dup = c->Exec("INSERT INTO roundtrip (id) VALUES ($1)", Params::Of(int64_t{2}));
    REQUIRE_FALSE(dup.ok());
    CHECK(dup.status().code() == Code::kAlreadyExists);
    CHECK(c->last_sqlstate() == "23505");
  }
  SECTION("invalid UTF-8 is refused") {
    auto bad = c->Exec("SELECT $1::text", Params::Of(std::string("\xff\xfe")));
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("pg: arrays travel in binary, nothing quoted", "[pg]") {
  auto& pg = SharedServer();
  auto c = ConnectOrDie(OptionsFor(pg));
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes += static_cast<char>(i);
  const std::vector<std::string> texts = {"plain", "with \"quotes\", {braces} and \\", "", "NULL",
                                          "\xc3\xb8"};
  const std::vector<std::string_view> text_views(texts.begin(), texts.end());
  const std::vector<std::string_view> blobs = {all_bytes, "", std::string_view("\0\0", 2)};
  const std::vector<int64_t> numbers = {0, -1, int64_t{1} << 40, -9007199254740993};
  auto r = c->Exec(
      "SELECT t, b, n FROM unnest($1::text[], $2::bytea[], $3::bigint[]) WITH ORDINALITY "
      "AS u(t, b, n, o) ORDER BY o",
      Params().AddTextArray(text_views).AddByteaArray(blobs).AddInt8Array(numbers));
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  REQUIRE(r->size() == 5);  // unnest pads the shorter arrays with NULL
  for (int i = 0; i < 5; ++i) CHECK(r->Text(i, 0) == texts[static_cast<size_t>(i)]);
  CHECK(r->Bytes(0, 1) == all_bytes);
  CHECK(r->Bytes(1, 1).empty());
  CHECK_FALSE(r->IsNull(1, 1));
  CHECK(r->Bytes(2, 1) == std::string("\0\0", 2));
  CHECK(r->IsNull(3, 1));
  CHECK(r->Int(2, 2) == int64_t{1} << 40);
  CHECK(r->Int(3, 2) == -9007199254740993);
  CHECK(r->IsNull(4, 2));

  auto empty = c->Exec(
      "SELECT count(*)::bigint, coalesce(cardinality($1::text[]), -1)::bigint "
      "FROM unnest($1::text[])",
      Params().AddTextArray(std::vector<std::string_view>{}));
  REQUIRE(empty.ok());
  CHECK(empty->Int(0, 0) == 0);
  CHECK(empty->Int(0, 1) == 0);
  // A text element with a NUL byte or invalid UTF-8 is refused like a text parameter.
  auto bad = c->Exec("SELECT $1::text[]", Params().AddTextArray({std::string_view("a\0b", 3)}));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK(c->ok());
}

TEST_CASE("pg: statements are prepared once per session and survive what changes under them",
          "[pg]") {
  auto& pg = SharedServer();
  auto c = ConnectOrDie(OptionsFor(pg));
  ExecOrDie(*c, "DROP TABLE IF EXISTS prepared_t");
  ExecOrDie(*c, "CREATE TABLE prepared_t (id bigint PRIMARY KEY, name text)");
  const std::string insert = "INSERT INTO prepared_t VALUES ($1, $2)";
  for (int64_t i = 1; i <= 20; ++i) ExecOrDie(*c, insert, Params().Add(i).Add("row"));
  // The statement was parsed once: the server lists it among the session's prepared statements.
  auto listed = c->Exec("SELECT count(*)::bigint FROM pg_prepared_statements WHERE statement = $1",
                        Params::Of(insert));
  REQUIRE(listed.ok());
  CHECK(listed->Int(0, 0) == 1);
  // The same text with other parameter types is another statement, not a wrong one.
  auto typed = c->Exec("SELECT $1::text", Params::Of(int64_t{7}));
  REQUIRE(typed.ok());
  CHECK(typed->Text(0, 0) == "7");
  auto typed2 = c->Exec("SELECT $1::text", Params::Of("seven"));
  REQUIRE(typed2.ok());
  CHECK(typed2->Text(0, 0) == "seven");

  SECTION("a failed statement inside a transaction, then the same text again") {
    {
      Transaction tx(*c);
      REQUIRE(tx.began().ok());
      auto dup = c->Exec(insert, Params().Add(int64_t{1}).Add("again"));
      CHECK(dup.status().code() == Code::kAlreadyExists);
    }  // rolled back
    ExecOrDie(*c, insert, Params().Add(int64_t{21}).Add("after"));
  }
  SECTION("a schema change that alters a result's shape costs one error, then works") {
    const std::string star = "SELECT * FROM prepared_t WHERE id = $1";
    ExecOrDie(*c, star, Params::Of(int64_t{1}));
    ExecOrDie(*c, "ALTER TABLE prepared_t ADD COLUMN extra text");
    auto changed = c->Exec(star, Params::Of(int64_t{1}));
    if (!changed.ok()) {
      CHECK(c->last_sqlstate() == "0A000");
      changed = c->Exec(star, Params::Of(int64_t{1}));
    }
    REQUIRE(changed.ok());
    CHECK(changed->columns() == 3);
  }
  SECTION("a statement deallocated behind its back is prepared again") {
    ExecOrDie(*c, "DEALLOCATE ALL");
    auto gone = c->Exec(insert, Params().Add(int64_t{22}).Add("x"));
    if (!gone.ok()) {
      CHECK(c->last_sqlstate() == "26000");
      gone = c->Exec(insert, Params().Add(int64_t{22}).Add("x"));
    }
    REQUIRE(gone.ok());
  }
  SECTION("a new session starts with none") {
    REQUIRE(c->Reconnect().ok());
    ExecOrDie(*c, insert, Params().Add(int64_t{23}).Add("y"));
    auto n = c->Exec("SELECT count(*)::bigint FROM pg_prepared_statements");
    REQUIRE(n.ok());
    CHECK(n->Int(0, 0) == 2);  // the INSERT and this SELECT
  }
}

TEST_CASE("pg: ExecPlanned is planned at each call and prepares nothing", "[pg]") {
  auto& pg = SharedServer();
  auto c = ConnectOrDie(OptionsFor(pg));
  ExecOrDie(*c, "DROP TABLE IF EXISTS planned_t");
  ExecOrDie(*c, "CREATE TABLE planned_t (id text PRIMARY KEY, n bigint)");
  const std::string lookup = "SELECT id, n FROM planned_t WHERE id = ANY($1::text[]) ORDER BY id";
  for (int64_t i = 0; i < 12; ++i) {
    ExecOrDie(*c, "INSERT INTO planned_t VALUES ($1, $2)",
              Params().Add("id-" + std::to_string(i)).Add(i));
    std::vector<std::string> ids = {"id-" + std::to_string(i), "absent"};
    auto rows = c->ExecPlanned(lookup, Params().AddTextArray(ids));
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 1);
    CHECK(rows->Text(0, 0) == ids[0]);
    CHECK(rows->Int(0, 1) == i);
  }
  // Twelve calls (a prepared statement turns generic after five): none of them was prepared.
  auto listed = c->Exec("SELECT count(*)::bigint FROM pg_prepared_statements WHERE statement = $1",
                        Params::Of(lookup));
  REQUIRE(listed.ok());
  CHECK(listed->Int(0, 0) == 0);
  ExecOrDie(*c, lookup, Params().AddTextArray(std::vector<std::string>{"id-1"}));
  listed = c->Exec("SELECT count(*)::bigint FROM pg_prepared_statements WHERE statement = $1",
                   Params::Of(lookup));
  REQUIRE(listed.ok());
  CHECK(listed->Int(0, 0) == 1);  // Exec prepares the same text
  auto bad = c->ExecPlanned("SELECT no_such_column FROM planned_t");
  CHECK_FALSE(bad.ok());
  CHECK(c->ok());  // an error in a statement leaves the session usable
}

TEST_CASE("pg: a transaction is durable when committed and rolls back otherwise", "[pg]") {
  auto& pg = SharedServer();
  auto c = ConnectOrDie(OptionsFor(pg));
  ExecOrDie(*c, "CREATE TABLE IF NOT EXISTS tx (k text PRIMARY KEY)");
  ExecOrDie(*c, "DELETE FROM tx");
  {
    Transaction tx(*c);
    REQUIRE(tx.began().ok());
    ExecOrDie(*c, "INSERT INTO tx VALUES ($1)", Params::Of("committed"));
    auto res = tx.Commit();
    INFO(res.status.ToString());
    CHECK(res.outcome == CommitOutcome::kDurable);
    CHECK(res.durable());
  }
  {
    Transaction tx(*c);
    REQUIRE(tx.began().ok());
    ExecOrDie(*c, "INSERT INTO tx VALUES ($1)", Params::Of("dropped"));
    CHECK(c->in_transaction());
  }  // not committed: rolled back
  CHECK_FALSE(c->in_transaction());
  CHECK(CountRows(pg, "tx", "k = 'committed'") == 1);
  CHECK(CountRows(pg, "tx", "k = 'dropped'") == 0);

  // A statement that fails inside the transaction: COMMIT turns into ROLLBACK (failed).
  {
    Transaction tx(*c);
    REQUIRE(tx.began().ok());
    ExecOrDie(*c, "INSERT INTO tx VALUES ($1)", Params::Of("before-error"));
    auto dup = c->Exec("INSERT INTO tx VALUES ($1)", Params::Of("committed"));
    REQUIRE_FALSE(dup.ok());
    auto res = tx.Commit();
    CHECK(res.outcome == CommitOutcome::kFailed);
    CHECK_FALSE(res.status.ok());
  }
  CHECK(CountRows(pg, "tx", "k = 'before-error'") == 0);

  // A deferred constraint fails at COMMIT itself: the server answers with an error (failed).
  ExecOrDie(*c, "CREATE TABLE IF NOT EXISTS deferred (k int, CONSTRAINT u UNIQUE (k) "
                "DEFERRABLE INITIALLY DEFERRED)");
  ExecOrDie(*c, "DELETE FROM deferred");
  {
    Transaction tx(*c);
    REQUIRE(tx.began().ok());
    ExecOrDie(*c, "INSERT INTO deferred VALUES (1), (1)");
    auto res = tx.Commit();
    CHECK(res.outcome == CommitOutcome::kFailed);
    CHECK(res.status.code() == Code::kAlreadyExists);
    CHECK(c->ok());
  }
  CHECK(CountRows(pg, "deferred") == 0);
}

TEST_CASE("pg: connection errors are classified and never name the password", "[pg]") {
  auto& pg = SharedServer();
  TempDir tmp;

  SECTION("a database that does not exist") {
    ConnectOptions o = OptionsFor(pg);
    o.conninfo = pg.ConnString("no_such_db");
    auto c = Connection::Open(o);
    REQUIRE_FALSE(c.ok());
    INFO(c.status().ToString());
    CHECK(c.status().code() == Code::kNotFound);
    CHECK(c.status().message().find("dbname=no_such_db") != std::string::npos);
    CHECK(c.status().message().find("127.0.0.1") != std::string::npos);
    CHECK(c.status().message().find(pg.Password()) == std::string::npos);
  }
  SECTION("a wrong password") {
    const std::string wrong = "wrong-" + pg.Password().substr(0, 8);
    WritePasswordFile(tmp / "pw", wrong + "\n");
    ConnectOptions o = OptionsFor(pg);
    o.password_file = tmp / "pw";
    auto c = Connection::Open(o);
    REQUIRE_FALSE(c.ok());
    INFO(c.status().ToString());
    CHECK(c.status().code() == Code::kConfig);
    CHECK(c.status().message().find("password authentication failed") != std::string::npos);
    CHECK(c.status().message().find(wrong) == std::string::npos);
    CHECK(c.status().message().find(pg.Password()) == std::string::npos);
  }
  SECTION("no password at all") {
    ConnectOptions o = OptionsFor(pg);
    o.password_file.clear();
    ::setenv("PGPASSFILE", "/nonexistent", 1);
    auto c = Connection::Open(o);
    ::unsetenv("PGPASSFILE");
    REQUIRE_FALSE(c.ok());
    INFO(c.status().ToString());
    CHECK(c.status().code() == Code::kConfig);
  }
  SECTION("a password in the connection string is refused before connecting") {
    ConnectOptions o = OptionsFor(pg);
    o.conninfo = pg.ConnString() + " password=" + pg.Password();
    auto c = Connection::Open(o);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Code::kConfig);
    CHECK(c.status().message().find("password_file") != std::string::npos);
    CHECK(c.status().message().find(pg.Password()) == std::string::npos);
    o.conninfo = "postgresql://bud:" + pg.Password() + "@127.0.0.1:" + std::to_string(pg.Port()) + "/bud";
    c = Connection::Open(o);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Code::kConfig);
    CHECK(c.status().message().find(pg.Password()) == std::string::npos);
  }
  SECTION("a connection string that cannot be parsed") {
    for (const char* bad : {"host=127.0.0.1 port", "postgresql://[::1", "nosuchkeyword=1",
                            "host='unterminated"}) {
      ConnectOptions o;
      o.conninfo = bad;
      auto c = Connection::Open(o);
      INFO(bad << " -> " << c.status().ToString());
      REQUIRE_FALSE(c.ok());
      CHECK(c.status().code() == Code::kConfig);
    }
  }
  SECTION("nothing listening") {
    const int dead_port = UnusedPort();
    ConnectOptions o = OptionsFor(pg);
    o.conninfo = "host=127.0.0.1 port=" + std::to_string(dead_port) + " dbname=bud user=bud";
    auto c = Connection::Open(o);
    REQUIRE_FALSE(c.ok());
    INFO(c.status().ToString());
    CHECK(c.status().code() == Code::kUnavailable);
    CHECK(c.status().message().find(std::to_string(dead_port)) != std::string::npos);

    // The same host listed first in a multi-host string: libpq moves on to the live one.
    o.conninfo = "host=127.0.0.1,127.0.0.1 port=" + std::to_string(dead_port) + "," +
                 std::to_string(pg.Port()) + " dbname=bud user=bud";
    auto c2 = Connection::Open(o);
    INFO(c2.status().ToString());
    REQUIRE(c2.ok());
    CHECK((*c2)->server() == "127.0.0.1:" + std::to_string(pg.Port()));
  }
  SECTION("password files that are refused") {
    ConnectOptions o = OptionsFor(pg);
    o.password_file = tmp / "missing";
    auto c = Connection::Open(o);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Code::kNotFound);

    WritePasswordFile(tmp / "open", pg.Password(), 0644);
    o.password_file = tmp / "open";
    c = Connection::Open(o);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Code::kConfig);
    CHECK(c.status().message().find("0644") != std::string::npos);

    WritePasswordFile(tmp / "empty", "\n");
    o.password_file = tmp / "empty";
    c = Connection::Open(o);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Code::kConfig);

    REQUIRE(::symlink(pg.PasswordFile().c_str(), (tmp / "link").c_str()) == 0);
    o.password_file = tmp / "link";
    c = Connection::Open(o);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Code::kConfig);

    o.password_file = tmp.path();
    c = Connection::Open(o);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Code::kConfig);

    // 0640 and a CRLF line end are fine.
    WritePasswordFile(tmp / "group", pg.Password() + "\r\nsecond line ignored\n", 0640);
    o.password_file = tmp / "group";
    c = Connection::Open(o);
    INFO(c.status().ToString());
    CHECK(c.ok());
  }
}

TEST_CASE("pg: a read-only server is kUnavailable and worth a reconnect", "[pg]") {
  PostgresServer pg;
  auto writer = ConnectOrDie(OptionsFor(pg));
  ExecOrDie(*writer, "CREATE TABLE ro (k int)");
  pg.AdminExec("ALTER DATABASE bud SET default_transaction_read_only = on");

  // With read_write (the default), libpq refuses the read-only session itself.
  auto refused = Connection::Open(OptionsFor(pg));
  REQUIRE_FALSE(refused.ok());
  INFO(refused.status().ToString());
  CHECK(refused.status().code() == Code::kUnavailable);
  CHECK(refused.status().message().find("read-only") != std::string::npos);

  // Without it, the write fails with SQLSTATE 25006.
  ConnectOptions o = OptionsFor(pg);
  o.read_write = false;
  auto reader = ConnectOrDie(o);
  auto w = reader->Exec("INSERT INTO ro VALUES (1)");
  REQUIRE_FALSE(w.ok());
  INFO(w.status().ToString());
  CHECK(w.status().code() == Code::kUnavailable);
  CHECK(reader->last_sqlstate() == "25006");
  CHECK(w.status().message().find("read-only") != std::string::npos);
  CHECK(reader->NeedsReconnect());
  // Reads still work.
  auto r = reader->Exec("SELECT count(*) FROM ro");
  REQUIRE(r.ok());
  CHECK(r->Int(0, 0) == 0);

  pg.AdminExec("ALTER DATABASE bud RESET default_transaction_read_only");
  auto again = Connection::Open(OptionsFor(pg));
  INFO(again.status().ToString());
  CHECK(again.ok());
}

TEST_CASE("pg: a connection killed in the middle of a transaction", "[pg]") {
  PostgresServer pg;
  auto c = ConnectOrDie(OptionsFor(pg));
  ExecOrDie(*c, "CREATE TABLE killed (k text PRIMARY KEY)");
  auto reconnect = [&] {
    Status s = c->Reconnect();
    INFO(s.ToString());
    REQUIRE(s.ok());
    CHECK_FALSE(c->NeedsReconnect());
  };

  INFO("lost before COMMIT is sent: failed, nothing written");
  {
    Transaction tx(*c);
    REQUIRE(tx.began().ok());
    ExecOrDie(*c, "INSERT INTO killed VALUES ('a')");
    pg.AdminExec("SELECT pg_terminate_backend(" + std::to_string(c->backend_pid()) + ")");
    auto next = c->Exec("INSERT INTO killed VALUES ('b')");
    REQUIRE_FALSE(next.ok());
    INFO(next.status().ToString());
    CHECK(next.status().code() == Code::kUnavailable);
    CHECK(c->NeedsReconnect());
    auto res = tx.Commit();
    INFO(res.status.ToString());
    CHECK(res.outcome == CommitOutcome::kFailed);
    CHECK(res.status.code() == Code::kUnavailable);
    CHECK(CountRows(pg, "killed") == 0);
  }
  reconnect();

  INFO("lost while COMMIT is on its way: unknown");
  {
    Transaction tx(*c);
    REQUIRE(tx.began().ok());
    ExecOrDie(*c, "INSERT INTO killed VALUES ('a')");
    pg.AdminExec("SELECT pg_terminate_backend(" + std::to_string(c->backend_pid()) + ")");
    auto res = tx.Commit();
    INFO(res.status.ToString());
    CHECK(res.outcome == CommitOutcome::kUnknown);
    CHECK(res.status.code() == Code::kUnavailable);
    // Here it was in fact not written: the backend was gone before COMMIT arrived.
    CHECK(CountRows(pg, "killed") == 0);
  }
  reconnect();

  INFO("a statement of its own: durable with its rows; an error: failed, nothing written");
  {
    storage::pg::Rows rows;
    auto res = c->ExecAlone("INSERT INTO killed VALUES ($1), ($2) RETURNING k",
                            Params::Of("alone-1", "alone-2"), &rows);
    INFO(res.status.ToString());
    REQUIRE(res.durable());
    CHECK(rows.size() == 2);
    CHECK_FALSE(c->in_transaction());
    CHECK(CountRows(pg, "killed", "k LIKE 'alone-%'") == 2);
    auto dup = c->ExecAlone("INSERT INTO killed VALUES ('alone-3'), ('alone-1')", Params(), &rows);
    CHECK(dup.outcome == CommitOutcome::kFailed);
    CHECK(dup.status.code() == Code::kAlreadyExists);
    CHECK(CountRows(pg, "killed", "k = 'alone-3'") == 0);
    {
      Transaction tx(*c);
      REQUIRE(tx.began().ok());
      auto inside = c->ExecAlone("SELECT 1", Params(), &rows);
      CHECK(inside.outcome == CommitOutcome::kFailed);
    }
  }

  INFO("a statement of its own on a session the server ended while it was idle: failed");
  {
    const int pid = c->backend_pid();
    pg.AdminExec("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
    WaitUntil("the session to end", Millis(30000), [&] {
      return pg.AdminQuery("SELECT count(*)::text FROM pg_stat_activity WHERE pid = " +
                           std::to_string(pid)) == "0";
    });
    storage::pg::Rows rows;
    auto res = c->ExecAlone("INSERT INTO killed VALUES ('idle')", Params(), &rows);
    INFO(res.status.ToString());
    CHECK(res.outcome == CommitOutcome::kFailed);
    CHECK(res.status.code() == Code::kUnavailable);
    CHECK(c->NeedsReconnect());
    CHECK(CountRows(pg, "killed", "k = 'idle'") == 0);
  }
  reconnect();

  INFO("a statement of its own, its session killed while it runs: unknown");
  {
    const int pid = c->backend_pid();
    std::thread killer([&pg, pid] {
      try {
        WaitUntil("the statement to sleep", Millis(30000), [&] {
          return pg.AdminQuery("SELECT count(*)::text FROM pg_stat_activity WHERE pid = " +
                               std::to_string(pid) + " AND wait_event = 'PgSleep'") == "1";
        });
        pg.AdminExec("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
      } catch (const std::exception&) {
      }
    });
    storage::pg::Rows rows;
    auto res = c->ExecAlone("INSERT INTO killed SELECT 'slept' FROM pg_sleep(20)", Params(), &rows);
    killer.join();
    INFO(res.status.ToString());
    CHECK(res.outcome == CommitOutcome::kUnknown);
    CHECK(CountRows(pg, "killed", "k = 'slept'") == 0);
  }
  reconnect();

  INFO("the server killed (SIGKILL) and started again: committed rows survive");
  {
    Transaction tx(*c);
    REQUIRE(tx.began().ok());
    ExecOrDie(*c, "INSERT INTO killed VALUES ('durable')");
    REQUIRE(tx.Commit().durable());
  }
  pg.Kill();
  CHECK_FALSE(pg.running());
  auto r = c->Exec("SELECT 1");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Code::kUnavailable);
  Status down = c->Reconnect();
  CHECK(down.code() == Code::kUnavailable);
  pg.Start();
  reconnect();
  CHECK(CountRows(pg, "killed", "k = 'durable'") == 1);
  ExecOrDie(*c, "INSERT INTO killed VALUES ('after')");
  CHECK(CountRows(pg, "killed", "k = 'after'") == 1);
}

TEST_CASE("pg: a cancelled wait for synchronous replication is an unknown outcome", "[pg]") {
  PostgresServer pg;
  auto c = ConnectOrDie(OptionsFor(pg));
  ExecOrDie(*c, "CREATE TABLE sync (k text)");
  // A synchronous standby that never comes: every COMMIT waits for it. The reload reaches this
  // session's backend asynchronously (at a command after its SIGHUP): wait until it sees it, or
  // on a loaded machine the COMMIT below may run under the old setting and not wait at all.
  pg.SetSynchronousStandbys("nobody");
  WaitUntil("the session to see synchronous_standby_names = nobody", Millis(30000), [&] {
    auto r = c->Exec("SHOW synchronous_standby_names");
    return r.ok() && r->size() == 1 && r->Text(0, 0) == "nobody";
  });

  // Runs `how`(pid) once the session's COMMIT waits for synchronous replication.
  auto interrupt_when_waiting = [&pg](int pid, const std::string& how) {
    return std::thread([&pg, pid, how] {
      try {
        WaitUntil("the COMMIT to wait for synchronous replication", Millis(30000), [&] {
          return pg.AdminQuery("SELECT count(*)::text FROM pg_stat_activity WHERE pid = " +
                               std::to_string(pid) + " AND wait_event = 'SyncRep'") == "1";
        });
        pg.AdminExec("SELECT " + how + "(" + std::to_string(pid) + ")");
      } catch (const std::exception&) {
        // The COMMIT then stays waiting, and the test hangs into ctest's deadline.
      }
    });
  };

  INFO("cancelled: committed locally, not replicated");
  {
    Transaction tx(*c);
    REQUIRE(tx.began().ok());
    ExecOrDie(*c, "INSERT INTO sync VALUES ('cancelled')");
    std::thread t = interrupt_when_waiting(c->backend_pid(), "pg_cancel_backend");
    auto res = tx.Commit();
    t.join();
    INFO(res.status.ToString());
    CHECK(res.outcome == CommitOutcome::kUnknown);
    CHECK(res.status.message().find("synchronous replication") != std::string::npos);
    CHECK(c->ok());
    // On the primary it is there (and a failover now would lose it).
    CHECK(pg.AdminQuery("SELECT count(*)::text FROM sync", "bud") == "1");
  }

  INFO("a statement of its own, cancelled the same way: unknown");
  {
    storage::pg::Rows rows;
    std::thread t = interrupt_when_waiting(c->backend_pid(), "pg_cancel_backend");
    auto res = c->ExecAlone("INSERT INTO sync VALUES ('alone') RETURNING k", Params(), &rows);
    t.join();
    INFO(res.status.ToString());
    CHECK(res.outcome == CommitOutcome::kUnknown);
    CHECK(res.status.message().find("synchronous replication") != std::string::npos);
    CHECK(pg.AdminQuery("SELECT count(*)::text FROM sync WHERE k = 'alone'", "bud") == "1");
  }

  INFO("terminated while waiting: unknown, connection gone");
  {
    Transaction tx(*c);
    REQUIRE(tx.began().ok());
    ExecOrDie(*c, "INSERT INTO sync VALUES ('terminated')");
    std::thread t = interrupt_when_waiting(c->backend_pid(), "pg_terminate_backend");
    auto res = tx.Commit();
    t.join();
    INFO(res.status.ToString());
    CHECK(res.outcome == CommitOutcome::kUnknown);
    CHECK_FALSE(c->ok());
  }

  INFO("without a synchronous standby to wait for, COMMIT is durable again");
  pg.SetSynchronousStandbys("");
  REQUIRE(c->Reconnect().ok());
  {
    Transaction tx(*c);
    REQUIRE(tx.began().ok());
    ExecOrDie(*c, "INSERT INTO sync VALUES ('plain')");
    auto res = tx.Commit();
    INFO(res.status.ToString());
    CHECK(res.durable());
  }
}

TEST_CASE("pg: SQLSTATEs map to Status codes", "[pg]") {
  using storage::pg::CodeFromSqlState;
  CHECK(CodeFromSqlState("25006") == Code::kUnavailable);
  CHECK(CodeFromSqlState("08006") == Code::kUnavailable);
  CHECK(CodeFromSqlState("08001") == Code::kUnavailable);
  CHECK(CodeFromSqlState("57P01") == Code::kUnavailable);
  CHECK(CodeFromSqlState("3D000") == Code::kNotFound);
  CHECK(CodeFromSqlState("28P01") == Code::kConfig);
  CHECK(CodeFromSqlState("28000") == Code::kConfig);
  CHECK(CodeFromSqlState("42501") == Code::kConfig);
  CHECK(CodeFromSqlState("53100") == Code::kDiskFull);
  CHECK(CodeFromSqlState("40001") == Code::kBusy);
  CHECK(CodeFromSqlState("40P01") == Code::kBusy);
  CHECK(CodeFromSqlState("23505") == Code::kAlreadyExists);
  CHECK(CodeFromSqlState("23503") == Code::kInvalidArgument);
  CHECK(CodeFromSqlState("22021") == Code::kInvalidArgument);
  CHECK(CodeFromSqlState("57014") == Code::kTimeout);
  CHECK(CodeFromSqlState("XX001") == Code::kCorrupt);
  CHECK(CodeFromSqlState("58030") == Code::kIo);
  CHECK(CodeFromSqlState("42P01") == Code::kInternal);
  CHECK(CodeFromSqlState("") == Code::kInternal);
  CHECK(CodeFromSqlState("garbage") == Code::kInternal);
}

}  // namespace
}  // namespace bud::test
