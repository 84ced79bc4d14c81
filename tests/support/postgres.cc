// A real PostgreSQL 15 server for tests. See postgres.h.
#include "tests/support/postgres.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/storage/pg.h"
#include "tests/integration/harness.h"

namespace bud::test {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

bool IsRoot() { return ::geteuid() == 0; }

struct ServerUser {
  uid_t uid;
  gid_t gid;
};

ServerUser PostgresUser() {
  if (!IsRoot()) return {::geteuid(), ::getegid()};
  const passwd* pw = ::getpwnam("postgres");
  if (pw == nullptr) {
    throw HarnessError(
        "PostgreSQL tests run the server as the 'postgres' user, and there is none: install "
        "Debian's postgresql package (scripts/setup installs it)");
  }
  return {pw->pw_uid, pw->pw_gid};
}

// A port that was free a moment ago on 127.0.0.1 (bound to port 0 and read back).
int PickPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw HarnessError(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int e = errno;
    ::close(fd);
    throw HarnessError(std::string("picking a port: ") + std::strerror(e));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string RandomHex(size_t bytes) {
  std::ifstream in("/dev/urandom", std::ios::binary);
  std::string raw(bytes, '\0');
  if (!in.read(raw.data(), static_cast<std::streamsize>(bytes))) {
    throw HarnessError("cannot read /dev/urandom");
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

// The process's state letter from /proc (R, S, Z, ...), or 0 when there is no such process.
char ProcState(int pid) {
  std::string stat = ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return 0;
  return stat[close + 2];
}

bool Alive(int pid) {
  char s = ProcState(pid);
  return s != 0 && s != 'Z' && s != 'X';
}

std::vector<int> ChildrenOf(int parent) {
  std::vector<int> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    std::string stat = ReadFileOrEmpty(std::string("/proc/") + e->d_name + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    // After ") S " comes the parent's pid.
    int ppid = std::atoi(stat.c_str() + close + 4);
    if (ppid == parent) out.push_back(static_cast<int>(pid));
  }
  ::closedir(d);
  return out;
}

void Chown(const std::string& path, const ServerUser& user) {
  if (IsRoot() && ::chown(path.c_str(), user.uid, user.gid) != 0) {
    throw HarnessError("chown " + path + ": " + std::strerror(errno));
  }
}

void MakeDir(const std::string& path, const ServerUser& user) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    throw HarnessError("mkdir " + path + ": " + std::strerror(errno));
  }
  Chown(path, user);
}

// Writes a file the server user can read (mode 0600, owned by that user).
void WriteServerFile(const std::string& path, const std::string& text, const ServerUser& user) {
  WriteFile(path, text);
  ::chmod(path.c_str(), 0600);
  Chown(path, user);
}

void Check(const CommandResult& r, const std::string& what, const std::string& log_tail) {
  if (r.exit_code == 0) return;
  throw HarnessError(what + " failed (exit " + std::to_string(r.exit_code) + ")\nstdout: " + r.out +
                     "\nstderr: " + r.err + "\nserver log:\n" + log_tail);
}

}  // namespace

std::string PostgresServer::BinDir() {
  const char* env = std::getenv("BUD_PG_BINDIR");
  return env != nullptr && *env != '\0' ? env : "/usr/lib/postgresql/15/bin";
}

std::vector<std::string> PostgresServer::AsServerUser(std::vector<std::string> argv) const {
  // The server refuses to run as root; its tools run in its folder as the postgres user.
  std::vector<std::string> out;
  if (IsRoot()) out = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  out.push_back("/usr/bin/env");
  out.push_back("-C");
  out.push_back(dir_);
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

void PostgresServer::MakeFolder() {
  const std::string bin = BinDir();
  for (const char* tool : {"initdb", "pg_ctl", "postgres", "pg_basebackup"}) {
    if (::access((bin + "/" + tool).c_str(), X_OK) != 0) {
      throw HarnessError("PostgreSQL 15 is not installed: " + bin + "/" + tool +
                         " is missing (Debian's postgresql package: scripts/setup installs it; or set "
                         "BUD_PG_BINDIR)");
    }
  }
  const ServerUser user = PostgresUser();
  std::string tmpl = (fs::temp_directory_path() / "bud-pg-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw HarnessError("mkdtemp failed");
  dir_ = tmpl;
  Chown(dir_, user);
  data_ = dir_ + "/data";
  socket_dir_ = dir_ + "/sock";
  log_ = dir_ + "/server.log";
  MakeDir(socket_dir_, user);
}

PostgresServer::PostgresServer(Options options) : options_(std::move(options)) {
  MakeFolder();
  const std::string bin = BinDir();
  auto r = RunCommand(AsServerUser({bin + "/initdb", "-D", data_, "-U", "postgres", "-E", "UTF8",
                                    "--locale=C", "--auth-local=trust",
                                    "--auth-host=scram-sha-256", "--no-instructions"}),
                      Millis(180000));
  Check(r, "initdb", "");
  port_ = PickPort();
  Start();

  password_ = RandomHex(24);
  AdminExec("CREATE ROLE \"" + options_.user + "\" LOGIN PASSWORD '" + password_ + "'");
  AdminExec("CREATE DATABASE \"" + options_.database + "\" OWNER \"" + options_.user + "\"");
  // The password file belongs to whoever runs the tests: the stores read it, not the server.
  password_file_ = dir_ + "/password";
  WriteFile(password_file_, password_ + "\n");
  ::chmod(password_file_.c_str(), 0600);
}

PostgresServer::PostgresServer(StandbyTag, const PostgresServer& primary, const std::string& name)
    : options_(primary.options_),
      password_(primary.password_) {
  MakeFolder();
  const std::string bin = BinDir();
  auto r = RunCommand(AsServerUser({bin + "/pg_basebackup", "-D", data_, "-h", primary.socket_dir_,
                                    "-p", std::to_string(primary.port_), "-U", "postgres", "-X",
                                    "stream", "-c", "fast"}),
                      Millis(180000));
  Check(r, "pg_basebackup for standby " + name, primary.LogTail());
  primary_conninfo_ = "host=" + primary.socket_dir_ + " port=" + std::to_string(primary.port_) +
                      " user=postgres application_name=" + name;
  WriteServerFile(data_ + "/standby.signal", "", PostgresUser());
  password_file_ = dir_ + "/password";
  WriteFile(password_file_, password_ + "\n");
  ::chmod(password_file_.c_str(), 0600);
  port_ = PickPort();
  Start();
}

std::unique_ptr<PostgresServer> PostgresServer::StartStandby(const std::string& name) const {
  return std::unique_ptr<PostgresServer>(new PostgresServer(StandbyTag{}, *this, name));
}

PostgresServer::~PostgresServer() {
  try {
    Stop();
  } catch (const std::exception&) {
    // A destructor must not throw; Stop ends with SIGKILL, which leaves nothing running.
  }
  if (!dir_.empty() && std::getenv("BUD_KEEP_TEST_DIRS") == nullptr) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

void PostgresServer::WriteConf() {
  // postgresql.conf includes bud.conf (written on every start, so the port and the standby's
  // upstream follow this object); ALTER SYSTEM (postgresql.auto.conf) still overrides it.
  const std::string conf = data_ + "/postgresql.conf";
  std::string main = ReadFile(conf);
  if (main.find("include_if_exists = 'bud.conf'") == std::string::npos) {
    main += "\ninclude_if_exists = 'bud.conf'\n";
    WriteServerFile(conf, main, PostgresUser());
  }
  std::string text =
      "listen_addresses = '127.0.0.1'\n"
      "port = " + std::to_string(port_) + "\n"
      "unix_socket_directories = '" + socket_dir_ + "'\n"
      "fsync = on\n"
      "synchronous_commit = on\n"
      "full_page_writes = on\n"
      "wal_level = replica\n"
      "max_wal_senders = 10\n"
      "max_replication_slots = 10\n"
      "wal_keep_size = '64MB'\n"
      "hot_standby = on\n"
      "shared_buffers = '16MB'\n"
      "max_connections = 50\n"
      "password_encryption = 'scram-sha-256'\n"
      "lc_messages = 'C'\n"
      "log_line_prefix = '%m [%p] %q%u@%d '\n"
      "logging_collector = off\n";
  if (!primary_conninfo_.empty()) text += "primary_conninfo = '" + primary_conninfo_ + "'\n";
  for (const auto& line : options_.settings) text += line + "\n";
  WriteServerFile(data_ + "/bud.conf", text, PostgresUser());
}

bool PostgresServer::TryStart(std::string* error) {
  WriteConf();
  auto r = RunCommand(AsServerUser({BinDir() + "/pg_ctl", "start", "-D", data_, "-l", log_, "-w",
                                    "-t", "60", "-s"}),
                      Millis(90000));
  if (r.exit_code == 0) return true;
  *error = "pg_ctl start failed (exit " + std::to_string(r.exit_code) + ")\nstdout: " + r.out +
           "\nstderr: " + r.err + "\nserver log:\n" + LogTail();
  return false;
}

void PostgresServer::Start() {
  if (running()) return;
  std::string error;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (TryStart(&error)) {
      started_once_ = true;
      return;
    }
    // Someone took the port between our probe and the server's bind: try another one (only
    // before anything depends on the port, i.e. on the first start).
    const bool clash = error.find("could not bind") != std::string::npos ||
                       error.find("Address already in use") != std::string::npos;
    if (!clash || started_once_) break;
    port_ = PickPort();
  }
  throw HarnessError(error);
}

int PostgresServer::PostmasterPid() const {
  std::string pidfile = ReadFileOrEmpty(data_ + "/postmaster.pid");
  if (pidfile.empty()) return 0;
  return std::atoi(pidfile.c_str());
}

std::vector<int> PostgresServer::ServerPids() const {
  const int pid = PostmasterPid();
  if (pid <= 0 || !Alive(pid)) return {};
  std::vector<int> out = ChildrenOf(pid);
  out.push_back(pid);
  return out;
}

bool PostgresServer::running() const {
  int pid = PostmasterPid();
  return pid > 0 && Alive(pid);
}

void PostgresServer::Stop() {
  if (data_.empty() || !running()) return;
  const std::string pg_ctl = BinDir() + "/pg_ctl";
  auto r = RunCommand(AsServerUser({pg_ctl, "stop", "-D", data_, "-m", "fast", "-w", "-t", "30", "-s"}),
                      Millis(45000));
  if (r.exit_code == 0 && !running()) return;
  r = RunCommand(AsServerUser({pg_ctl, "stop", "-D", data_, "-m", "immediate", "-w", "-t", "15", "-s"}),
                 Millis(30000));
  if (r.exit_code == 0 && !running()) return;
  Kill();
}

void PostgresServer::Kill() {
  const int pid = PostmasterPid();
  if (pid <= 0 || !Alive(pid)) return;
  // Stop the postmaster first so it starts no new process, then kill everything it started.
  ::kill(pid, SIGSTOP);
  std::vector<int> children = ChildrenOf(pid);
  ::kill(pid, SIGKILL);
  for (int c : children) ::kill(c, SIGKILL);
  const auto deadline = SteadyClock::now() + std::chrono::seconds(30);
  auto all_gone = [&] {
    if (Alive(pid)) return false;
    for (int c : children) {
      if (Alive(c)) return false;
    }
    return true;
  };
  while (!all_gone()) {
    if (SteadyClock::now() > deadline) {
      throw HarnessError("PostgreSQL in " + dir_ + " survived SIGKILL for 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Nobody may reap the postmaster here (it was not our child, and the init process of a
  // container may not reap), and the server takes a zombie's pid for a running postmaster.
  // Everything it ran is dead, so its lock files are stale.
  if (ProcState(pid) == 'Z') {
    ::unlink((data_ + "/postmaster.pid").c_str());
    ::unlink((socket_dir_ + "/.s.PGSQL." + std::to_string(port_) + ".lock").c_str());
  }
}

void PostgresServer::Promote() {
  auto r = RunCommand(AsServerUser({BinDir() + "/pg_ctl", "promote", "-D", data_, "-w", "-t", "60", "-s"}),
                      Millis(90000));
  Check(r, "pg_ctl promote", LogTail());
  primary_conninfo_.clear();
}

std::string PostgresServer::ConnString() const { return ConnString(options_.database); }

std::string PostgresServer::ConnString(const std::string& database) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=" + database +
         " user=" + options_.user;
}

std::string PostgresServer::AdminConnString(const std::string& database) const {
  return "host=" + socket_dir_ + " port=" + std::to_string(port_) + " dbname=" + database +
         " user=postgres";
}

namespace {
std::unique_ptr<storage::pg::Connection> AdminConnect(const std::string& conninfo,
                                                      const std::string& log_tail) {
  storage::pg::ConnectOptions o;
  o.conninfo = conninfo;
  o.read_write = false;
  o.application_name = "bud-test-admin";
  auto c = storage::pg::Connection::Open(o);
  if (!c.ok()) throw HarnessError(c.status().ToString() + "\nserver log:\n" + log_tail);
  return std::move(c).value();
}
}  // namespace

void PostgresServer::AdminExec(const std::string& sql, const std::string& database) const {
  auto c = AdminConnect(AdminConnString(database), LogTail());
  Status s = c->ExecScript(sql);
  if (!s.ok()) throw HarnessError(s.ToString());
}

std::string PostgresServer::AdminQuery(const std::string& sql, const std::string& database) const {
  auto c = AdminConnect(AdminConnString(database), LogTail());
  auto rows = c->Exec(sql);
  if (!rows.ok()) throw HarnessError(rows.status().ToString());
  if (rows->empty() || rows->columns() == 0) return "";
  return rows->Text(0, 0);
}

void PostgresServer::SetSynchronousStandbys(const std::string& value) const {
  AdminExec("ALTER SYSTEM SET synchronous_standby_names = '" + value + "'");
  AdminExec("SELECT pg_reload_conf()");
  // pg_reload_conf only signals the postmaster. Once a new session sees the value, the
  // postmaster has reloaded and signalled every backend, and each existing session takes it
  // before its next command; without this wait a COMMIT right after could still run under the
  // old setting on a loaded machine.
  WaitUntil("synchronous_standby_names = '" + value + "' in effect", Millis(30000),
            [&] { return AdminQuery("SHOW synchronous_standby_names") == value; });
}

std::string PostgresServer::LogTail(int lines) const { return TailOfFile(log_, lines); }

}  // namespace bud::test
