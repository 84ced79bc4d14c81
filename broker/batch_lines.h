// The log lines about one batch's answers, grouped: a line for each sender and receiver with the
// ids accepted, a line for each status and reporter with the ids reported, at most kIdsPerLine ids
// a line. Every id is still in the log, with its size (or its report's reason); at tens of
// thousands of messages a second a line per message cost the broker about a tenth of its CPU
// (docs/benchmarks.md, thirteenth round).
#pragma once

#include <spdlog/spdlog.h>

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bud::broker {

class BatchLines {
 public:
  static constexpr size_t kIdsPerLine = 64;

  void Accepted(const std::string& sender, const std::string& receiver, const std::string& id,
                size_t bytes);
  void Reported(std::string_view status, const std::string& reporter, const std::string& id,
                const std::string& reason);
  // Logs the lines at info and forgets them:
  //   "<n> message(s) from <sender> to <receiver> accepted: <id> (<bytes> bytes), ..."
  //   "<status> reported by <reporter> for <n> message(s): <id>, <id> (<reason>), ..."
  void Write(spdlog::logger& log);

 private:
  using Groups = std::map<std::pair<std::string, std::string>, std::vector<std::string>>;
  Groups accepted_, reported_;
};

}  // namespace bud::broker
