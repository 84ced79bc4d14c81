// A real PostgreSQL 15 server for tests, from Debian's packages, in a temporary folder.
//
// Operation: the constructor makes a folder /tmp/bud-pg-XXXXXX (mode 0700, owned by the
// `postgres` user when the tests run as root, since the server refuses to run as root), runs
// initdb there (UTF-8, C locale, local socket trust for the superuser, SCRAM passwords over TCP),
// and starts the server with pg_ctl on 127.0.0.1 and a port the OS picked (bound to port 0, read
// back, closed; another port is tried when the server then finds it taken), its unix socket inside
// the folder, fsync=on and synchronous_commit=on. It then creates a login role with a random
// password and a database owned by it, and writes the password to a file (mode 0600) for the
// stores' `password_file`. ConnString() names that database over TCP without the password.
//
// Stop() shuts the server down (fast, then immediate, then SIGKILL, each with a deadline); Kill()
// SIGKILLs the postmaster and every server process at once, as when a machine is lost; Start()
// starts it again on the same data and the same port (after Kill: crash recovery). The destructor
// stops the server and removes the folder (kept when BUD_KEEP_TEST_DIRS is set).
//
// Replication: StartStandby(name) takes a base backup of this server (pg_basebackup over the
// unix socket) and starts it as a streaming hot standby whose application_name is `name`, so
// the primary's synchronous_standby_names can name it ("ANY 1 (s1, s2)": SetSynchronousStandbys).
// Promote() turns a standby into a primary.
//
// Failures throw HarnessError (a std::runtime_error) with the server's log tail, which Catch2
// reports as the test's failure. The PostgreSQL binaries are looked up in BUD_PG_BINDIR or
// /usr/lib/postgresql/15/bin; when they are missing the constructor throws (scripts/setup
// installs them): a test that needs PostgreSQL fails, it is never skipped silently.
//
// Limitations: Linux only. Every command has a deadline. A test binary killed by a signal
// leaves its servers running (their folders say which). Not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace bud::test {

class PostgresServer {
 public:
  struct Options {
    std::string database = "bud";
    std::string user = "bud";
    // More postgresql.conf lines, e.g. "max_connections = 20".
    std::vector<std::string> settings;
  };

  PostgresServer() : PostgresServer(Options{}) {}
  // initdb, Start, create the role and the database.
  explicit PostgresServer(Options options);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Starts the server (again) on its data folder and port; waits until it accepts connections.
  void Start();
  // Shuts the server down and waits until it is gone. Nothing when it is not running.
  void Stop();
  // SIGKILL to the postmaster and all its processes; returns once they are gone.
  void Kill();
  bool running() const;
  // The postmaster and the processes it started (backends, WAL writer, checkpointer, ...), e.g.
  // to add up the server's CPU time. Empty when it is not running.
  std::vector<int> ServerPids() const;

  int Port() const { return port_; }
  // libpq connection string over TCP for the test role (no password: see PasswordFile()).
  std::string ConnString() const;
  // The same with another database name.
  std::string ConnString(const std::string& database) const;
  // File holding the test role's password (first line), mode 0600.
  const std::string& PasswordFile() const { return password_file_; }
  const std::string& Password() const { return password_; }
  const std::string& Database() const { return options_.database; }
  const std::string& User() const { return options_.user; }
  // The superuser over the unix socket (trust), e.g. for pg_terminate_backend or ALTER SYSTEM.
  std::string AdminConnString(const std::string& database = "postgres") const;
  // Runs statements as the superuser; throws HarnessError when they fail.
  void AdminExec(const std::string& sql, const std::string& database = "postgres") const;
  // The first column of the first row of a query as the superuser ("" for no row or NULL); cast
  // it to text in the query (`SELECT count(*)::text ...`).
  std::string AdminQuery(const std::string& sql, const std::string& database = "postgres") const;
  // ALTER SYSTEM SET synchronous_standby_names = '<value>' and reload, e.g. "ANY 1 (s1, s2)";
  // returns once new sessions see it (existing ones take it before their next command).
  void SetSynchronousStandbys(const std::string& value) const;

  // A streaming hot standby of this server named `name` (its application_name), running.
  std::unique_ptr<PostgresServer> StartStandby(const std::string& name) const;
  // pg_ctl promote: the standby leaves recovery and takes writes.
  void Promote();

  const std::string& dir() const { return dir_; }
  std::string LogTail(int lines = 40) const;
  // Where the server binaries are (BUD_PG_BINDIR or /usr/lib/postgresql/15/bin).
  static std::string BinDir();

 private:
  struct StandbyTag {};
  PostgresServer(StandbyTag, const PostgresServer& primary, const std::string& name);
  void MakeFolder();
  void WriteConf();
  bool TryStart(std::string* error);
  std::vector<std::string> AsServerUser(std::vector<std::string> argv) const;
  int PostmasterPid() const;

  Options options_;
  std::string dir_;
  std::string data_;
  std::string socket_dir_;
  std::string log_;
  std::string password_;
  std::string password_file_;
  std::string primary_conninfo_;  // standbys only
  int port_ = 0;
  bool started_once_ = false;
};

}  // namespace bud::test
