// Integration test harness. See harness.h.
#include "tests/integration/harness.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <httplib.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <thread>

extern char** environ;

namespace bud::test {

namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

std::string ErrnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string Timestamp() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", std::localtime(&t));
  return buf;
}

std::string Join(const std::vector<std::string>& parts, const std::string& sep = " ") {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// A TOML basic string with its quotes.
std::string Toml(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// Configs as scripts/demo writes them, paths relative to the config file. The broker and the
// integration points get short timers so that lost sessions, unanswered submits and
// unacknowledged deliveries recover within a test.
constexpr char kRegistryToml[] = R"([registry]
listen = {}
endpoint_file = "registry.endpoint"
trust_anchor = "../ca/ca.pem"
)";

constexpr char kBrokerToml[] = R"([broker]
listen = {}
endpoint_file = "broker.endpoint"
{}
heartbeat_ms = 1000
ack_timeout_ms = 5000
)";

// Sections of an integration point's config: section -> key -> TOML value.
using TomlSections = std::map<std::string, std::map<std::string, std::string>>;

std::string RenderToml(const TomlSections& sections) {
  std::string out;
  for (const auto& [section, keys] : sections) {
    out += "[" + section + "]\n";
    for (const auto& [k, v] : keys) out += k + " = " + v + "\n";
  }
  return out;
}

// The Z85 public key in a key file written by `keygen`.
std::string PublicKeyOf(const std::string& key_file) {
  const std::string text = ReadFile(key_file);
  const std::string tag = "public_key = \"";
  auto at = text.find(tag);
  if (at == std::string::npos || text.size() < at + tag.size() + 40) {
    throw HarnessError("no public_key in " + key_file);
  }
  return text.substr(at + tag.size(), 40);
}

// argv as the NULL-terminated char* array execve wants; the strings stay owned by `argv`.
std::vector<char*> ArgvPointers(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

// In the child after fork: die with the test binary, then exec. Only async-signal-safe calls.
[[noreturn]] void ExecChild(char* const* argv, const char* dir, pid_t parent, int report_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
  if (dir != nullptr && ::chdir(dir) != 0) {
    int e = errno;
    (void)!::write(report_fd, &e, sizeof e);
    ::_exit(127);
  }
  ::execve(argv[0], argv, environ);
  int e = errno;
  (void)!::write(report_fd, &e, sizeof e);
  ::_exit(127);
}

// After fork in the parent: reads the exec report pipe. Returns 0 when exec succeeded (the
// pipe closed on exec), otherwise the child's errno.
int ReadExecReport(int fd) {
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(fd, &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  return n == static_cast<ssize_t>(sizeof child_errno) ? child_errno : 0;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "stopped (wait status " + std::to_string(status) + ")";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Small helpers

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw HarnessError("cannot read '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t CountOccurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) throw HarnessError("cannot write '" + path + "'");
}

std::string TailOfFile(const std::string& path, int lines) {
  if (!PathExists(path)) return "(no file " + path + ")\n";
  std::string text = ReadFileOrEmpty(path);
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (int n = 0; n < lines && pos > 0; ++n) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
  }
  std::string tail = text.substr(pos == 0 ? 0 : pos + 1);
  if (!tail.empty() && tail.back() != '\n') tail += '\n';
  return tail;
}

std::vector<std::string> ListDir(const std::string& path, bool include_hidden) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!include_hidden && !name.empty() && name.front() == '.') continue;
    out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string SeededBytes(size_t n, uint32_t seed) {
  // mt19937's output sequence is fixed by the standard; distributions are not, so none is used.
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(gen() & 0xff);
  return out;
}

CommandResult RunCommand(const std::vector<std::string>& argv, Millis timeout) {
  if (argv.empty()) throw HarnessError("RunCommand: empty argv");
  int out_pipe[2], err_pipe[2], report[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0 ||
      ::pipe2(report, O_CLOEXEC) != 0) {
    throw HarnessError(ErrnoText("pipe"));
  }
  auto args = ArgvPointers(argv);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw HarnessError(ErrnoText("fork"));
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ExecChild(args.data(), nullptr, parent, report[1]);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ::close(report[1]);
  const int exec_errno = ReadExecReport(report[0]);

  CommandResult result;
  const auto deadline = SteadyClock::now() + timeout;
  bool timed_out = false;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  while (!timed_out) {  // both pipes closed: the command has (nearly) finished
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) throw HarnessError(ErrnoText("waitpid"));
    if (SteadyClock::now() >= deadline)
      timed_out = true;
    else
      std::this_thread::sleep_for(Millis(10));
  }
  if (timed_out) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (exec_errno != 0) {
    throw HarnessError("cannot execute '" + argv[0] + "': " + std::strerror(exec_errno));
  }
  if (timed_out) {
    throw HarnessError("'" + Join(argv) + "' did not finish within " +
                       std::to_string(timeout.count()) + " ms; stderr so far:\n" + result.err);
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

void WaitUntil(const std::string& what, Millis timeout, const std::function<bool()>& done,
               const std::function<std::string()>& details, Millis every) {
  const auto start = SteadyClock::now();
  const auto deadline = start + timeout;
  for (;;) {
    if (done()) return;
    if (SteadyClock::now() >= deadline) break;
    std::this_thread::sleep_for(every);
  }
  std::string msg =
      "timed out after " + std::to_string(timeout.count()) + " ms waiting for " + what;
  if (details) msg += "\n" + details();
  throw HarnessError(msg);
}

// ---------------------------------------------------------------------------------------------
// Process

Process::Process(std::string name, std::vector<std::string> argv, std::string work_dir,
                 std::string log_path)
    : name_(std::move(name)),
      argv_(std::move(argv)),
      work_dir_(std::move(work_dir)),
      log_path_(std::move(log_path)) {}

Process::~Process() {
  try {
    Kill();
  } catch (...) {
    // A destructor must not throw; the child has PR_SET_PDEATHSIG as a last resort.
  }
}

void Process::Start() {
  if (pid_ > 0 && Running()) throw HarnessError(name_ + " is already running");
  const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw HarnessError(ErrnoText("cannot open log '" + log_path_ + "'"));
  struct stat st;
  log_start_ = ::fstat(log_fd, &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
  const std::string banner = "=== harness: start #" + std::to_string(starts_ + 1) + " at " +
                             Timestamp() + ": " + Join(argv_) + "\n";
  (void)!::write(log_fd, banner.data(), banner.size());
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    ::close(log_fd);
    throw HarnessError(ErrnoText("pipe"));
  }
  auto args = ArgvPointers(argv_);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    ::close(report[0]);
    ::close(report[1]);
    throw HarnessError(ErrnoText("fork"));
  }
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ExecChild(args.data(), work_dir_.c_str(), parent, report[1]);
  }
  ::close(log_fd);
  ::close(report[1]);
  pid_ = pid;
  reaped_ = false;
  expected_running_ = true;
  ++starts_;
  const int exec_errno = ReadExecReport(report[0]);
  if (exec_errno != 0) {
    Reap(/*block=*/true);
    expected_running_ = false;
    throw HarnessError("cannot start " + name_ + " ('" + argv_[0] + "' in '" + work_dir_ +
                       "'): " + std::strerror(exec_errno));
  }
}

