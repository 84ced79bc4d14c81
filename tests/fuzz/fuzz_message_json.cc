// Fuzz target: an outbox message.json (integration-point/outbox.h, ParseMessageJson), the text an
// archive system hands the integration point. Whatever the text, the answer is a draft or
// kInvalidArgument; and an accepted draft must be one the sender can seal: valid ids, a valid
// receiver, an expiry after creation, and payload ids equal to the draft's.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/uuid.h"
#include "integration-point/outbox.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bud;
  static const Orgnr me = *Orgnr::Parse("910076787");
  static const ip::OutboxLimits limits;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  auto draft = ip::ParseMessageJson(text, me, limits);
  if (!draft.ok()) {
    BUD_FUZZ_CHECK(draft.status().code() == Code::kInvalidArgument,
                   "ParseMessageJson: wrong error code");
    return 0;
  }
  const ip::OutgoingDraft& d = *draft;
  BUD_FUZZ_CHECK(IsUuid(d.message_id) && IsUuid(d.conversation_id),
                 "ParseMessageJson accepted an id that is not a UUID");
  for (char c : d.message_id + d.conversation_id) {
    BUD_FUZZ_CHECK(!(c >= 'A' && c <= 'Z'), "ParseMessageJson kept an upper-case id");
  }
  BUD_FUZZ_CHECK(!d.process.empty() && !d.document_type.empty(),
                 "ParseMessageJson accepted an empty process or documentType");
  BUD_FUZZ_CHECK(d.expires_ms > d.created_ms, "ParseMessageJson accepted an expiry in the past");
  BUD_FUZZ_CHECK(d.expires_ms - d.created_ms <= ip::kMaxTtlMs,
                 "ParseMessageJson accepted an expiry more than 90 days ahead");
  const wire::Payload& p = d.payload;
  BUD_FUZZ_CHECK(p.message_id() == d.message_id && p.conversation_id() == d.conversation_id &&
                     p.sender() == me.wire() && p.receiver() == d.receiver.wire(),
                 "ParseMessageJson: payload ids differ from the draft's");
  BUD_FUZZ_CHECK(p.metadata_json() == text, "ParseMessageJson did not keep message.json as given");
  fuzz::CheckOrgnr(d.receiver.wire());
  return 0;
}
