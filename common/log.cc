// Logging setup and time formatting helpers.
#include "common/log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <mutex>

#include "common/clock.h"

namespace bud {

namespace {
spdlog::sink_ptr& DefaultSink() {
  static spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return sink;
}
spdlog::level::level_enum& DefaultLevel() {
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}
// The level from which a line is written at once (LogFlush).
spdlog::level::level_enum& FlushLevel() {
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}

// Lines kept in memory until flush() (LogFlush::kWhenAsked), or until 64 KiB wait: then one
// write(2) takes them all. Appends to a file it opens itself, or to stderr.
class BufferedSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  BufferedSink() : fd_(STDERR_FILENO), own_(false) {}
  explicit BufferedSink(const std::string& file)
      : fd_(::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)), own_(true) {
    if (fd_ < 0) {
      throw spdlog::spdlog_ex("cannot open log file '" + file + "': " + std::strerror(errno));
    }
  }
  ~BufferedSink() override {
    std::lock_guard<std::mutex> lock(mutex_);
    WriteOut();
    if (own_) ::close(fd_);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    buf_.append(line.data(), line.size());
    if (buf_.size() >= kLimit) WriteOut();
  }
  void flush_() override { WriteOut(); }

 private:
  static constexpr size_t kLimit = 64 * 1024;
  // What cannot be written (a full disk, a closed stderr) is dropped: logging never stops the
  // process, as with the stdio sinks.
  void WriteOut() {
    size_t done = 0;
    while (done < buf_.size()) {
      const ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    buf_.clear();
  }
  int fd_;
  bool own_;
  std::string buf_;
};

// The pattern flag %* : the line's message through Printable.
class PrintableMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string text = Printable(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PrintableMessage>();
  }
};

// Length of the UTF-8 sequence at s[i] (strict RFC 3629), 0 when there is none.
size_t Utf8Length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if (b(i + k) < 0x80 || b(i + k) > 0xbf) return 0;
  }
  return len;
}
}  // namespace

std::unique_ptr<spdlog::formatter> LineFormatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<PrintableMessage>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l [%n] %*");
  return formatter;
}

std::string Printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      out += "\\n";
      ++i;
      continue;
    }
    if (c == '\r') {
      out += "\\r";
      ++i;
      continue;
    }
    if (c == '\t') {
      out += "\\t";
      ++i;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    const size_t len = Utf8Length(text, i);
    if (len == 0) {
      out += fmt::format("\\x{:02x}", c);
      ++i;
      continue;
    }
    if (len == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned char>(text[i + 1]));
      i += 2;
      continue;
    }
    if (len == 3 && c == 0xe2) {
      // Bidirectional controls (U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) reorder what
      // a terminal shows: a file name could display as something else.
      const unsigned b1 = static_cast<unsigned char>(text[i + 1]);
      const unsigned b2 = static_cast<unsigned char>(text[i + 2]);
      const unsigned cp = 0x2000 | ((b1 & 0x3f) << 6) | (b2 & 0x3f);
      if (cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
          (cp >= 0x2066 && cp <= 0x2069)) {
        out += fmt::format("\\u{:04x}", cp);
        i += 3;
        continue;
      }
    }
    out.append(text.substr(i, len));
    i += len;
  }
  return out;
}

void SetupLogging(const std::string& level, const std::string& file, LogFlush flush) {
  const bool buffered = flush == LogFlush::kWhenAsked;
  if (buffered) {
    DefaultSink() =
        file.empty() ? std::make_shared<BufferedSink>() : std::make_shared<BufferedSink>(file);
  } else if (!file.empty()) {
    DefaultSink() = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file);
  } else {
    DefaultSink() = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  }
  FlushLevel() = buffered ? spdlog::level::warn : spdlog::level::info;
  DefaultLevel() = spdlog::level::from_str(level);
  spdlog::drop_all();
  spdlog::set_default_logger(Logger("bud"));
}

std::shared_ptr<spdlog::logger> Logger(const std::string& component) {
  if (auto l = spdlog::get(component)) return l;
  auto l = std::make_shared<spdlog::logger>(component, DefaultSink());
  l->set_level(DefaultLevel());
  l->set_formatter(LineFormatter());
  l->flush_on(FlushLevel());
  spdlog::register_logger(l);
  return l;
}

void FlushLogs() { DefaultSink()->flush(); }

std::string FormatTime(int64_t unix_ms) {
  int64_t secs64 = unix_ms / 1000;
  int64_t millis = unix_ms % 1000;
  if (millis < 0) {
    millis += 1000;
    secs64 -= 1;
  }
  time_t secs = static_cast<time_t>(secs64);
  struct tm tm;
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     static_cast<int>(millis));
}

std::optional<int64_t> ParseTime(std::string_view text) {
  // YYYY-MM-DDThh:mm:ss[.fraction](Z|+hh:mm|-hh:mm), digits only (sscanf's %lf would take
  // "nan", exponents and hex floats).
  int y, mo, d, h, mi, sec;
  int used = 0;
  std::string t(text);
  if (t.size() < 19 || std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi,
                                   &sec, &used) != 6 || used != 19) {
    return std::nullopt;
  }
  for (size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u, 11u, 12u, 14u, 15u, 17u, 18u}) {
    if (!std::isdigit(static_cast<unsigned char>(t[i]))) return std::nullopt;
  }
  double s = sec;
  size_t pos = 19;
  if (pos < t.size() && t[pos] == '.') {
    size_t start = ++pos;
    double scale = 0.1;
    while (pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos]))) {
      s += (t[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  if (t.size() - pos > 15) return std::nullopt;
  char rest[16] = {0};
  t.copy(rest, t.size() - pos, pos);
  static constexpr int kDays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
      h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s >= 60) {
    return std::nullopt;
  }
  struct tm tm = {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = static_cast<int>(s);
  int64_t ms = static_cast<int64_t>(timegm(&tm)) * 1000 +
               static_cast<int64_t>((s - static_cast<int>(s)) * 1000 + 0.5);
  std::string_view r(rest);
  if (r.empty() || r == "Z") return ms;
  int oh = 0, om = 0;
  char sign = r[0];
  // Exactly +hh:mm or -hh:mm, and nothing after it.
  if ((sign != '+' && sign != '-') || r.size() != 6 || r[3] != ':' || !std::isdigit(r[1]) ||
      !std::isdigit(r[2]) || !std::isdigit(r[4]) || !std::isdigit(r[5]) ||
      std::sscanf(rest + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59) {
    return std::nullopt;
  }
  int64_t off = (oh * 60 + om) * 60 * 1000;
  return sign == '+' ? ms - off : ms + off;
}

}  // namespace bud