void Process::Reap(bool block) {
  if (pid_ <= 0 || reaped_) return;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (r == pid_) {
      wait_status_ = status;
      reaped_ = true;
      return;
    }
    if (r == 0) return;
    if (errno == EINTR) continue;
    reaped_ = true;  // ECHILD: nothing to reap any more
    return;
  }
}

bool Process::Running() {
  if (pid_ <= 0) return false;
  Reap(/*block=*/false);
  return !reaped_;
}

void Process::Signal(int sig) {
  if (Running()) ::kill(pid_, sig);
}

void Process::Stop(Millis grace) {
  expected_running_ = false;
  if (!Running()) return;
  Signal(SIGTERM);
  const auto deadline = SteadyClock::now() + grace;
  while (Running() && SteadyClock::now() < deadline) std::this_thread::sleep_for(Millis(10));
  if (Running()) {
    const std::string note = "=== harness: " + name_ + " ignored SIGTERM for " +
                             std::to_string(grace.count()) + " ms; sending SIGKILL\n";
    if (int fd = ::open(log_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC); fd >= 0) {
      (void)!::write(fd, note.data(), note.size());
      ::close(fd);
    }
    Kill();
  }
}

void Process::Kill() {
  expected_running_ = false;
  if (!Running()) return;
  ::kill(pid_, SIGKILL);
  Reap(/*block=*/true);  // SIGKILL cannot be caught; the wait is short
}

std::string Process::LogSinceStart() const {
  std::string text = ReadFileOrEmpty(log_path_);
  return log_start_ < text.size() ? text.substr(log_start_) : "";
}

