#include "broker/batch_lines.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>

namespace bud::broker {

void BatchLines::Accepted(const std::string& sender, const std::string& receiver,
                          const std::string& id, size_t bytes) {
  accepted_[{sender, receiver}].push_back(fmt::format("{} ({} bytes)", id, bytes));
}

void BatchLines::Reported(std::string_view status, const std::string& reporter,
                          const std::string& id, const std::string& reason) {
  reported_[{std::string(status), reporter}].push_back(
      reason.empty() ? id : fmt::format("{} ({})", id, reason));
}

void BatchLines::Write(spdlog::logger& log) {
  // Each group in slices of kIdsPerLine, in the order the batch held them.
  const auto slices = [](const std::vector<std::string>& items, auto&& line) {
    for (size_t at = 0; at < items.size(); at += kIdsPerLine) {
      const auto first = items.begin() + static_cast<std::ptrdiff_t>(at);
      const auto last =
          items.begin() + static_cast<std::ptrdiff_t>(std::min(items.size(), at + kIdsPerLine));
      line(static_cast<size_t>(last - first), fmt::format("{}", fmt::join(first, last, ", ")));
    }
  };
  for (const auto& [route, items] : accepted_) {
    slices(items, [&](size_t n, const std::string& ids) {
      log.info("{} message(s) from {} to {} accepted: {}", n, route.first, route.second, ids);
    });
  }
  for (const auto& [who, items] : reported_) {
    slices(items, [&](size_t n, const std::string& ids) {
      log.info("{} reported by {} for {} message(s): {}", who.first, who.second, n, ids);
    });
  }
  accepted_.clear();
  reported_.clear();
}

}  // namespace bud::broker
