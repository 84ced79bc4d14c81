// The envelopes of the last commits (broker/fresh_envelopes.h): held only once committed, handed
// out once, the oldest dropped beyond the bound.
#include "broker/fresh_envelopes.h"

#include <catch2/catch.hpp>
#include <string>

namespace bud::broker {

TEST_CASE("fresh envelopes: held from the commit on, taken once, oldest dropped first",
          "[broker][fresh]") {
  FreshEnvelopes fresh(/*max_bytes=*/3000, /*max_envelope=*/1500);
  fresh.Stage(1, "id-1", std::string(1000, 'a'));
  fresh.Stage(2, "id-2", std::string(1000, 'b'));
  CHECK_FALSE(fresh.Take(1));  // not committed yet
  fresh.Commit();
  CHECK(fresh.size() == 2);
  CHECK(fresh.bytes() == 2000);

  auto one = fresh.Take(1);
  REQUIRE(one);
  CHECK(one->message_id == "id-1");
  CHECK(one->envelope == std::string(1000, 'a'));
  CHECK_FALSE(fresh.Take(1));  // handed out once: a redelivery reads the store
  CHECK(fresh.bytes() == 1000);

  SECTION("a dropped transaction leaves nothing") {
    fresh.Stage(3, "id-3", "c");
    fresh.Drop();
    fresh.Commit();
    CHECK_FALSE(fresh.Take(3));
    CHECK(fresh.size() == 1);
  }
  SECTION("beyond the bound the oldest go") {
    fresh.Stage(3, "id-3", std::string(1000, 'c'));
    fresh.Stage(4, "id-4", std::string(1000, 'd'));
    fresh.Stage(5, "id-5", std::string(1000, 'e'));
    fresh.Commit();
    CHECK(fresh.bytes() == 3000);
    CHECK_FALSE(fresh.Take(2));
    CHECK(fresh.Take(3));
    CHECK(fresh.Take(5)->envelope == std::string(1000, 'e'));
  }
  SECTION("an envelope above the per-envelope bound is not held") {
    fresh.Stage(3, "id-3", std::string(1501, 'c'));
    fresh.Commit();
    CHECK_FALSE(fresh.Take(3));
    CHECK(fresh.Take(2));
  }
}

}  // namespace bud::broker
