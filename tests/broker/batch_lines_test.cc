// The grouped log lines about a batch's answers (broker/batch_lines.h), written through a real
// spdlog logger into a string.
#include "broker/batch_lines.h"

#include <spdlog/sinks/ostream_sink.h>

#include <catch2/catch.hpp>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace bud::broker {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("a batch's lines: one per route and per status and reporter, at most 64 ids each",
          "[broker][log]") {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_pattern("%v");
  spdlog::logger log("test", sink);
  BatchLines lines;
  for (int i = 0; i < 65; ++i) lines.Accepted("0192:A", "0192:B", "id" + std::to_string(i), 10);
  lines.Accepted("0192:C", "0192:B", "idc", 2436);
  lines.Reported("MOTTATT", "0192:B", "r1", "");
  lines.Reported("FEIL", "0192:B", "r2", "no room");
  lines.Reported("MOTTATT", "0192:B", "r3", "");
  lines.Write(log);
  const auto got = Lines(out.str());
  REQUIRE(got.size() == 5);
  CHECK(got[0].rfind("64 message(s) from 0192:A to 0192:B accepted: id0 (10 bytes), id1 (10 "
                     "bytes), ",
                     0) == 0);
  CHECK(got[0].find("id63 (10 bytes)") != std::string::npos);
  CHECK(got[0].find("id64") == std::string::npos);
  CHECK(got[1] == "1 message(s) from 0192:A to 0192:B accepted: id64 (10 bytes)");
  CHECK(got[2] == "1 message(s) from 0192:C to 0192:B accepted: idc (2436 bytes)");
  CHECK(got[3] == "FEIL reported by 0192:B for 1 message(s): r2 (no room)");
  CHECK(got[4] == "MOTTATT reported by 0192:B for 2 message(s): r1, r3");

  // Written once: the next batch starts empty.
  out.str("");
  lines.Write(log);
  CHECK(out.str().empty());
}

}  // namespace bud::broker
