// Integration test harness: a real Budstikke exchange (address registry, broker and one
// integration point per agency, each its own process) in a temporary directory.
//
// Operation: an Exchange makes a development CA and agency certificates with scripts/dev-ca (real
// openssl), writes TOML configs like scripts/demo does, starts bud-registry and bud-broker on
// OS-chosen ports of 127.0.0.1 (read back from their endpoint files), registers the agencies with
// `bud-registry add` and starts a bud-ip per agency. Each process runs in its own folder and
// appends its stdout and stderr to <folder>/<name>.log. Processes can be stopped (SIGTERM, then
// SIGKILL after a grace period), killed (SIGKILL) and started again with the same config and the
// same store. After the first start of a listener the harness pins the port it got into its config
// (listen = the published endpoint), so a restarted registry or broker comes back where the
// others expect it.
//
// Deadlines: every wait polls with a deadline and never blocks without one. A wait that times
// out, or that sees a process exit which the test did not stop, throws HarnessError with a
// message naming what was awaited and the tails of the relevant logs; Catch2 reports it as the
// test's failure.
//
// Ownership: an Exchange owns its processes and its TempDir (kept when BUD_KEEP_TEST_DIRS is set).
// Its destructor stops every process still running, also when a test fails by exception; each
// child also asks the kernel (PR_SET_PDEATHSIG) to be killed if the test binary dies, so a crash
// leaves no stray processes behind either.
//
// Profiling: when BUD_BROKER_WRAPPER is set (e.g. "/usr/bin/valgrind --tool=callgrind"; the first
// word is a path, not looked up in PATH), the broker is
// started under that command (its words split on spaces), as docs/benchmarks.md does.
//
// Limitations: Linux only (fork/exec, pipe2, prctl). Not thread-safe: use an Exchange from the
// test's thread only. Status() runs `bud-ip status` once per call (tens of milliseconds).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace bud::test {

using Millis = std::chrono::milliseconds;

// Organisation numbers with valid mod-11 check digits. kAgencyA and kAgencyB are registered by
// default; kUnregistered never is.
inline constexpr const char* kAgencyA = "910076787";
inline constexpr const char* kAgencyB = "910075918";
inline constexpr const char* kUnregistered = "974760673";
inline constexpr const char* kProcess = "urn:no:difi:profile:arkivmelding:administrasjon:ver1.0";
inline constexpr const char* kDocumentType = "urn:no:difi:arkivmelding:xsd::arkivmelding";

// The default time a wait allows for something that normally takes well under a second.
inline constexpr Millis kDefaultWait{30000};

// A harness failure: a deadline passed, a process died, a command failed. what() says what
// was expected and carries the relevant log tails.
class HarnessError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// Small helpers

// The contents of a file; throws HarnessError when it cannot be read.
std::string ReadFile(const std::string& path);
// The contents of a file, or "" when it does not exist or cannot be read.
std::string ReadFileOrEmpty(const std::string& path);
// How often `what` occurs in `text` (overlapping occurrences counted).
size_t CountOccurrences(const std::string& text, const std::string& what);
// Writes (replaces) a file, creating nothing but the file; throws HarnessError on failure.
void WriteFile(const std::string& path, const std::string& data);
// The last `lines` lines of a file, or a note that it is missing.
std::string TailOfFile(const std::string& path, int lines = 40);
// Entry names of a folder, sorted; hidden ones (".name") only when asked. Empty if missing.
std::vector<std::string> ListDir(const std::string& path, bool include_hidden = false);
bool PathExists(const std::string& path);
// `n` pseudo-random bytes, the same for the same seed on every run and machine.
std::string SeededBytes(size_t n, uint32_t seed);

// Outcome of a command run to completion.
struct CommandResult {
  int exit_code = -1;  // exit status, or 128 + signal number when killed by a signal
  std::string out;     // standard output
  std::string err;     // standard error
};

// Runs argv[0] (a path) with the given arguments, stdin from /dev/null, capturing stdout and
// stderr. Kills it and throws HarnessError when it has not finished within `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv, Millis timeout = kDefaultWait);

