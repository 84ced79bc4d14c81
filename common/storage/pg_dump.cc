// pg_dump of a service's tables. See pg_dump.h.
#include "common/storage/pg_dump.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/fs.h"

extern char** environ;

namespace bud::storage::pg {
namespace {

struct CommandOutcome {
  int exit_code = -1;  // 128 + signal when killed
  std::string err;     // its standard error (bounded)
  std::string out;     // its standard output (bounded)
};

// Runs argv (argv[0] looked up in PATH) with `extra_env` added, stdout and stderr to files in
// `scratch`; kills it after `timeout`.
Result<CommandOutcome> Run(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                           const std::string& scratch, std::chrono::seconds timeout) {
  const std::string out_path = scratch + "/stdout";
  const std::string err_path = scratch + "/stderr";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view v(*e);
    // Ours win; a PGPASSWORD from outside must not override the password file.
    if (v.rfind("PGPASSWORD=", 0) == 0 || v.rfind("PGPASSFILE=", 0) == 0) continue;
    env_store.emplace_back(v);
  }
  for (const auto& e : extra_env) env_store.push_back(e);
  std::vector<char*> envp, args;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_store = argv;
  for (auto& a : argv_store) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    return Status(rc == ENOENT ? Code::kNotFound : Code::kIo,
                  fmt::format("cannot run {}: {}{}", argv[0], std::strerror(rc),
                              rc == ENOENT ? " (install Debian's postgresql-client)" : ""));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  bool timed_out = false;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return ErrnoStatus(errno, "waitpid");
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CommandOutcome o;
  auto read_bounded = [](const std::string& path) {
    auto text = ReadFile(path);
    std::string s = text.ok() ? *text : "";
    if (s.size() > 65536) s = s.substr(s.size() - 65536);
    return s;
  };
  o.err = read_bounded(err_path);
  o.out = read_bounded(out_path);
  if (timed_out) {
    return Status(Code::kTimeout, fmt::format("{} did not finish within {} s", argv[0], timeout.count()));
  }
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return o;
}

// A libpq password file line matching everything (":" and "\" escaped).
std::string PassfileLine(const std::string& password) {
  std::string escaped;
  for (char c : password) {
    if (c == ':' || c == '\\') escaped += '\\';
    escaped += c;
  }
  return "*:*:*:*:" + escaped + "\n";
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (auto& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

}  // namespace

Result<DumpInfo> DumpTables(const ConnectOptions& options, const std::vector<std::string>& table_patterns,
                            const std::string& out, std::chrono::seconds timeout) {
  struct stat st {};
  if (::lstat(out.c_str(), &st) == 0) {
    return Status(Code::kAlreadyExists, fmt::format("'{}' exists; a backup never replaces a file", out));
  }
  const std::string where = Describe(options.conninfo);
  // The connection string is checked as Connection::Open would (no password in it).
  {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(options.conninfo.c_str(), &err);
    if (opts == nullptr) {
      std::string why = err != nullptr ? Trimmed(err) : "out of memory";
      if (err != nullptr) PQfreemem(err);
      return Status(Code::kConfig, fmt::format("cannot parse the PostgreSQL connection string: {}", why));
    }
    bool has_password = false;
    for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
      if (std::string_view(o->keyword) == "password" && o->val != nullptr && *o->val) has_password = true;
    }
    PQconninfoFree(opts);
    if (has_password) {
      return Status(Code::kConfig, fmt::format("postgresql {}: the connection string carries a "
                                               "password; put it in a password file instead",
                                               where));
    }
  }
  std::string password;
  if (!options.password_file.empty()) {
    auto pw = ReadPasswordFile(options.password_file);
    if (!pw.ok()) return pw.status().Context(fmt::format("postgresql {}", where));
    password = std::move(pw).value();
  }

  std::string scratch_tmpl = (std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp")) +
                             "/bud-pgdump-XXXXXX";
  if (::mkdtemp(scratch_tmpl.data()) == nullptr) return ErrnoStatus(errno, "mkdtemp for pg_dump");
  const std::string scratch = scratch_tmpl;
  struct Cleanup {
    std::string dir;
    ~Cleanup() { (void)RemoveAll(dir); }
  } cleanup{scratch};

  std::vector<std::string> env = {"PGCONNECT_TIMEOUT=" + std::to_string(options.connect_timeout_seconds),
                                  "PGAPPNAME=" + options.application_name + "-backup"};
  if (!password.empty()) {
    const std::string passfile = scratch + "/passfile";
    BUD_RETURN_IF_ERROR(WriteNewFile(passfile, PassfileLine(password), 0600));
    env.push_back("PGPASSFILE=" + passfile);
  } else {
    env.push_back("PGPASSFILE=/dev/null");
  }

  // The dump goes to a temporary name beside `out`, so the rename is atomic.
  std::string tmp = out + ".partial-XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) return ErrnoStatus(errno, fmt::format("cannot create a file beside '{}'", out));
  ::close(fd);
  auto remove_tmp = [&] { ::unlink(tmp.c_str()); };

  std::vector<std::string> argv = {"pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                                   "--file=" + tmp, "--dbname=" + options.conninfo};
  for (const auto& t : table_patterns) argv.push_back("--table=" + t);
  auto dumped = Run(argv, env, scratch, timeout);
  if (!dumped.ok()) {
    remove_tmp();
    return dumped.status().Context(fmt::format("postgresql {}: pg_dump", where));
  }
  if (dumped->exit_code != 0) {
    remove_tmp();
    std::string why = Trimmed(dumped->err);
    Code code = Code::kUnavailable;
    if (why.find("password authentication failed") != std::string::npos ||
        why.find("no password supplied") != std::string::npos) {
      code = Code::kConfig;
    } else if (why.find("database \"") != std::string::npos && why.find("does not exist") != std::string::npos) {
      code = Code::kNotFound;
    } else if (why.find("no matching tables") != std::string::npos) {
      code = Code::kNotFound;
      why += " (no schema yet: `db init` creates it)";
    }
    return Status(code, fmt::format("postgresql {}: pg_dump failed (exit {}): {}", where,
                                    dumped->exit_code, why));
  }
  auto listed = Run({"pg_restore", "--list", tmp}, env, scratch, std::chrono::seconds(600));
  if (!listed.ok() || listed->exit_code != 0) {
    remove_tmp();
    return Status(Code::kCorrupt, fmt::format("pg_restore cannot read the dump of {}: {}", where,
                                              listed.ok() ? Trimmed(listed->err) : listed.status().ToString()));
  }
  DumpInfo info;
  for (size_t pos = 0; pos < listed->out.size();) {
    size_t nl = listed->out.find('\n', pos);
    std::string_view line(listed->out.data() + pos, (nl == std::string::npos ? listed->out.size() : nl) - pos);
    if (!line.empty() && line[0] != ';') ++info.entries;
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  if (::stat(tmp.c_str(), &st) == 0) info.bytes = st.st_size;
  Status synced = FsyncPath(tmp);
  if (!synced.ok()) {
    remove_tmp();
    return synced;
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_NOREPLACE) != 0) {
    Status s = ErrnoStatus(errno, fmt::format("cannot rename '{}' to '{}'", tmp, out));
    remove_tmp();
    return s;
  }
  BUD_RETURN_IF_ERROR(FsyncPath(ParentDir(out)));
  return info;
}

}  // namespace bud::storage::pg
