// Message channel names (common/message_channel.h): eFormidling's rule, 1 to 25 of a-z, A-Z,
// 0-9, '-' and '_'; "" is "no channel".
#include "common/message_channel.h"

#include <catch2/catch.hpp>

namespace bud {

TEST_CASE("channel names: what eFormidling allows, nothing else", "[common][channels]") {
  for (const char* good : {"a", "arkiv2", "Arkiv-2_b", "0123456789012345678901234"}) {
    INFO(good);
    CHECK(IsChannelName(good));
    CHECK(CheckChannel(good, "x").ok());
  }
  CHECK_FALSE(IsChannelName(""));
  CHECK(CheckChannel("", "x").ok());  // no channel
  for (const std::string& bad :
       {std::string(26, 'a'), std::string("a b"), std::string("a/b"), std::string("æ"),
        std::string("a.b"), std::string("a\nb"), std::string("a\0b", 3)}) {
    INFO(bad);
    CHECK_FALSE(IsChannelName(bad));
    Status st = CheckChannel(bad, "the Hello's channel");
    CHECK(st.code() == Code::kInvalidArgument);
    CHECK_THAT(st.message(), Catch::Contains("the Hello's channel"));
    CHECK_THAT(st.message(), Catch::Contains("not a message channel name"));
  }
  // Unprintable or long values are not echoed.
  CHECK_THAT(CheckChannel("a\nb", "v").message(), Catch::Contains("(unprintable)"));
  CHECK_THAT(CheckChannel(std::string(100, 'a'), "v").message(), Catch::Contains("(unprintable)"));
  CHECK_THAT(CheckChannel("a b", "v").message(), Catch::Contains("'a b'"));
}

}  // namespace bud
