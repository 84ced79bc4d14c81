// Percentiles, medians, /proc readings and the printers. See stats.h.
#include "bench/stats.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <utility>

#include "bench/peers.h"

namespace bud::bench {

std::optional<double> Latencies::QuantileMs(double q) {
  if (samples_.empty()) return std::nullopt;
  if (!sorted_) {
    std::sort(samples_.begin(), samples_.end());
    sorted_ = true;
  }
  // Nearest rank: the smallest sample with at least q of all samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(samples_.size())));
  rank = std::clamp<size_t>(rank, 1, samples_.size());
  return static_cast<double>(samples_[rank - 1]) / 1e6;
}

namespace {

std::optional<double> Median(std::vector<double> v) {
  if (v.empty()) return std::nullopt;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::optional<double> MedianField(const std::vector<Figures>& runs,
                                  std::optional<double> Figures::*field) {
  std::vector<double> v;
  for (const auto& r : runs) {
    if (r.*field) v.push_back(*(r.*field));
  }
  return Median(std::move(v));
}

std::map<std::string, double> MedianMap(const std::vector<Figures>& runs,
                                        std::map<std::string, double> Figures::*field) {
  std::map<std::string, std::vector<double>> all;
  for (const auto& r : runs) {
    for (const auto& [k, v] : r.*field) all[k].push_back(v);
  }
  std::map<std::string, double> out;
  for (auto& [k, v] : all) out[k] = *Median(std::move(v));
  return out;
}

std::optional<double> StatusKib(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      return std::stod(line.substr(key.size() + 1));  // "  12345 kB"
    }
  }
  return std::nullopt;
}

std::string Cell(std::optional<double> v, const char* format) {
  return v ? fmt::format(fmt::runtime(format), *v) : "-";
}

}  // namespace

double PerSecond(int64_t n, int64_t from_ns, int64_t to_ns) {
  return to_ns > from_ns ? static_cast<double>(n) * 1e9 / static_cast<double>(to_ns - from_ns) : 0;
}

void SetLatency(Figures& f, Latencies& l, std::string what) {
  f.p50_ms = l.QuantileMs(0.50);
  f.p99_ms = l.QuantileMs(0.99);
  f.p999_ms = l.QuantileMs(0.999);
  f.latency_of = std::move(what);
}

Figures PeerFigures(const Peer& peer, const std::string& scenario, const LoadSpec& spec,
                    bool consume, PeerOutcome& o, const std::string& ack_what,
                    const std::string& process) {
  Figures f;
  f.scenario = scenario;
  f.system = peer.system;
  if (consume) {
    f.msgs_per_s = PerSecond(o.completed, o.start_ns, o.last_complete_ns);
    SetLatency(f, o.deliver_latency, "publish -> delivered to the consumer");
    f.extra["messages"] = static_cast<double>(o.completed);
  } else {
    f.msgs_per_s = PerSecond(o.accepted, o.start_ns, o.last_accept_ns);
    SetLatency(f, o.ack_latency, "publish -> " + ack_what);
    f.extra["messages"] = static_cast<double>(o.accepted);
  }
  if (spec.rate > 0) f.extra["rate"] = spec.rate;
  f.note = peer.note;
  if (o.saturated) f.note += "; SATURATED (open-loop cap)";
  if (peer.pid > 0) {
    if (auto v = PeakRssMib(peer.pid)) f.peak_rss_mib[process] = *v;
  }
  return f;
}

Figures MedianOf(const std::vector<Figures>& runs) {
  Figures m = runs.front();
  m.msgs_per_s = MedianField(runs, &Figures::msgs_per_s);
  m.p50_ms = MedianField(runs, &Figures::p50_ms);
  m.p99_ms = MedianField(runs, &Figures::p99_ms);
  m.p999_ms = MedianField(runs, &Figures::p999_ms);
  m.peak_rss_mib = MedianMap(runs, &Figures::peak_rss_mib);
  m.extra = MedianMap(runs, &Figures::extra);
  m.extra["runs"] = static_cast<double>(runs.size());
  return m;
}

std::optional<double> PeakRssMib(pid_t pid) {
  auto kib = StatusKib(pid, "VmHWM");
  if (!kib) return std::nullopt;
  return *kib / 1024;
}

std::optional<double> RssMib(pid_t pid) {
  auto kib = StatusKib(pid, "VmRSS");
  if (!kib) return std::nullopt;
  return *kib / 1024;
}

