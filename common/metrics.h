// Prometheus text exposition (format 0.0.4) for /metrics on the integration point and the broker:
// counters and gauges written by the owner thread as atomics, a fixed-bucket histogram, and the
// writer that renders families with # HELP / # TYPE lines and escaped label values.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bud::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Observations in seconds; thread-safe (relaxed atomics: a scrape may see a count one ahead of
// the sum, which Prometheus tolerates).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double seconds);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  friend class Writer;
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bucket, not cumulative
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

// Latency buckets from 100 µs to 10 s.
std::vector<double> LatencyBuckets();

class Writer {
 public:
  // Starts a family; every sample after it until the next Family belongs to it.
  void Family(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, const Labels& labels, double value);
  void Sample(std::string_view name, double value) { Sample(name, {}, value); }
  void Histogram(std::string_view name, std::string_view help, const metrics::Histogram& h);
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

// Content-Type of the text format.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace bud::metrics