void Process::WaitForLog(const std::string& text, Millis timeout) {
  WaitUntil(
      name_ + " to log '" + text + "'", timeout,
      [&] {
        if (LogSinceStart().find(text) != std::string::npos) return true;
        if (!Running()) {
          throw HarnessError(name_ + " " + Describe() + " before logging '" + text +
                             "'; log tail (" + log_path_ + "):\n" + LogTail());
        }
        return false;
      },
      [&] { return name_ + " log tail (" + log_path_ + "):\n" + LogTail(); });
}

void Process::Restart(Millis grace) {
  Stop(grace);
  Start();
}

std::optional<int> Process::ExitCode() {
  if (pid_ <= 0 || Running()) return std::nullopt;
  return WIFEXITED(wait_status_) ? WEXITSTATUS(wait_status_) : 128 + WTERMSIG(wait_status_);
}

std::string Process::Describe() {
  if (pid_ <= 0) return "not started";
  if (Running()) return "running (pid " + std::to_string(pid_) + ")";
  return DescribeWaitStatus(wait_status_);
}

// ---------------------------------------------------------------------------------------------
// Exchange

Exchange::Exchange(ExchangeOptions options) : options_(std::move(options)) {
  if (options_.extra_brokers > 0) {
    options_.brokers = 1 + options_.extra_brokers;
    options_.start_extra_brokers = true;
  }
  if (options_.brokers > 1 && options_.broker_pg_url.empty()) {
    throw HarnessError("several brokers need broker_pg_url: they share a PostgreSQL store");
  }
  const std::string ca = root() + "/ca";
  Run({BUD_SOURCE_DIR "/scripts/dev-ca", "init", ca}, "making the development CA");

  fs::create_directories(root() + "/registry");
  fs::create_directories(root() + "/broker");
  const std::string registry_config = root() + "/registry/registry.toml";
  registry_ = std::make_unique<Process>(
      "bud-registry",
      std::vector<std::string>{BUD_REGISTRY_BIN, "run", "--config", registry_config},
      root() + "/registry", root() + "/registry/bud-registry.log");
  std::vector<std::string> broker_argv = {BUD_BROKER_BIN, "run", "--config",
                                          root() + "/broker/broker.toml"};
  if (!options_.broker_wrapper.empty()) {
    broker_argv.insert(broker_argv.begin(), options_.broker_wrapper.begin(),
                       options_.broker_wrapper.end());
  } else if (const char* wrapper = std::getenv("BUD_BROKER_WRAPPER")) {
    std::istringstream words(wrapper);
    std::vector<std::string> prefix{std::istream_iterator<std::string>(words), {}};
    broker_argv.insert(broker_argv.begin(), prefix.begin(), prefix.end());
  }
  broker_ = std::make_unique<Process>("bud-broker", broker_argv, root() + "/broker",
                                      root() + "/broker/bud-broker.log");
  if (options_.curve) {
    Run({BUD_REGISTRY_BIN, "keygen", "--out", root() + "/registry/curve.key"}, "registry keygen");
    Run({BUD_BROKER_BIN, "keygen", "--out", root() + "/broker/curve.key"}, "broker keygen");
    registry_key_ = PublicKeyOf(root() + "/registry/curve.key");
    broker_key_ = PublicKeyOf(root() + "/broker/curve.key");
  }
  WriteRegistryConfig("tcp://127.0.0.1:*");
  for (int i = 1; i < options_.brokers; ++i) {
    const std::string dir = BrokerDir(static_cast<size_t>(i));
    fs::create_directories(dir);
    if (options_.curve) fs::copy_file(root() + "/broker/curve.key", dir + "/curve.key");
    std::vector<std::string> argv = broker_argv;
    std::replace(argv.begin(), argv.end(), root() + "/broker/broker.toml", dir + "/broker.toml");
    extra_brokers_.push_back(std::make_unique<Process>(fmt::format("bud-broker {}", i + 1), argv,
                                                       dir, dir + "/bud-broker.log"));
  }
  for (int i = 1; i < options_.registries; ++i) {
    const std::string dir = RegistryDir(static_cast<size_t>(i));
    fs::create_directories(dir);
    if (options_.curve) fs::copy_file(root() + "/registry/curve.key", dir + "/curve.key");
    extra_registries_.push_back(std::make_unique<Process>(
        fmt::format("bud-registry {}", i + 1),
        std::vector<std::string>{BUD_REGISTRY_BIN, "run", "--config", dir + "/registry.toml"}, dir,
        dir + "/bud-registry.log"));
    WriteRegistryConfigAt(static_cast<size_t>(i), "tcp://127.0.0.1:*");
  }

  for (const auto& org : options_.agencies) {
    const std::string dir = AgencyDir(org);
    fs::create_directories(dir + "/outbox");
    fs::create_directories(dir + "/inbox");
    Run({BUD_SOURCE_DIR "/scripts/dev-ca", "issue", ca, org, dir + "/keys", "--name",
         "Test agency " + org, "--sign", options_.sign_key, "--enc", options_.enc_key},
        "issuing certificates for " + org);
    if (options_.curve) Run({BUD_IP_BIN, "keygen", "--out", CurveKeyFile(org)}, "ip keygen " + org);
    Agency a;
    a.org = org;
    a.ip = std::make_unique<Process>(
        "bud-ip " + org, std::vector<std::string>{BUD_IP_BIN, "run", "--config", IpConfig(org)},
        dir, dir + "/bud-ip.log");
    agencies_.emplace(org, std::move(a));
  }
  for (const auto& [org, channel] : options_.channel_points) {
    const std::string name = ChannelPoint(org, channel);
    const std::string dir = AgencyDir(name);
    fs::create_directories(dir + "/outbox");
    fs::create_directories(dir + "/inbox");
    // The agency's keys and certificates (and CURVE key pair): one organisation, two points.
    fs::copy(AgencyDir(org) + "/keys", dir + "/keys", fs::copy_options::recursive);
    Agency a;
    a.org = org;
    a.channel = channel;
    a.ip = std::make_unique<Process>(
        "bud-ip " + name, std::vector<std::string>{BUD_IP_BIN, "run", "--config", IpConfig(name)},
        dir, dir + "/bud-ip.log");
    agencies_.emplace(name, std::move(a));
  }

  try {
    StartRegistry();
    for (size_t i = 1; i < static_cast<size_t>(options_.registries); ++i) StartRegistryAt(i);
    WriteBrokerConfig("tcp://127.0.0.1:*");  // needs the registries' endpoints
    // Extra brokers first, one at a time: each learns its port, then stops unless asked not to.
    for (size_t i = 1; i < static_cast<size_t>(options_.brokers); ++i) {
      WriteBrokerConfigAt(i, "tcp://127.0.0.1:*");
      StartBrokerAt(i);
      if (!options_.start_extra_brokers) broker_at(i).Stop();
    }
    StartBroker();
    for (const auto& org : options_.agencies) {
      WriteIpConfig(org);
      const std::string keys = AgencyDir(org) + "/keys";
      std::vector<std::string> add = {BUD_REGISTRY_BIN, "add", "--config", registry_config};
      add.insert(add.end(), {"--orgnr", org, "--name", "Test agency " + org});
      add.insert(add.end(), {"--signing-cert", keys + "/signing.pem"});
      add.insert(add.end(), {"--encryption-cert", keys + "/encryption.pem"});
      for (const auto& b : broker_endpoints()) add.insert(add.end(), {"--broker", b});
      if (options_.curve) {
        add.insert(add.end(), {"--curve-public-key", PublicKeyOf(CurveKeyFile(org))});
      }
      for (const auto& p : options_.processes) add.insert(add.end(), {"--process", p});
      for (const auto& d : options_.document_types) add.insert(add.end(), {"--document-type", d});
      Run(add, "registering " + org);
    }
    for (const auto& [org, channel] : options_.channel_points) {
      WriteIpConfig(ChannelPoint(org, channel));
    }
    if (options_.start_ips) {
      for (const auto& org : options_.agencies) StartIp(org);
      for (const auto& [org, channel] : options_.channel_points) {
        StartIp(ChannelPoint(org, channel));
      }
    }
  } catch (...) {
    StopAll();
    throw;
  }
}