namespace {
// utime and stime of `pid` in seconds.
std::optional<std::pair<double, double>> CpuTimes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(paren + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {  // fields 14 and 15: utime, stime (ticks)
    if (i == 14) utime = std::stod(f);
    if (i == 15) stime = std::stod(f);
  }
  const auto tck = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return std::make_pair(utime / tck, stime / tck);
}
}  // namespace

std::optional<double> CpuSeconds(pid_t pid) {
  auto t = CpuTimes(pid);
  if (!t) return std::nullopt;
  return t->first + t->second;
}

std::optional<double> UserCpuSeconds(pid_t pid) {
  auto t = CpuTimes(pid);
  if (!t) return std::nullopt;
  return t->first;
}

nlohmann::json ToJson(const Figures& f) {
  nlohmann::json j;
  j["scenario"] = f.scenario;
  j["system"] = f.system;
  auto opt = [&](const char* key, std::optional<double> v) {
    j[key] = v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  };
  opt("msgs_per_s", f.msgs_per_s);
  opt("p50_ms", f.p50_ms);
  opt("p99_ms", f.p99_ms);
  opt("p999_ms", f.p999_ms);
  j["latency_of"] = f.latency_of;
  j["peak_rss_mib"] = f.peak_rss_mib;
  j["extra"] = f.extra;
  j["note"] = f.note;
  j["skipped"] = f.skipped;
  return j;
}

std::string Table(const std::vector<Figures>& all) {
  std::string out =
      fmt::format("{:<22} {:<17} {:>11} {:>9} {:>9} {:>9}  {}\n", "scenario", "system", "msgs/s",
                  "p50 ms", "p99 ms", "p999 ms", "peak RSS MiB (VmHWM) / other figures");
  out += std::string(127, '-') + "\n";
  for (const auto& f : all) {
    if (f.skipped) {
      out += fmt::format("{:<22} {:<17} skipped: {}\n", f.scenario, f.system, f.note);
      continue;
    }
    std::string rest;
    for (const auto& [p, v] : f.peak_rss_mib) rest += fmt::format("{}={:.1f} ", p, v);
    for (const auto& [k, v] : f.extra) {
      if (k != "runs") rest += fmt::format("{}={:.6g} ", k, v);
    }
    out += fmt::format("{:<22} {:<17} {:>11} {:>9} {:>9} {:>9}  {}\n", f.scenario, f.system,
                       Cell(f.msgs_per_s, "{:.0f}"), Cell(f.p50_ms, "{:.2f}"),
                       Cell(f.p99_ms, "{:.2f}"), Cell(f.p999_ms, "{:.2f}"), rest);
    if (!f.latency_of.empty() || !f.note.empty()) {
      out += fmt::format("{:<22}   latency: {}{}{}\n", "", f.latency_of, f.note.empty() ? "" : "; ",
                         f.note);
    }
  }
  return out;
}

namespace {
bool Ours(const std::string& system) { return system.starts_with("budstikke"); }
}  // namespace

std::vector<std::string> Ratios(const std::vector<Figures>& all) {
  std::vector<std::string> out;
  for (const auto& ours : all) {
    if (!Ours(ours.system) || ours.skipped) continue;
    for (const auto& peer : all) {
      // Each of our stores against every peer, and PostgreSQL against SQLite ("budstikke").
      const bool against =
          !Ours(peer.system) || (ours.system != "budstikke" && peer.system == "budstikke");
      if (!against || peer.skipped || peer.scenario != ours.scenario) continue;
      std::string line =
          fmt::format("{:<22} {:>17} / {:<10}", ours.scenario, ours.system, peer.system);
      // At half load each system runs at half its own peak: only the latency compares.
      if (ours.scenario != "half-load" && ours.msgs_per_s && peer.msgs_per_s &&
          *peer.msgs_per_s > 0) {
        line += fmt::format("  msgs/s {:.2f}x", *ours.msgs_per_s / *peer.msgs_per_s);
      }
      if (ours.p99_ms && peer.p99_ms && *peer.p99_ms > 0) {
        line += fmt::format("  p99 latency {:.2f}x", *ours.p99_ms / *peer.p99_ms);
      }
      out.push_back(line);
    }
  }
  return out;
}

}  // namespace bud::bench
