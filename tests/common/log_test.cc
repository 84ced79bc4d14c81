// The log sink that writes a turn's lines at once (common/log.h, LogFlush::kWhenAsked), on a
// real file.
#include "common/log.h"

#include <catch2/catch.hpp>
#include <string>

#include "tests/integration/harness.h"
#include "tests/support/temp_dir.h"

namespace bud {
namespace {

using test::CountOccurrences;
using test::ReadFileOrEmpty;

// A log file of its own, and the default (stderr, line by line) again afterwards.
struct LogFile {
  test::TempDir dir;
  std::string path = dir / "test.log";
  ~LogFile() { SetupLogging("info"); }
};

}  // namespace

TEST_CASE("buffered logging: lines wait for FlushLogs, a warning writes them at once, in order",
          "[log]") {
  LogFile f;
  SetupLogging("info", f.path, LogFlush::kWhenAsked);
  Logger("t")->info("first line");
  Logger("t")->debug("below the level");
  Logger("other")->info("second line");
  CHECK(ReadFileOrEmpty(f.path).empty());
  FlushLogs();
  std::string text = ReadFileOrEmpty(f.path);
  CHECK(CountOccurrences(text, "\n") == 2);
  CHECK(text.find("first line") < text.find("second line"));
  CHECK(text.find("below the level") == std::string::npos);
  FlushLogs();  // nothing held: nothing written again
  CHECK(ReadFileOrEmpty(f.path) == text);

  Logger("t")->info("third line");
  Logger("t")->warn("a warning");
  text = ReadFileOrEmpty(f.path);
  CHECK(text.find("third line") != std::string::npos);
  CHECK(text.find("third line") < text.find("a warning"));
  CHECK(text.find("warning [t] a warning") != std::string::npos);
}

TEST_CASE(
    "buffered logging: 64 KiB of lines are written without a flush; the default writes "
    "every line",
    "[log]") {
  LogFile f;
  SetupLogging("info", f.path, LogFlush::kWhenAsked);
  const std::string filler(1000, 'x');
  for (int i = 0; i < 80; ++i) Logger("t")->info("{} {}", i, filler);
  const std::string text = ReadFileOrEmpty(f.path);
  CHECK(text.size() >= 64 * 1024);
  CHECK(CountOccurrences(text, "\n") < 80);
  FlushLogs();
  CHECK(CountOccurrences(ReadFileOrEmpty(f.path), "\n") == 80);

  SetupLogging("info", f.path);  // line by line, appended to the same file
  Logger("t")->info("written at once");
  CHECK(ReadFileOrEmpty(f.path).find("written at once") != std::string::npos);
}

TEST_CASE("buffered logging: a log file that cannot be opened is refused with its reason",
          "[log]") {
  LogFile f;
  CHECK_THROWS_WITH(SetupLogging("info", f.dir / "no/such/dir/x.log", LogFlush::kWhenAsked),
                    Catch::Contains("cannot open log file") && Catch::Contains("No such file"));
}

// A full disk: what the buffered sink cannot write is dropped (logging never stops the broker):
// it neither throws nor loops on the failed write, and once there is room (a new file here)
// only what comes after is written.
TEST_CASE("buffered logging: lines that cannot be written (a full disk) are dropped", "[log]") {
  LogFile f;
  SetupLogging("info", "/dev/full", LogFlush::kWhenAsked);  // every write: ENOSPC
  const std::string filler(1000, 'y');
  for (int i = 0; i < 200; ++i) Logger("t")->info("{} {}", i, filler);  // past 64 KiB, thrice
  FlushLogs();
  Logger("t")->warn("a warning, written at once (and dropped)");
  FlushLogs();
  // Room again: only what comes after is written, nothing held from before.
  SetupLogging("info", f.path, LogFlush::kWhenAsked);
  Logger("t")->info("after the full disk");
  FlushLogs();
  const std::string text = ReadFileOrEmpty(f.path);
  CHECK(CountOccurrences(text, "\n") == 1);
  CHECK(text.find("after the full disk") != std::string::npos);
  CHECK(text.find(filler) == std::string::npos);
}

TEST_CASE("a log line's control characters are escaped, a plain line is written as it is",
          "[log]") {
  LogFile f;
  SetupLogging("info", f.path, LogFlush::kWhenAsked);
  Logger("t")->info("plain: message 3f1c2a9e-0000-4000-8000-000000000001 from 0192:910076787");
  Logger("t")->info("name {}",
                    "a\nb\x1b[2J\xe2\x80\xae"
                    "c\xff");
  FlushLogs();
  const std::string text = ReadFileOrEmpty(f.path);
  INFO(text);
  CHECK(
      text.find("[t] plain: message 3f1c2a9e-0000-4000-8000-000000000001 from 0192:910076787\n") !=
      std::string::npos);
  CHECK(text.find("[t] name a\\nb\\x1b[2J\\u202ec\\xff\n") != std::string::npos);
  CHECK(CountOccurrences(text, "\n") == 2);  // the newline inside the second stayed escaped
  CHECK(text.find('\x1b') == std::string::npos);
}

}  // namespace bud
