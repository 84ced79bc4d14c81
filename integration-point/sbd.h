// The Next Move Standard Business Document (SBD) as JSON: what archive systems post to the HTTP
// API and get back from it (../shared/reference/next-move-api.md, docs/http-api.md).
//
// Mapping to our header: receiver/sender identifiers "0192:<orgnr>"; the process is
// businessScope.scope[type=ConversationId].identifier; the document type is
// documentIdentification.standard (its last ':' segment is `type`, which also names the business
// message, e.g. "arkivmelding"); instanceIdentifier is the message id, the ConversationId scope's
// instanceIdentifier the conversation id, its expectedResponseDateTime the expiry.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/orgnr.h"
#include "common/status.h"
#include "integration-point/outbox.h"
#include "integration-point/store/rows.h"

namespace bud::ip {

// The start of the message of an SBD refused for its MessageChannel scope (the HTTP API answers
// it as eFormidling's MessageChannelInvalidException).
inline constexpr std::string_view kMessageChannelInvalid = "SBD: the MessageChannel scope";

// Validates an SBD and turns it into a draft without attachments (kInvalidArgument naming the
// field for anything the client must fix). Ids are generated when left out and the expiry
// defaults to now + limits.default_ttl_ms. The draft's payload metadata is the SBD itself, with
// the generated values and creationDateAndTime filled in (also returned in `completed`).
Result<OutgoingDraft> ParseSbd(const nlohmann::json& sbd, const Orgnr& me,
                               const OutboxLimits& limits, nlohmann::json* completed = nullptr);

// The SBD of a stored message: the sender's own SBD when the metadata is one (ids, parties,
// process and document type always taken from the verified header), otherwise built from the
// header fields.
nlohmann::json SbdOf(const MessageRow& m, std::string_view metadata_json);

// `sbd_json` with its MessageChannel scope set to `channel` (added when missing, removed when
// `channel` is ""); unchanged when it is no SBD (e.g. a folder's message.json).
std::string WithMessageChannel(const std::string& sbd_json, const std::string& channel);

// "urn:no:difi:arkivmelding:xsd::arkivmelding" -> "arkivmelding".
std::string DocumentTypeName(std::string_view standard);

}  // namespace bud::ip