Exchange::~Exchange() { StopAll(); }

void Exchange::StopAll() {
  // SIGTERM to all first so they stop in parallel, then SIGKILL whatever is left.
  std::vector<Process*> all;
  for (auto& [org, a] : agencies_) all.push_back(a.ip.get());
  if (broker_) all.push_back(broker_.get());
  for (auto& b : extra_brokers_) all.push_back(b.get());
  if (registry_) all.push_back(registry_.get());
  for (auto& r : extra_registries_) all.push_back(r.get());
  for (Process* p : all) {
    if (p->Running()) ::kill(p->pid(), SIGTERM);
  }
  const auto deadline = SteadyClock::now() + Millis(2000);
  for (Process* p : all) {
    while (p->Running() && SteadyClock::now() < deadline) std::this_thread::sleep_for(Millis(10));
    p->Kill();
  }
}

int64_t Exchange::IpMetric(const std::string& org, const std::string& name) const {
  httplib::Client c(HttpBase(org));
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(20, 0);
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return -1;
  const size_t at = r->body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return static_cast<int64_t>(std::stod(r->body.substr(at + name.size() + 2)));
}

std::string Exchange::HttpBase(const std::string& org) const {
  std::string addr = ReadFileOrEmpty(AgencyDir(org) + "/http.addr");
  while (!addr.empty() && (addr.back() == '\n' || addr.back() == ' ')) addr.pop_back();
  if (addr.empty()) throw HarnessError("integration point " + org + " published no HTTP address");
  return "http://" + addr;
}

