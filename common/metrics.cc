// See metrics.h.
#include "common/metrics.h"

#include <fmt/format.h>

#include <cmath>

namespace bud::metrics {

namespace {
std::string EscapeLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}
}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double seconds) {
  size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(std::max(0.0, seconds) * 1e9), std::memory_order_relaxed);
}

std::vector<double> LatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
          1, 2.5, 5, 10};
}

void Writer::Family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void Writer::Sample(std::string_view name, const Labels& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      out_ += fmt::format("{}{}=\"{}\"", i ? "," : "", labels[i].first,
                          EscapeLabel(labels[i].second));
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += FormatValue(value);
  out_ += '\n';
}

void Writer::Histogram(std::string_view name, std::string_view help, const metrics::Histogram& h) {
  Family(name, "histogram", help);
  uint64_t cumulative = 0;
  const std::string bucket = fmt::format("{}_bucket", name);
  for (size_t i = 0; i < h.bounds_.size(); ++i) {
    cumulative += h.buckets_[i].load(std::memory_order_relaxed);
    Sample(bucket, {{"le", FormatValue(h.bounds_[i])}}, static_cast<double>(cumulative));
  }
  cumulative += h.buckets_[h.bounds_.size()].load(std::memory_order_relaxed);
  Sample(bucket, {{"le", "+Inf"}}, static_cast<double>(cumulative));
  Sample(fmt::format("{}_sum", name), h.sum_ns_.load(std::memory_order_relaxed) / 1e9);
  Sample(fmt::format("{}_count", name), static_cast<double>(cumulative));
}

}  // namespace bud::metrics
