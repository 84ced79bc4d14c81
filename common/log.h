// Logging: one named spdlog logger per component. Lines name the message, organisation and peer
// they are about. Never log keys, passwords or payload content.
//
// Every line's message is passed through Printable before it is written: a reason, a file name
// or a header field from outside cannot put a newline (a forged log line) or a terminal escape
// sequence into a log or onto an operator's terminal.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

namespace bud {

// When lines reach the file (or stderr).
enum class LogFlush {
  kEveryLine,  // each line written as it is logged
  // Lines below warn wait in a buffer (at most 64 KiB) until FlushLogs(): a process whose loop
  // calls FlushLogs() once a turn writes a turn's lines with one write(2), not one per line. A
  // warning or an error writes the buffer at once. A SIGKILL loses at most the current turn's
  // lines.
  kWhenAsked,
};

// Sets the default sink (stderr, or a file when `file` is not empty) and level
// ("trace".."critical"). Call once at process start.
void SetupLogging(const std::string& level, const std::string& file = "",
                  LogFlush flush = LogFlush::kEveryLine);
// Writes what the default sink holds (see LogFlush::kWhenAsked); cheap when it holds nothing.
void FlushLogs();
// The named logger for a component, created on first use with the default sink.
std::shared_ptr<spdlog::logger> Logger(const std::string& component);

// The formatter of every logger's lines (time, level, component, Printable message).
std::unique_ptr<spdlog::formatter> LineFormatter();

// `text` with control characters made visible: C0 controls and DEL as \xNN (\n, \r, \t as
// such), the C1 controls U+0080..U+009F (UTF-8 C2 80..C2 9F; 0x9B starts a CSI on some
// terminals) and the bidirectional controls U+200E, U+200F, U+202A..U+202E, U+2066..U+2069 (which
// reorder what a terminal shows) as \uNNNN, and bytes that are not UTF-8 as \xNN. Printable
// text passes unchanged.
std::string Printable(std::string_view text);

}  // namespace bud