std::string Exchange::BrokerHttpBase() const {
  std::string addr = ReadFileOrEmpty(root() + "/broker/http.addr");
  while (!addr.empty() && (addr.back() == '\n' || addr.back() == ' ')) addr.pop_back();
  if (addr.empty()) throw HarnessError("the broker published no HTTP address");
  return "http://" + addr;
}

std::string Exchange::AgencyDir(const std::string& org) const {
  return root() + "/agencies/" + org;
}
std::string Exchange::Outbox(const std::string& org) const { return AgencyDir(org) + "/outbox"; }
std::string Exchange::Inbox(const std::string& org) const { return AgencyDir(org) + "/inbox"; }
std::string Exchange::IpConfig(const std::string& org) const { return AgencyDir(org) + "/ip.toml"; }

Process& Exchange::ip(const std::string& org) {
  auto it = agencies_.find(org);
  if (it == agencies_.end()) throw HarnessError("no agency " + org + " in this exchange");
  return *it->second.ip;
}

void Exchange::Run(const std::vector<std::string>& argv, const std::string& what) {
  CommandResult r = RunCommand(argv, Millis(60000));
  if (r.exit_code != 0) {
    throw HarnessError(what + " failed (exit " + std::to_string(r.exit_code) + "): " + Join(argv) +
                       "\nstdout:\n" + r.out + "stderr:\n" + r.err);
  }
}

void Exchange::WriteRegistryConfig(const std::string& listen) { WriteRegistryConfigAt(0, listen); }

void Exchange::WriteRegistryConfigAt(size_t i, const std::string& listen) {
  std::string text = fmt::format(kRegistryToml, Toml(listen));
  if (options_.curve) {
    text += "curve_key_file = \"curve.key\"\nallowed_client_keys = [" + Toml(broker_key_) + "]\n";
  }
  if (options_.registry_store_url.empty()) {
    text += "store = \"registry.db\"\n";
  } else {
    text += "\n[store]\nbackend = \"postgresql\"\nurl = " + Toml(options_.registry_store_url) + "\n";
    if (!options_.registry_store_password_file.empty()) {
      text += "password_file = " + Toml(options_.registry_store_password_file) + "\n";
    }
  }
  WriteFile(RegistryDir(i) + "/registry.toml", text);
}

void Exchange::WriteBrokerConfig(const std::string& listen) { WriteBrokerConfigAt(0, listen); }

void Exchange::WriteBrokerConfigAt(size_t i, const std::string& listen) {
  const bool pg = !options_.broker_pg_url.empty();
  std::string text =
      fmt::format(kBrokerToml, Toml(listen), pg ? "" : "store = \"broker.db\"");
  for (const auto& [k, v] : options_.broker_settings) text += k + " = " + v + "\n";
  if (options_.curve) {
    std::vector<std::string> registries;
    for (const auto& r : registry_endpoints()) registries.push_back(Toml(r));
    text += "curve_key_file = \"curve.key\"\n[registry]\n";
    text += registries.size() == 1 ? "endpoint = " + registries[0] + "\n"
                                   : "endpoints = [" + Join(registries, ", ") + "]\n";
    text += "server_key = " + Toml(registry_key_) + "\n";
    for (const auto& [k, v] : options_.broker_registry_settings) text += k + " = " + v + "\n";
  }
  if (options_.http) text += "[http]\nlisten = \"127.0.0.1:0\"\nport_file = \"http.addr\"\n";
  if (pg) {
    text += "[store]\nbackend = \"postgresql\"\nurl = " + Toml(options_.broker_pg_url) +
            "\npassword_file = " + Toml(options_.broker_pg_password_file) + "\n";
  }
  WriteFile(BrokerDir(i) + "/broker.toml", text);
}

