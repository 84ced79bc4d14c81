// The log sink that writes a turn's lines at once (common/log.h, LogFlush::kWhenAsked), on a
// real file.
#include "common/log.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace bud {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A log file of its own, and the default (stderr, line by line) again afterwards.
struct LogFile {
  std::string dir;
  std::string path;
  LogFile() {
    char tmpl[] = "/tmp/bud-test-log-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    path = dir + "/test.log";
  }
  ~LogFile() {
    SetupLogging("info");
    ::unlink(path.c_str());
    ::rmdir(dir.c_str());
  }
};

}  // namespace

TEST_CASE("buffered logging: lines wait for FlushLogs, a warning writes them at once, in order",
          "[log]") {
  LogFile f;
  SetupLogging("info", f.path, LogFlush::kWhenAsked);
  Logger("t")->info("first line");
  Logger("t")->debug("below the level");
  Logger("other")->info("second line");
  CHECK(Slurp(f.path).empty());
  FlushLogs();
  std::string text = Slurp(f.path);
  CHECK(Count(text, "\n") == 2);
  CHECK(text.find("first line") < text.find("second line"));
  CHECK(text.find("below the level") == std::string::npos);
  FlushLogs();  // nothing held: nothing written again
  CHECK(Slurp(f.path) == text);

  Logger("t")->info("third line");
  Logger("t")->warn("a warning");
  text = Slurp(f.path);
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
  const std::string text = Slurp(f.path);
  CHECK(text.size() >= 64 * 1024);
  CHECK(Count(text, "\n") < 80);
  FlushLogs();
  CHECK(Count(Slurp(f.path), "\n") == 80);

  SetupLogging("info", f.path);  // line by line, appended to the same file
  Logger("t")->info("written at once");
  CHECK(Slurp(f.path).find("written at once") != std::string::npos);
}

TEST_CASE("buffered logging: a log file that cannot be opened is refused with its reason",
          "[log]") {
  LogFile f;
  CHECK_THROWS_WITH(SetupLogging("info", f.dir + "/no/such/dir/x.log", LogFlush::kWhenAsked),
                    Catch::Contains("cannot open log file") && Catch::Contains("No such file"));
}

}  // namespace bud
