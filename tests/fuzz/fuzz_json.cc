// Fuzz target: JSON from outside (common/json.h, ParseJson), the gate every outbox message.json,
// HTTP body and peer's metadata passes before anything recursive touches it. Whatever the text,
// the answer is a value or kInvalidArgument; an accepted value is no deeper than the limit
// (measured here without recursion), and copying, dumping and reparsing it - the recursive
// operations that overflowed the stack on a poison message - give the same value back.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "common/json.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// Nesting depth of arrays and objects, with an explicit stack.
int Depth(const nlohmann::json& root) {
  int deepest = 0;
  std::vector<std::pair<const nlohmann::json*, int>> todo{{&root, 0}};
  while (!todo.empty()) {
    auto [v, d] = todo.back();
    todo.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, d + 1);
    for (const auto& child : *v) todo.push_back({&child, d + 1});
  }
  return deepest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bud;
  static const JsonLimits limits{.max_bytes = 2048, .max_depth = 16};
  std::string_view text(reinterpret_cast<const char*>(data), size);

  auto parsed = ParseJson(text, "input", limits);
  if (!parsed.ok()) {
    BUD_FUZZ_CHECK(parsed.status().code() == Code::kInvalidArgument,
                   "ParseJson: wrong error code");
    BUD_FUZZ_CHECK(parsed.status().message().starts_with("input "),
                   "ParseJson: the message does not name what was read");
    return 0;
  }
  BUD_FUZZ_CHECK(size <= limits.max_bytes, "ParseJson accepted more bytes than its limit");
  BUD_FUZZ_CHECK(Depth(*parsed) <= limits.max_depth, "ParseJson accepted nesting past its limit");
  const nlohmann::json copy = *parsed;
  const std::string dumped = copy.dump();
  auto again = ParseJson(dumped, "dump", JsonLimits{.max_bytes = SIZE_MAX, .max_depth = 16});
  BUD_FUZZ_CHECK(again.ok(), "the dump of an accepted value was refused");
  // NaN cannot come from JSON text, so equality is well defined here.
  BUD_FUZZ_CHECK(*again == copy, "dump and reparse changed an accepted value");
  return 0;
}
