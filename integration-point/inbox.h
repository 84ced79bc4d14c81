// The inbox side of the folder contract: inbox/<message-id>/ appears atomically, with
// message.json (who, what, when, verified signer) and the decrypted attachments.
//
// Written under inbox/.tmp/batch-<uuid>/<message-id>/, made durable, then renamed into place and
// the inbox directory fsynced. Files are created 0640 and folders 0750. The engine writes the
// folders of one loop turn as a batch (InboxBatch: one syncfs for the turn instead of an fsync per
// file and folder).
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "common/crypto/envelope.h"
#include "common/status.h"

namespace bud::ip {

struct SignerInfo {
  std::string subject;
  std::string orgnr;
  std::string fingerprint;  // hex SHA-256 of the certificate
};

// The message.json of an inbox folder; `files` lists the attachments (name, mediaType, size,
// sha256). Shared by WriteInbox and the streamed path (engine/stream_receiver.cc).
nlohmann::json InboxMessageJson(const wire::Header& h, const std::string& title,
                                const std::string& metadata_json, const SignerInfo& signer,
                                int64_t received_ms, nlohmann::json files);

// The text of a message.json: indented, and invalid UTF-8 (which the sender's fields may hold)
// replaced by U+FFFD instead of throwing.
std::string InboxJsonText(const nlohmann::json& mj);

// Inbox folders written together. Operation: Stage writes a message's folder under
// inbox/.tmp/batch-<uuid>/<id>/ (one folder per batch) without any fsync; Publish makes every
// staged folder durable with one syncfs(2) of the inbox's file system, renames each into the
// inbox, fsyncs the inbox directory once and removes the batch's folder. The store may record a
// message as received only after Publish returned Ok (a crash in between leaves a folder that the
// redelivery finds in place: Stage leaves an existing inbox/<id>/ as it is). When Publish fails
// nothing staged may be recorded; the staged folders are removed and written again on redelivery.
// Concurrency: one thread (the engine's).
class InboxBatch {
 public:
  explicit InboxBatch(std::string inbox) : inbox_(std::move(inbox)) {}
  InboxBatch(const InboxBatch&) = delete;
  InboxBatch& operator=(const InboxBatch&) = delete;

  // Writes the message's folder unless inbox/<id>/ exists already or it is staged.
  Status Stage(const crypto::Opened& opened, const SignerInfo& signer, int64_t received_ms);
  // Staged and not yet published: not in the inbox folder, although it will be.
  bool Staged(const std::string& message_id) const { return staged_.contains(message_id); }
  bool empty() const { return staged_.empty(); }
  Status Publish();

 private:
  Status PublishFrom(const std::string& batch, const std::set<std::string>& staged);

  std::string inbox_;
  std::set<std::string> staged_;  // message ids
  std::string batch_dir_;         // inbox/.tmp/batch-<uuid>, once the batch has one
};

}  // namespace bud::ip
