// The outbox side of the folder contract (../shared/DESIGN.md, "The folder contract").
//
// outbox/<any-name>/message.json + files. A folder is ready once message.json exists. A bad
// folder is moved to outbox/.failed/<name>/ with an error.txt saying what is wrong; it is never
// deleted. Hidden entries (".failed", ".tmp", ".x") are not messages.
//
// The outbox is written by the archive system, and so by anyone who can write there: its
// contents are hostile input (docs/security.md, "The outbox"). Every file is opened once, with
// O_NOFOLLOW through openat on the folder's descriptor, checked on that descriptor (a regular
// file with one link) and read from it; the folder and message.json must not be links; error.txt
// is created with O_EXCL|O_NOFOLLOW; names written into text are escaped.
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include "common/fs.h"
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
  // [agency] on_behalf_of: the other senders ("0192:<orgnr>") and sub-units
  // ("0192:<orgnr>:<orgnr of the part>") this point may send for, as SenderParty writes them.
  std::vector<std::string> on_behalf_of = {};
  // [next_move] message_channel: the point's message channel ("" = none). An SBD gets it as its
  // MessageChannel scope; one naming another channel is refused (sbd.h).
  std::string message_channel = {};
};

// A sender party as written in an SBD or message.json: "0192:<orgnr>" or a sub-unit
// "0192:<orgnr>:<orgnr of the part>" (each a valid organisation number; "0192:" may be left out
// of the first), written back in that form. kBadOrgnr (saying which) otherwise.
Result<std::string> SenderParty(std::string_view text);

// The sender a message is sent for: `claimed` ("" = the point's own organisation `me`) when it
// is `me` or listed in limits.on_behalf_of; kInvalidArgument ("<what> is ... but this
// integration point sends for ...") otherwise. The envelope's sender stays `me` either way.
Result<std::string> OnBehalfOf(const std::string& claimed, const Orgnr& me,
                               const OutboxLimits& limits, const std::string& what);

// What an outbox folder asks for, validated: routing fields, ids and the payload to encrypt.
struct OutgoingDraft {
  std::string message_id;
  std::string conversation_id;
  Orgnr receiver;
  std::string process;
  std::string document_type;
  std::string title;
  std::string message_reference;  // from arkivmelding.xml (arkivmelding.h), "" when none
  int64_t created_ms = 0;
  int64_t expires_ms = 0;
  wire::Payload payload;  // attachments + metadata; ids filled in
};

// The latest expectedResponseDateTime accepted, from now: a message cannot ask the broker and
// the receiver to keep it for years.
constexpr int64_t kMaxTtlMs = 90LL * 24 * 3600 * 1000;

// One outbox folder, opened for take-in. The folder and its message.json are open (no links
// followed) and message.json is read; the other entries are only listed: ReadOutboxFolder opens
// each of them once. Not copyable; `dir` is closed when it goes.
struct OutboxFolder {
  std::string path;  // outbox/<name>, for messages and the folder key
  std::string name;
  UniqueFd dir;
  struct stat message_json_st {};
  std::string message_text;
  std::vector<std::string> entries;  // every name but message.json, sorted
  uint64_t listed_bytes = 0;         // regular files' sizes by lstat: only to choose the large path
  // Filled by ReadOutboxFolder: each attachment as it was checked on its open descriptor.
  struct Taken {
    std::string name;
    dev_t dev;
    ino_t ino;
  };
  std::vector<Taken> taken;
};

// Opens outbox/<name> (`outbox_fd` is the outbox) and reads its message.json. kInvalidArgument
// when the folder or message.json is a link or not what it should be, or message.json is larger
// than JSON from outside may be (common/json.h); kNotFound when the folder or message.json is
// gone (not ready yet, or taken meanwhile).
Result<OutboxFolder> OpenOutboxFolder(int outbox_fd, const std::string& outbox,
                                      const std::string& name);

// Identifies one instance of a folder: its path and message.json's inode, size and mtime (from the
// open descriptor). Used to recognise a folder that was taken in but not yet removed when the
// process died.
std::string FolderKey(const OutboxFolder& folder);

// Parses and validates a message.json (no attachments yet). kInvalidArgument with a precise
// message for anything the archive system must fix.
Result<OutgoingDraft> ParseMessageJson(std::string_view text, const Orgnr& me,
                                       const OutboxLimits& limits);

// The expiry from an expectedResponseDateTime text: created + default_ttl_ms when empty;
// kInvalidArgument (prefixed with `what`) when it is not ISO 8601, not in the future, or more than
// kMaxTtlMs after `created_ms`.
Result<int64_t> ParseExpiry(const std::string& text, int64_t created_ms, int64_t default_ttl_ms,
                            const std::string& what);

// Messages of these document types carry no files: a receipt (arkivmelding_kvittering), a
// status, an avtalt message, an einnsyn_kvittering. `document_type` is the standard
// ("urn:no:difi:arkivmelding:xsd::arkivmelding_kvittering") or its last segment, in any case.
// Every other type needs at least one file.
bool TakesNoFiles(std::string_view document_type);

// When `xml` is the message's arkivmelding.xml (arkivmelding.h): its public title becomes the
// title (and the payload's) unless one was given, its reference the message's; kInvalidArgument
// when it cannot be read (the message is refused, as eFormidling refuses it).
Status TakeArkivmelding(OutgoingDraft& d, std::string_view xml);

// Checks one more attachment against the name rules, the size and count limits and the names
// already in the draft; AddAttachment also adds it (media type guessed from the name when empty).
Status CheckAttachmentLimits(const OutgoingDraft& d, const std::string& name, size_t size,
                             const OutboxLimits& limits);
Status AddAttachment(OutgoingDraft& d, const std::string& name, std::string media_type,
                     std::string data, const OutboxLimits& limits);

// Parses message.json and checks the folder's entries: each is opened once (O_NOFOLLOW, on the
// folder's descriptor) and checked on the descriptor; with limits.read_data it is read from
// that descriptor into the draft, else its size goes into the draft and its identity into
// folder.taken (for MoveOutboxFiles). kInvalidArgument with a precise message for anything the
// archive system must fix; other codes (kIo, ...) are transient.
Result<OutgoingDraft> ReadOutboxFolder(OutboxFolder& folder, const Orgnr& me,
                                       const OutboxLimits& limits);

// For a large message: moves message.json and the files in folder.taken into `target`, a new
// directory this process creates (its parent must exist and be this process's own), one rename
// each, and checks that each entry moved is the very file that was checked (same device and
// inode, a regular file with one link): a file swapped for a link or another file meanwhile
// is kInvalidArgument, and then everything moved goes back. A later reader opens the files by
// name in `target`, which no one else can change.
Status MoveOutboxFiles(OutboxFolder& folder, const std::string& target);

// Moves outbox/<name> to outbox/.failed/<name>[-N]/ and creates error.txt there with
// O_EXCL|O_NOFOLLOW (so nothing is written through a link the folder holds). An entry that is
// not a directory (a link) is moved into a new .failed/<name>[-N]/ beside its error.txt. Control
// characters in `error` are escaped, so a file name cannot add lines. Returns the new path.
Result<std::string> MoveToFailed(const std::string& outbox, const std::string& name,
                                 const std::string& error);

}  // namespace bud::ip