void Exchange::WriteIpConfig(const std::string& point) {
  const Agency& agency = agencies_.at(point);
  const std::string& org = agency.org;
  TomlSections t;
  t["agency"]["orgnr"] = Toml(org);
  if (!agency.channel.empty()) t["next_move"]["message_channel"] = Toml(agency.channel);
  t["paths"] = {{"outbox", "\"outbox\""}, {"inbox", "\"inbox\""}, {"store", "\"ip.db\""}};
  t["keys"] = {{"signing_key", "\"keys/signing.key\""},
               {"signing_cert", "\"keys/signing.pem\""},
               {"encryption_key", "\"keys/encryption.key\""},
               {"encryption_cert", "\"keys/encryption.pem\""},
               {"trust_anchor", "\"../../ca/ca.pem\""}};
  auto toml_list = [](const std::vector<std::string>& v) {
    std::vector<std::string> quoted;
    for (const auto& e : v) quoted.push_back(Toml(e));
    return "[" + Join(quoted, ", ") + "]";
  };
  if (options_.registries > 1) {
    t["registry"]["endpoints"] = toml_list(registry_endpoints());
  } else {
    t["registry"]["endpoint"] = Toml(registry_endpoint_);
  }
  t["broker"] = {{"heartbeat_ms", "500"}, {"submit_timeout_ms", "5000"}};
  if (options_.brokers > 1) {
    t["broker"]["endpoints"] = toml_list(broker_endpoints());
  } else {
    t["broker"]["endpoint"] = Toml(broker_endpoint_);
  }
  t["outbox"]["rescan_ms"] = "200";
  if (options_.curve) {
    t["keys"]["curve_key_file"] = "\"keys/curve.key\"";
    t["registry"]["server_key"] = Toml(registry_key_);
    t["broker"]["server_key"] = Toml(broker_key_);
  }
  if (options_.http) {
    t["http"]["listen"] = "\"127.0.0.1:0\"";
    t["http"]["port_file"] = "\"http.addr\"";
  }
  auto apply = [&](const std::map<std::string, std::string>& settings) {
    for (const auto& [dotted, value] : settings) {
      auto dot = dotted.find('.');
      if (dot == std::string::npos) throw HarnessError("ip setting key needs a section: " + dotted);
      t[dotted.substr(0, dot)][dotted.substr(dot + 1)] = value;
    }
  };
  apply(options_.ip_settings);
  if (auto it = options_.agency_settings.find(point); it != options_.agency_settings.end()) {
    apply(it->second);
  }
  WriteFile(IpConfig(point), RenderToml(t));
}

std::string Exchange::WaitForEndpoint(Process& p, const std::string& file) {
  std::string endpoint;
  WaitUntil(
      p.name() + " to publish its endpoint in " + file, Millis(15000),
      [&] {
        if (!p.Running()) {
          throw HarnessError(p.name() + " " + p.Describe() + " before publishing its endpoint " +
                             file + "; log tail:\n" + p.LogTail());
        }
        endpoint = ReadFileOrEmpty(file);
        while (!endpoint.empty() && (endpoint.back() == '\n' || endpoint.back() == '\r')) {
          endpoint.pop_back();
        }
        return !endpoint.empty();
      },
      [&] { return p.name() + " log tail:\n" + p.LogTail(); });
  return endpoint;
}

void Exchange::StartRegistry() {
  const std::string file = root() + "/registry/registry.endpoint";
  fs::remove(file);
  registry_->Start();
  std::string ep = WaitForEndpoint(*registry_, file);
  if (registry_endpoint_.empty()) {
    registry_endpoint_ = ep;
    WriteRegistryConfig(ep);  // a restart binds the same port
  } else if (ep != registry_endpoint_) {
    throw HarnessError("restarted bud-registry listens on " + ep + ", not " + registry_endpoint_);
  }
}

void Exchange::StartBroker() {
  const std::string file = root() + "/broker/broker.endpoint";
  fs::remove(file);
  broker_->Start();
  std::string ep = WaitForEndpoint(*broker_, file);
  if (broker_endpoint_.empty()) {
    broker_endpoint_ = ep;
    WriteBrokerConfig(ep);  // a restart binds the same port
  } else if (ep != broker_endpoint_) {
    throw HarnessError("restarted bud-broker listens on " + ep + ", not " + broker_endpoint_);
  }
}

const std::string& Exchange::broker_endpoint(size_t n) const {
  if (n == 0) return broker_endpoint_;
  if (n > extra_broker_endpoints_.size()) throw HarnessError(fmt::format("no broker {}", n));
  return extra_broker_endpoints_[n - 1];
}

