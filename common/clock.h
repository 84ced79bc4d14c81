// Wall-clock and monotonic time in milliseconds; and ISO 8601 formatting for people and JSON.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bud {

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline int64_t MonoMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Monotonic microseconds (latency measurements).
inline int64_t MonoUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// "2026-11-29T09:00:00.123Z"
std::string FormatTime(int64_t unix_ms);
// Parses ISO 8601 with a 'Z' or +hh:mm offset; fractional seconds optional.
std::optional<int64_t> ParseTime(std::string_view text);

}  // namespace bud
