// Bounded JSON parsing (common/json.h): the bounds hold before anything recursive runs.
#include "common/json.h"

#include <catch2/catch.hpp>
#include <string>

namespace bud {

TEST_CASE("ParseJson takes ordinary documents", "[json]") {
  auto j = ParseJson(R"({"a":[1,{"b":"[[[[ not nesting ]]]"}],"c":"\"{"})", "test");
  REQUIRE(j.ok());
  CHECK((*j)["a"][1]["b"] == "[[[[ not nesting ]]]");
  CHECK((*j)["c"] == "\"{");
}

TEST_CASE("ParseJson refuses deep nesting without recursing", "[json]") {
  const std::string deep(100000, '[');
  auto j = ParseJson(deep, "message.json");
  REQUIRE_FALSE(j.ok());
  CHECK(j.status().code() == Code::kInvalidArgument);
  CHECK(j.status().message() == "message.json nests arrays and objects more than 64 deep");

  std::string at_limit = std::string(64, '[') + std::string(64, ']');
  CHECK(ParseJson(at_limit, "x").ok());
  std::string over = std::string(65, '{');
  CHECK_FALSE(ParseJson(over, "x").ok());
  // Escaped quotes do not end a string early, so brackets after them stay uncounted.
  std::string in_string = "[\"\\\"" + std::string(1000, '[') + "\"]";
  CHECK(ParseJson(in_string, "x").ok());
}

TEST_CASE("ParseJson refuses oversized and invalid text with the name of what it read",
          "[json]") {
  auto big = ParseJson(std::string(2000, ' '), "the SBD", JsonLimits{.max_bytes = 1000});
  REQUIRE_FALSE(big.ok());
  CHECK(big.status().message() == "the SBD is 2000 bytes, more than the 1000 allowed");
  auto bad = ParseJson("{", "the SBD");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().starts_with("the SBD is not valid JSON"));
  CHECK_FALSE(ParseJson("1e400", "x").ok());
}

}  // namespace bud
