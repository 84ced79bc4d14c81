// The payload format: what travels encrypted inside an envelope (wire::Payload): the message
// metadata (ids, title, the sender's message.json) and the attachments (name, media type, bytes).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "proto/envelope.pb.h"

namespace bud {

// An attachment name must be a plain file name: not empty, at most 255 bytes, valid UTF-8, no
// '/', '\\', no control characters, not "." or "..", not hidden (leading '.'), and not
// "message.json" (reserved for the folder contract).
Status ValidateAttachmentName(std::string_view name);

// A media type from the file name's extension ("application/octet-stream" when unknown).
std::string GuessMediaType(std::string_view name);

// Checks what a received payload must satisfy before anything is written from it.
Status ValidatePayload(const wire::Payload& payload, size_t max_attachments);

}  // namespace bud