std::string Exchange::BrokerHttpBase(size_t n) const {
  std::string addr = ReadFileOrEmpty(BrokerDir(n) + "/http.addr");
  while (!addr.empty() && (addr.back() == '\n' || addr.back() == ' ')) addr.pop_back();
  if (addr.empty()) throw HarnessError(fmt::format("broker {} published no HTTP address", n));
  return "http://" + addr;
}

std::string Exchange::BrokerDir(size_t i) const {
  return i == 0 ? root() + "/broker" : fmt::format("{}/broker{}", root(), i + 1);
}

std::string Exchange::RegistryDir(size_t i) const {
  return i == 0 ? root() + "/registry" : fmt::format("{}/registry{}", root(), i + 1);
}

std::string Exchange::RegistryConfig(size_t i) const { return RegistryDir(i) + "/registry.toml"; }

Process& Exchange::broker_at(size_t i) {
  if (i == 0) return *broker_;
  if (i > extra_brokers_.size()) throw HarnessError(fmt::format("no broker number {}", i + 1));
  return *extra_brokers_[i - 1];
}

Process& Exchange::registry_at(size_t i) {
  if (i == 0) return *registry_;
  if (i > extra_registries_.size()) throw HarnessError(fmt::format("no registry number {}", i + 1));
  return *extra_registries_[i - 1];
}

std::vector<std::string> Exchange::broker_endpoints() const {
  std::vector<std::string> out = {broker_endpoint_};
  out.insert(out.end(), extra_broker_endpoints_.begin(), extra_broker_endpoints_.end());
  return out;
}

std::vector<std::string> Exchange::registry_endpoints() const {
  std::vector<std::string> out = {registry_endpoint_};
  out.insert(out.end(), extra_registry_endpoints_.begin(), extra_registry_endpoints_.end());
  return out;
}

void Exchange::StartBrokerAt(size_t i) {
  if (i == 0) return StartBroker();
  Process& p = broker_at(i);
  const std::string file = BrokerDir(i) + "/broker.endpoint";
  fs::remove(file);
  p.Start();
  std::string ep = WaitForEndpoint(p, file);
  if (extra_broker_endpoints_.size() < i) {
    extra_broker_endpoints_.push_back(ep);
    WriteBrokerConfigAt(i, ep);  // a restart binds the same port
  } else if (ep != extra_broker_endpoints_[i - 1]) {
    throw HarnessError(p.name() + " listens on " + ep + ", not " + extra_broker_endpoints_[i - 1]);
  }
}

void Exchange::StartRegistryAt(size_t i) {
  if (i == 0) return StartRegistry();
  Process& p = registry_at(i);
  const std::string file = RegistryDir(i) + "/registry.endpoint";
  fs::remove(file);
  p.Start();
  std::string ep = WaitForEndpoint(p, file);
  if (extra_registry_endpoints_.size() < i) {
    extra_registry_endpoints_.push_back(ep);
    WriteRegistryConfigAt(i, ep);
  } else if (ep != extra_registry_endpoints_[i - 1]) {
    throw HarnessError(p.name() + " listens on " + ep + ", not " +
                       extra_registry_endpoints_[i - 1]);
  }
}

void Exchange::StartIp(const std::string& org) {
  Process& p = ip(org);
  p.Start();
  // Logged once the keys are loaded and the store is open (and migrated). Until then a
  // concurrent `bud-ip status` may race the first migration (see the [!mayfail] test).
  p.WaitForLog("integration point 0192:" + agencies_.at(org).org + " running", Millis(15000));
}

nlohmann::json Exchange::Metadata(const std::string& receiver_org) {
  return {
      {"receiver", "0192:" + receiver_org}, {"process", kProcess}, {"documentType", kDocumentType}};
}

void Exchange::DropFolder(const std::string& org, const std::string& name,
                          const std::string& message_json, const Files& files) {
  const std::string tmp = Outbox(org) + "/.tmp-" + std::to_string(++drops_) + "-" + name;
  fs::create_directories(tmp);
  for (const auto& [file, bytes] : files) WriteFile(tmp + "/" + file, bytes);
  WriteFile(tmp + "/message.json", message_json);
  const std::string target = Outbox(org) + "/" + name;
  if (PathExists(target)) throw HarnessError("outbox folder " + target + " already exists");
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) throw HarnessError("cannot rename " + tmp + " to " + target + ": " + ec.message());
}