// Polls `done` every `every` until it returns true. When `timeout` passes first, throws
// HarnessError with "timed out after N ms waiting for <what>" followed by `details()`.
void WaitUntil(const std::string& what, Millis timeout, const std::function<bool()>& done,
               const std::function<std::string()>& details = {}, Millis every = Millis(50));

// ---------------------------------------------------------------------------------------------
// Process

// One child process started with fork/exec, its stdout and stderr appended to a log file.
// The destructor kills it (SIGKILL) and reaps it if it is still running.
class Process {
 public:
  // `argv[0]` is the binary's path; `work_dir` is the child's working directory.
  Process(std::string name, std::vector<std::string> argv, std::string work_dir,
          std::string log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Starts the process. Throws HarnessError when it is already running or cannot be started
  // (the exec failure is reported synchronously).
  void Start();
  // SIGTERM, then SIGKILL when it has not exited within `grace`. No-op when not running.
  void Stop(Millis grace = Millis(5000));
  // SIGKILL and reap. No-op when not running.
  void Kill();
  // Stop() then Start().
  void Restart(Millis grace = Millis(5000));

  // Whether the child is alive (reaps it when it has exited).
  bool Running();
  // True from Start() until Stop()/Kill(): a process that is not Running() while this is true
  // died on its own.
  bool expected_running() const { return expected_running_; }
  // "running", "exited with status N" or "killed by signal N".
  std::string Describe();
  // The exit status once it has exited (128 + signal number when killed), else nullopt.
  std::optional<int> ExitCode();
  std::string LogTail(int lines = 40) const { return TailOfFile(log_path_, lines); }
  // What the current (or last) run wrote to the log so far.
  std::string LogSinceStart() const;
  // Waits until the current run's log contains `text`; throws HarnessError when the process
  // exits first or `timeout` passes.
  void WaitForLog(const std::string& text, Millis timeout = kDefaultWait);

  const std::string& name() const { return name_; }
  const std::string& log_path() const { return log_path_; }
  const std::string& work_dir() const { return work_dir_; }
  pid_t pid() const { return pid_; }
  int starts() const { return starts_; }

 private:
  void Reap(bool block);
  void Signal(int sig);

  std::string name_;
  std::vector<std::string> argv_;
  std::string work_dir_;
  std::string log_path_;
  pid_t pid_ = -1;        // -1 when not started or reaped
  int wait_status_ = 0;   // of the last reaped child
  size_t log_start_ = 0;  // log size when the current run started
  bool reaped_ = false;   // a child has been started and reaped since
  bool expected_running_ = false;
  int starts_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Exchange

struct ExchangeOptions {
  // Agencies to make certificates for, register and start an integration point for.
  std::vector<std::string> agencies = {kAgencyA, kAgencyB};
  // What every registered agency accepts.
  std::vector<std::string> processes = {kProcess};
  std::vector<std::string> document_types = {kDocumentType};
  // Start the integration points in the constructor (otherwise call StartIp).
  bool start_ips = true;
  // CURVE with ZAP on every link, as in production (keys made with each binary's `keygen`).
  bool curve = true;
  // Extra settings: key -> TOML value (e.g. {"max_attempts", "3"}) for [broker], and
  // "section.key" -> TOML value (e.g. {"broker.credit", "4"}) for every integration point.
  std::map<std::string, std::string> broker_settings;
  std::map<std::string, std::string> ip_settings;
  // Per agency, applied after ip_settings: orgnr -> "section.key" -> TOML value.
  std::map<std::string, std::map<std::string, std::string>> agency_settings;
  // More integration points of an agency, each on a message channel ([next_move]
  // message_channel): (orgnr, channel). Each shares the agency's keys and certificates and is
  // named "<orgnr>-<channel>" (ChannelPoint) wherever the functions below take an orgnr; it
  // starts after the agencies' own points.
  std::vector<std::pair<std::string, std::string>> channel_points;
  // Every integration point (and the broker) serves HTTP on 127.0.0.1 with an OS-picked port
  // (see HttpBase / BrokerHttpBase).
  bool http = false;
  // Key types of every agency's signing and encryption certificates (scripts/dev-ca --sign /
  // --enc): "rsa" (2048 bits, as Norwegian enterprise certificates are), "ec" (P-256).
  std::string sign_key = "rsa";
  std::string enc_key = "rsa";
  // The broker's store on PostgreSQL instead of SQLite: a libpq connection string and its
  // password file (tests/support/postgres.h gives both). Empty: broker/broker.db (SQLite).
  std::string broker_pg_url;
  std::string broker_pg_password_file;
  // Put before the broker's command line (e.g. strace); BUD_BROKER_WRAPPER when empty.
  std::vector<std::string> broker_wrapper;
  // The registry's store on PostgreSQL ([store] backend = "postgresql"): a libpq connection
  // string and a password file (tests/support/postgres.h gives both). Empty: SQLite,
  // registry/registry.db.
  std::string registry_store_url;
  std::string registry_store_password_file;
  // More than one broker / registry: brokers 2.. run in broker2/, broker3/ ... with the first's
  // config (store, CURVE key pair) and their own port; registries 2.. likewise in registry2/ ...
  // Several brokers need a store they can share (broker_pg_url), several registries too
  // (registry_store_url). Every integration point, the broker(s) and the registry entries list
  // them all in order ([broker] endpoints, [registry] endpoints, add --broker ...). The extra
  // brokers are started once in the constructor to learn their port and then stopped (unless
  // start_extra_brokers), so a test decides when each runs; extra registries keep running.
  int brokers = 1;
  int registries = 1;
  bool start_extra_brokers = false;
  // The same as brokers = 1 + extra_brokers with start_extra_brokers (every broker running from
  // the start; broker(n), broker_endpoint(n) ... below count from 0).
  int extra_brokers = 0;
  // Extra settings for the broker's [registry] section (written with curve): key -> TOML value.
  std::map<std::string, std::string> broker_registry_settings;
};

// Attachment name -> bytes.
using Files = std::map<std::string, std::string>;

// A running exchange. All paths are absolute. Orgnr arguments are 9 digits.
class Exchange {
 public:
  // Builds and starts the whole exchange; throws HarnessError (after cleaning up what it
  // started) when any step fails.
  explicit Exchange(ExchangeOptions options = {});
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  const std::string& root() const { return dir_.path(); }
  std::string AgencyDir(const std::string& org) const;
  std::string Outbox(const std::string& org) const;
  std::string Inbox(const std::string& org) const;
  std::string IpConfig(const std::string& org) const;

  Process& registry() { return *registry_; }
  Process& broker() { return *broker_; }
  Process& ip(const std::string& org);

  // (Re)start a process with its config and store and wait until it is ready: the registry and
  // the broker have published their endpoint file, an integration point has opened its store
  // and logged that it runs. The matching Stop/Kill is on the Process.
  void StartRegistry();
  void StartBroker();
  void StartIp(const std::string& org);
  const std::string& registry_endpoint() const { return registry_endpoint_; }
  // Broker n (0: broker()), as the tests of several brokers on one store use them.
  Process& broker(size_t n) { return broker_at(n); }
  size_t broker_count() const { return 1 + extra_brokers_.size(); }
  void StartBroker(size_t n) { StartBrokerAt(n); }
  const std::string& broker_endpoint(size_t n) const;
  std::string BrokerHttpBase(size_t n) const;
  // Broker / registry number i (0: broker() / registry()), see ExchangeOptions::brokers.
  Process& broker_at(size_t i);
  Process& registry_at(size_t i);
  void StartBrokerAt(size_t i);
  void StartRegistryAt(size_t i);
  // Every broker's / registry's endpoint, in the order the configs list them.
  std::vector<std::string> broker_endpoints() const;
  std::vector<std::string> registry_endpoints() const;
  // The config file of registry number i (for `bud-registry` verbs on it).
  std::string RegistryConfig(size_t i = 0) const;
  const std::string& broker_endpoint() const { return broker_endpoint_; }
  // "http://127.0.0.1:<port>" of an integration point's / the broker's HTTP server
  // (ExchangeOptions::http).
  std::string HttpBase(const std::string& org) const;
  std::string BrokerHttpBase() const;
  // The value of a counter or gauge on an integration point's /metrics (ExchangeOptions::http),
  // or -1 when it cannot be read.
  int64_t IpMetric(const std::string& org, const std::string& name) const;
  // CURVE public keys (Z85); empty without CURVE.
  const std::string& registry_public_key() const { return registry_key_; }
  const std::string& broker_public_key() const { return broker_key_; }
  // An agency's CURVE key file (TOML: public_key, secret_key).
  std::string CurveKeyFile(const std::string& org) const { return AgencyDir(org) + "/keys/curve.key"; }

  // message.json for a message from outbox to `receiver_org` with the default process and
  // document type; add or remove keys before dropping it.
  static nlohmann::json Metadata(const std::string& receiver_org);
  // Drops a folder into `org`'s outbox atomically: written as outbox/.tmp-<n>-<name>/ (hidden, so
  // the integration point ignores it), message.json last, then renamed to outbox/<name>.
  void DropFolder(const std::string& org, const std::string& name, const std::string& message_json,
                  const Files& files);

  // The name of an agency's point on a message channel (ExchangeOptions::channel_points).
  static std::string ChannelPoint(const std::string& org, const std::string& channel) {
    return org + "-" + channel;
  }

  // Waits for inbox/<id>/message.json at `org` and returns it parsed.
  nlohmann::json WaitForInbox(const std::string& org, const std::string& message_id,
                              Millis timeout = kDefaultWait);
  // Waits for outbox/.failed/<name>/error.txt at `org` and returns its text.
  std::string WaitForFailed(const std::string& org, const std::string& name,
                            Millis timeout = kDefaultWait);

  // `bud-ip status --config <org's config> --json`, parsed (an array of messages).
  nlohmann::json Status(const std::string& org);
  // The entries of `status` with this message id (normally zero or one).
  static std::vector<nlohmann::json> Find(const nlohmann::json& status,
                                          const std::string& message_id);
  // The status names of an entry's history, oldest first.
  static std::vector<std::string> History(const nlohmann::json& entry);
  // Waits until `org`'s store has the message with `status` in its history and returns the
  // entry. Fails at once when the message ends in FEIL (unless FEIL is awaited).
  nlohmann::json WaitForStatus(const std::string& org, const std::string& message_id,
                               const std::string& status, Millis timeout = kDefaultWait);

  // Throws HarnessError when a process the test did not stop has exited.
  void CheckAlive();
  // Tails of every process log, for failure messages.
  std::string Diagnostics(int lines = 25);

 private:
  struct Agency {
    std::string org;      // the organisation number (a channel point's agency's)
    std::string channel;  // "" for an agency's own point
    std::unique_ptr<Process> ip;
  };

  void Run(const std::vector<std::string>& argv, const std::string& what);
  void WriteRegistryConfig(const std::string& listen);
  void WriteBrokerConfig(const std::string& listen);
  void WriteIpConfig(const std::string& org);
  std::string WaitForEndpoint(Process& p, const std::string& file);
  std::string BrokerDir(size_t i) const;
  std::string RegistryDir(size_t i) const;
  void WriteBrokerConfigAt(size_t i, const std::string& listen);
  void WriteRegistryConfigAt(size_t i, const std::string& listen);
  void StopAll();

  TempDir dir_;  // declared first: destroyed after the processes are gone
  std::string registry_key_;
  std::string broker_key_;
  ExchangeOptions options_;
  std::unique_ptr<Process> registry_;
  std::unique_ptr<Process> broker_;
  std::map<std::string, Agency> agencies_;
  std::string registry_endpoint_;
  std::string broker_endpoint_;
  std::vector<std::unique_ptr<Process>> extra_brokers_;     // brokers 2.. (index 0 = broker 2)
  std::vector<std::unique_ptr<Process>> extra_registries_;  // registries 2..
  std::vector<std::string> extra_broker_endpoints_;
  std::vector<std::string> extra_registry_endpoints_;
  int drops_ = 0;
};

}  // namespace bud::test
