// bud-broker admin verbs. See admin.h.
#include "broker/admin.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "broker/sqlite_queue_store.h"
#include "broker/store_factory.h"
#include "common/clock.h"

namespace bud::broker {

namespace {

// "512 B", "12.3 KiB", "4.0 MiB", "1.2 GiB".
std::string HumanBytes(int64_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  double v = static_cast<double>(n);
  const char* unit = "KiB";
  for (const char* u : {"KiB", "MiB", "GiB", "TiB"}) {
    v /= 1024;
    unit = u;
    if (v < 1024) break;
  }
  return fmt::format("{:.1f} {}", v, unit);
}

// "45s", "12m05s", "3h07m", "2d04h".
std::string HumanAge(int64_t ms) {
  int64_t s = std::max<int64_t>(ms, 0) / 1000;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

double Seconds(int64_t ms) { return static_cast<double>(std::max<int64_t>(ms, 0)) / 1000.0; }

}  // namespace

std::string RenderStats(const StoreStats& stats, const std::string& store_path, int64_t now_ms,
                        bool json) {
  if (json) {
    nlohmann::json receivers = nlohmann::json::array();
    for (const auto& r : stats.receivers) {
      receivers.push_back({{"receiver", r.receiver},
                           {"channel", r.channel},
                           {"queued", r.queued},
                           {"bytes", r.bytes},
                           {"oldestReceivedAt", FormatTime(r.oldest_received_ms)},
                           {"oldestAgeSeconds", Seconds(now_ms - r.oldest_received_ms)},
                           {"retried", r.retried},
                           {"maxAttempts", r.max_attempts}});
    }
    nlohmann::json senders = nlohmann::json::array();
    for (const auto& s : stats.senders) {
      senders.push_back({{"sender", s.sender},
                         {"channel", s.channel},
                         {"pendingNotices", s.pending},
                         {"oldestNoticeAt", FormatTime(s.oldest_at_ms)},
                         {"oldestAgeSeconds", Seconds(now_ms - s.oldest_at_ms)}});
    }
    nlohmann::json totals = {
        {"queued", stats.queued}, {"bytes", stats.bytes}, {"pendingNotices", stats.notices}};
    if (stats.seen_ids >= 0) totals["seenIds"] = stats.seen_ids;
    if (stats.reports >= 0) totals["reports"] = stats.reports;
    nlohmann::json out = {{"store", store_path},      {"schemaVersion", stats.schema_version},
                          {"at", FormatTime(now_ms)}, {"receivers", receivers},
                          {"senders", senders},       {"totals", totals}};
    if (stats.sessions_known) {
      nlohmann::json sessions = nlohmann::json::array();
      for (const auto& s : stats.sessions) {
        sessions.push_back(
            {{"org", s.org}, {"broker", s.holder}, {"leaseUntil", FormatTime(s.expires_ms)}});
      }
      out["sessions"] = std::move(sessions);
    }
    return out.dump(2) + "\n";
  }

  std::string out = fmt::format("broker store {} (schema version {}) at {}\n\n", store_path,
                                stats.schema_version, FormatTime(now_ms));
  // A point with a message channel has a queue of its own: "-" is the point without one.
  auto channel = [](const std::string& c) { return c.empty() ? std::string("-") : c; };
  out += "Queued for delivery, per receiver and message channel:\n";
  if (stats.receivers.empty()) {
    out += "  (nothing queued)\n";
  } else {
    out += fmt::format("  {:<16} {:<25} {:>8} {:>11} {:>10} {:>8} {:>12}\n", "RECEIVER", "CHANNEL",
                       "MESSAGES", "BYTES", "OLDEST", "RETRIED", "MAX ATTEMPTS");
    for (const auto& r : stats.receivers) {
      out += fmt::format("  {:<16} {:<25} {:>8} {:>11} {:>10} {:>8} {:>12}\n", r.receiver,
                         channel(r.channel), r.queued, HumanBytes(r.bytes),
                         HumanAge(now_ms - r.oldest_received_ms), r.retried, r.max_attempts);
    }
  }
  out += "\nStatus notices waiting for their sender:\n";
  if (stats.senders.empty()) {
    out += "  (none)\n";
  } else {
    out += fmt::format("  {:<16} {:<25} {:>8} {:>10}\n", "SENDER", "CHANNEL", "NOTICES", "OLDEST");
    for (const auto& s : stats.senders) {
      out += fmt::format("  {:<16} {:<25} {:>8} {:>10}\n", s.sender, channel(s.channel), s.pending,
                         HumanAge(now_ms - s.oldest_at_ms));
    }
  }
  out += "\nSessions (integration points connected):\n";
  if (!stats.sessions_known) {
    out += "  (kept by the running broker: its /metrics has bud_broker_session{org})\n";
  } else if (stats.sessions.empty()) {
    out += "  (none)\n";
  } else {
    out += fmt::format("  {:<42} {}\n", "ORGANISATION[/CHANNEL]", "BROKER");
    for (const auto& s : stats.sessions) out += fmt::format("  {:<42} {}\n", s.org, s.holder);
  }
  out += fmt::format("\nTotals: {} queued message(s), {} ({} bytes); {} pending notice(s)",
                     stats.queued, HumanBytes(stats.bytes), stats.bytes, stats.notices);
  if (stats.seen_ids >= 0) {
    out +=
        fmt::format("; {} message id(s) seen; {} report(s) applied", stats.seen_ids, stats.reports);
  }
  out += "\n";
  return out;
}

Result<std::string> StatsCommand(const std::string& store_path, bool json) {
  BUD_ASSIGN_OR_RETURN(auto reader, OpenSqliteQueueReader(store_path));
  BUD_ASSIGN_OR_RETURN(StoreStats stats, reader->Stats());
  return RenderStats(stats, store_path, NowMs(), json);
}

Result<std::string> StatsCommand(const Config& config, bool json) {
  BUD_ASSIGN_OR_RETURN(auto reader, OpenQueueReader(config));
  BUD_ASSIGN_OR_RETURN(StoreStats stats, reader->Stats());
  return RenderStats(stats, reader->Describe(), NowMs(), json);
}

}  // namespace bud::broker
