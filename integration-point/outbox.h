// The outbox side of the folder contract (../shared/DESIGN.md, "The folder contract").
//
// outbox/<any-name>/message.json + files. A folder is ready once message.json exists. A bad
// folder is moved to outbox/.failed/<name>/ with an error.txt saying what is wrong; it is never
// deleted. Hidden entries (".failed", ".tmp", ".x") are not messages.
#pragma once

#include <string>
#include <vector>

#include "common/orgnr.h"
#include "common/status.h"
#include "proto/envelope.pb.h"

namespace bud::ip {

struct OutboxLimits {
  size_t max_attachments = 100;
  size_t max_attachment_bytes = 100u << 20;
  int64_t default_ttl_ms = 24 * 3600 * 1000;
  // false for a large (streamed) message: attachments are listed with their size, not read, and
  // max_attachment_bytes caps them together.
  bool read_data = true;
};

// What an outbox folder asks for, validated: routing fields, ids and the payload to encrypt.
struct OutgoingDraft {
  std::string message_id;
  std::string conversation_id;
  Orgnr receiver;
  std::string process;
  std::string document_type;
  std::string title;
  int64_t created_ms = 0;
  int64_t expires_ms = 0;
  wire::Payload payload;  // attachments + metadata; ids filled in
};

// Identifies one instance of a folder: its name and message.json's inode, size and mtime. Used to
// recognise a folder that was taken in but not yet removed when the process died.
Result<std::string> FolderKey(const std::string& folder);

// Parses and validates a message.json (no attachments yet). kInvalidArgument with a precise
// message for anything the archive system must fix.
Result<OutgoingDraft> ParseMessageJson(std::string_view text, const Orgnr& me,
                                       const OutboxLimits& limits);

// The expiry from an expectedResponseDateTime text: created + default_ttl_ms when empty;
// kInvalidArgument (prefixed with `what`) when it is not ISO 8601 or not in the future.
Result<int64_t> ParseExpiry(const std::string& text, int64_t created_ms, int64_t default_ttl_ms,
                            const std::string& what);

// Checks one more attachment against the name rules, the size and count limits and the names
// already in the draft; AddAttachment also adds it (media type guessed from the name when empty).
Status CheckAttachmentLimits(const OutgoingDraft& d, const std::string& name, size_t size,
                             const OutboxLimits& limits);
Status AddAttachment(OutgoingDraft& d, const std::string& name, std::string media_type,
                     std::string data, const OutboxLimits& limits);

// Reads and validates outbox/<name>. kInvalidArgument with a precise message for anything the
// archive system must fix; other codes (kIo, ...) are transient.
Result<OutgoingDraft> ReadOutboxFolder(const std::string& folder, const Orgnr& me,
                                       const OutboxLimits& limits);

// Moves outbox/<name> to outbox/.failed/<name>[-N]/ and writes error.txt there. Returns the new
// path.
Result<std::string> MoveToFailed(const std::string& outbox, const std::string& name,
                                 const std::string& error);

}  // namespace bud::ip
