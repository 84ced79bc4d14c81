// Integration point: message.json parsing (integration-point/outbox.h). Regressions from
// fuzzing (tests/fuzz/findings/) live here.
#include <catch2/catch.hpp>

#include "common/clock.h"
#include "integration-point/outbox.h"

namespace bud::ip {
namespace {

const Orgnr kMe = *Orgnr::Parse("910076787");

Result<OutgoingDraft> Parse(const std::string& text) { return ParseMessageJson(text, kMe, {}); }

TEST_CASE("a good message.json gives a draft with ids and expiry", "[ip][outbox]") {
  auto d = Parse(R"({"receiver":"0192:910075918","process":"p","documentType":"d",
                     "title":"Vedtak","expectedResponseDateTime":"2099-01-01T00:00:00+01:00"})");
  REQUIRE(d.ok());
  CHECK(d->receiver.wire() == "0192:910075918");
  CHECK(d->payload.sender() == "0192:910076787");
  CHECK(d->payload.message_id() == d->message_id);
  CHECK(d->expires_ms == *ParseTime("2098-12-31T23:00:00Z"));
}

TEST_CASE("message.json errors name the key", "[ip][outbox]") {
  struct Case {
    std::string json, phrase;
  } cases[] = {
      {"{", "not valid JSON"},
      {"[]", "must be a JSON object"},
      {R"({"process":"p","documentType":"d"})", "'receiver' is missing"},
      {R"({"receiver":"910076788","process":"p","documentType":"d"})", "check digit"},
      {R"({"receiver":"910075918","documentType":"d"})", "'process' is missing"},
      {R"({"receiver":"910075918","process":"p"})", "'documentType' is missing"},
      {R"({"receiver":"910075918","process":"p","documentType":"d","messageId":"x"})",
       "not a UUID"},
      {R"({"receiver":"910075918","process":"p","documentType":"d","sender":"910075918"})",
       "'sender'"},
      {R"({"receiver":"910075918","process":"p","documentType":"d",
           "expectedResponseDateTime":"2001-01-01T00:00:00Z"})",
       "in the past"},
  };
  for (const auto& c : cases) {
    INFO(c.json);
    auto d = Parse(c.json);
    REQUIRE_FALSE(d.ok());
    CHECK(d.status().code() == Code::kInvalidArgument);
    CHECK_THAT(d.status().message(), Catch::Matchers::Contains(c.phrase));
  }
}

// Fuzz finding fuzz_message_json-number-overflow: nlohmann throws out_of_range (not
// parse_error) for a number beyond double, which terminated bud-ip.
TEST_CASE("a number too large for a double is a clear error, not a crash", "[ip][outbox][fuzz]") {
  auto d = Parse(R"({"receiver":"0192:910075918","process":"p","documentType":"d","x":1e400})");
  REQUIRE_FALSE(d.ok());
  CHECK(d.status().code() == Code::kInvalidArgument);
  CHECK_FALSE(Parse("6E590").ok());
}

// Fuzz finding fuzz_message_json-time-nan-seconds: "%lf" took "nan" seconds (UB on the cast).
TEST_CASE("expiry times take digits only", "[ip][outbox][fuzz]") {
  for (const char* t : {"2040-01-01T00:00:nan", "2040-01-01T00:00:1e1Z", "2040-01-01T00:00:0x1p3Z",
                        "2040-01-01T00:00: 1Z", "2040-01-01T00:00:00.Z", "2040-01-01T00:00:00+ 1:00"}) {
    INFO(t);
    CHECK_FALSE(ParseTime(t).has_value());
    auto d = Parse(std::string(R"({"receiver":"910075918","process":"p","documentType":"d",)") +
                   R"("expectedResponseDateTime":")" + t + "\"}");
    CHECK_FALSE(d.ok());
  }
  CHECK(ParseTime("2040-01-01T00:00:01.5Z") == ParseTime("2040-01-01T00:00:01Z").value() + 500);
}

}  // namespace
}  // namespace bud::ip
