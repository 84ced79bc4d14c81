// The payload format: what travels encrypted inside an envelope (wire::Payload): the message
// metadata (ids, title, the sender's message.json) and the attachments (name, media type, bytes).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "proto/envelope.pb.h"

namespace bud {

// An attachment name must be a plain file name, safe on Linux and on Windows (archive systems on
// either read the inbox): not empty, at most 255 bytes, valid UTF-8, no '/', '\\', no control
// characters, not "." or "..", not hidden (leading '.'); none of < > : " | ? *, no trailing dot
// or space, not a Windows device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9, with any extension);
// and, compared without ASCII case, not "message.json" (the folder contract), "mimetype" or
// "META-INF" (ASiC containers). The error message shows the name through Printable.
Status ValidateAttachmentName(std::string_view name);

// A media type from the file name's extension ("application/octet-stream" when unknown).
std::string GuessMediaType(std::string_view name);

// Checks what a received payload must satisfy before anything is written from it: at most
// `max_attachments`, each name valid and unique without ASCII case, and the sender's metadata
// (JSON text, kept as it came) within ScanJson's default size and depth, so nothing that later
// parses, copies or prints it can be made to recurse without bound. kInvalidArgument.
Status ValidatePayload(const wire::Payload& payload, size_t max_attachments);

}  // namespace bud
