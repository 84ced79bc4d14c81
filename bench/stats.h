// Figures of a benchmark run and how runs are summarised: latency percentiles, medians of runs,
// peak resident memory read from /proc, and the table/JSON printers.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace bud::bench {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Latency samples in nanoseconds.
class Latencies {
 public:
  void Add(int64_t ns) { samples_.push_back(ns); }
  size_t size() const { return samples_.size(); }
  // The q-quantile (0..1) in milliseconds, nearest rank; nullopt without samples.
  std::optional<double> QuantileMs(double q);

 private:
  std::vector<int64_t> samples_;
  bool sorted_ = false;
};

// What one run of one scenario against one system measured. Absent figures are not measured.
struct Figures {
  std::string scenario;  // "ingest", "pass-through", ...
  std::string system;    // "budstikke" (SQLite), "budstikke-pg", "budstikke-pg-sync", "rabbitmq",
                         // "nats", "nats-sync"
  std::optional<double> msgs_per_s;
  std::optional<double> p50_ms, p99_ms, p999_ms;
  std::string latency_of;  // what the latency measures, e.g. "submit -> ACCEPTED"
  std::map<std::string, double> peak_rss_mib;  // process -> VmHWM
  std::map<std::string, double> extra;         // named figures, e.g. "restart_welcome_ms"
  std::string note;
  bool skipped = false;
};

// n per second over [from_ns, to_ns]; 0 for an empty interval.
double PerSecond(int64_t n, int64_t from_ns, int64_t to_ns);
// p50, p99 and p999 of `l` into `f`, and what they measure.
void SetLatency(Figures& f, Latencies& l, std::string what);

// Median of each figure over the runs of one (scenario, system); the note of the first run.
Figures MedianOf(const std::vector<Figures>& runs);

// VmHWM (peak resident set) or VmRSS of a live process in MiB, from /proc/<pid>/status.
std::optional<double> PeakRssMib(pid_t pid);
std::optional<double> RssMib(pid_t pid);

// CPU time (user + system, all threads) a live process has used, in seconds.
std::optional<double> CpuSeconds(pid_t pid);
// The user-space part of it (the kernel's part, file system work, moves more between runs).
std::optional<double> UserCpuSeconds(pid_t pid);

nlohmann::json ToJson(const Figures& f);
// The results table, one line per figure set, plus the ratio lines.
std::string Table(const std::vector<Figures>& all);
// "ours / peer" lines for every scenario measured on both.
std::vector<std::string> Ratios(const std::vector<Figures>& all);

}  // namespace bud::bench
