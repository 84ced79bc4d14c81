// The integration point's typed message state and its text at the storage and JSON edges
// (integration-point/message_state.h).
#include "integration-point/message_state.h"

#include <catch2/catch.hpp>

#include "integration-point/config.h"

namespace bud::ip {
namespace {

TEST_CASE("message state: every enum's text parses back, and nothing else does", "[ip][state]") {
  for (Direction d : {Direction::kOut, Direction::kIn}) CHECK(ParseDirection(Text(d)) == d);
  for (WorkState s :
       {WorkState::kNew, WorkState::kSealed, WorkState::kSent, WorkState::kDone, WorkState::kApi}) {
    CHECK(ParseWorkState(Text(s)) == s);
  }
  for (DeliveryMode m : {DeliveryMode::kFolder, DeliveryMode::kApi}) {
    CHECK(ParseDeliveryMode(Text(m)) == m);
  }
  // The stored forms are the schema's (docs/storage.md): they must not drift.
  CHECK(std::string(Text(Direction::kOut)) == "OUT");
  CHECK(std::string(Text(Direction::kIn)) == "IN");
  CHECK(std::string(Text(WorkState::kSealed)) == "sealed");
  CHECK(std::string(Text(DeliveryMode::kApi)) == "api");
  CHECK_FALSE(ParseDirection("out").has_value());
  CHECK_FALSE(ParseWorkState("SEALED").has_value());
  CHECK_FALSE(ParseDeliveryMode("").has_value());
  CHECK(Is("new", WorkState::kNew));
  CHECK_FALSE(Is("new", WorkState::kSealed));
}

TEST_CASE("message state: the config's delivery text gives its mode", "[ip][state]") {
  Config c;
  CHECK(c.delivery_mode() == DeliveryMode::kFolder);
  c.delivery = "api";
  CHECK(c.delivery_mode() == DeliveryMode::kApi);
}

}  // namespace
}  // namespace bud::ip