nlohmann::json Exchange::WaitForInbox(const std::string& org, const std::string& message_id,
                                      Millis timeout) {
  const std::string path = Inbox(org) + "/" + message_id + "/message.json";
  WaitUntil(
      "message " + message_id + " in the inbox of " + org + " (" + path + ")", timeout,
      [&] {
        CheckAlive();
        return PathExists(path);
      },
      [&] { return Diagnostics(); }, Millis(50));
  const std::string text = ReadFile(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw HarnessError(path + " is not valid JSON (" + e.what() + "):\n" + text);
  }
}

std::string Exchange::WaitForFailed(const std::string& org, const std::string& name,
                                    Millis timeout) {
  const std::string path = Outbox(org) + "/.failed/" + name + "/error.txt";
  std::string text;
  // error.txt is written in place after the folder is moved: wait until it is complete (it ends
  // with a newline), not just present.
  WaitUntil(
      "outbox folder '" + name + "' of " + org + " to be refused into " + path, timeout,
      [&] {
        CheckAlive();
        text = ReadFileOrEmpty(path);
        return !text.empty() && text.back() == '\n';
      },
      [&] {
        return "outbox now holds: " + Join(ListDir(Outbox(org), true)) +
               "\n.failed holds: " + Join(ListDir(Outbox(org) + "/.failed", true)) + "\n" +
               Diagnostics();
      });
  return text;
}

nlohmann::json Exchange::Status(const std::string& org) {
  CommandResult r =
      RunCommand({BUD_IP_BIN, "status", "--config", IpConfig(org), "--json"}, Millis(20000));
  if (r.exit_code != 0) {
    throw HarnessError("bud-ip status for " + org + " failed (exit " + std::to_string(r.exit_code) +
                       "):\n" + r.err + r.out);
  }
  try {
    nlohmann::json j = nlohmann::json::parse(r.out);
    if (!j.is_array()) throw HarnessError("bud-ip status --json did not print an array:\n" + r.out);
    return j;
  } catch (const nlohmann::json::exception& e) {
    throw HarnessError(std::string("bud-ip status --json printed invalid JSON (") + e.what() +
                       "):\n" + r.out);
  }
}

std::vector<nlohmann::json> Exchange::Find(const nlohmann::json& status,
                                           const std::string& message_id) {
  std::vector<nlohmann::json> out;
  for (const auto& m : status) {
    if (m.value("messageId", "") == message_id) out.push_back(m);
  }
  return out;
}

std::vector<std::string> Exchange::History(const nlohmann::json& entry) {
  std::vector<std::string> out;
  for (const auto& h : entry.value("history", nlohmann::json::array())) {
    out.push_back(h.value("status", ""));
  }
  return out;
}

nlohmann::json Exchange::WaitForStatus(const std::string& org, const std::string& message_id,
                                       const std::string& status, Millis timeout) {
  nlohmann::json found;
  std::string last = "(not listed)";
  WaitUntil(
      "message " + message_id + " to reach " + status + " at " + org, timeout,
      [&] {
        CheckAlive();
        auto entries = Find(Status(org), message_id);
        if (entries.empty()) return false;
        const auto& e = entries.front();
        last = e.dump(2);
        auto hist = History(e);
        if (std::find(hist.begin(), hist.end(), status) != hist.end()) {
          found = e;
          return true;
        }
        if (status != "FEIL" && e.value("status", "") == "FEIL") {
          throw HarnessError("message " + message_id + " at " + org + " ended in FEIL while " +
                             "waiting for " + status + ":\n" + last + "\n" + Diagnostics());
        }
        return false;
      },
      [&] { return "last seen at " + org + ":\n" + last + "\n" + Diagnostics(); }, Millis(150));
  return found;
}

void Exchange::CheckAlive() {
  std::vector<Process*> all = {registry_.get(), broker_.get()};
  for (auto& [org, a] : agencies_) all.push_back(a.ip.get());
  for (Process* p : all) {
    if (p != nullptr && p->expected_running() && !p->Running()) {
      throw HarnessError(p->name() + " " + p->Describe() + " unexpectedly; log tail (" +
                         p->log_path() + "):\n" + p->LogTail(60));
    }
  }
}

std::string Exchange::Diagnostics(int lines) {
  std::string out = "exchange in " + root() + " (set BUD_KEEP_TEST_DIRS=1 to keep it)\n";
  std::vector<Process*> all = {registry_.get(), broker_.get()};
  for (auto& [org, a] : agencies_) all.push_back(a.ip.get());
  for (Process* p : all) {
    if (p == nullptr) continue;
    out += "--- " + p->name() + " (" + p->Describe() + "), last lines of " + p->log_path() + ":\n" +
           p->LogTail(lines);
  }
  return out;
}

}  // namespace bud::test
