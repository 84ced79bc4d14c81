// The inbox side of the folder contract: inbox/<message-id>/ appears atomically, with
// message.json (who, what, when, verified signer) and the decrypted attachments.
//
// Written under inbox/.tmp/<message-id>/, every file fsynced, then renamed into place and the
// inbox directory fsynced. Files are created 0640 and folders 0750.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/crypto/envelope.h"
#include "common/status.h"

namespace bud::ip {

struct SignerInfo {
  std::string subject;
  std::string orgnr;
  std::string fingerprint;  // hex SHA-256 of the certificate
};

// Writes the message unless inbox/<id>/ already exists (a redelivery after a crash that
// happened between the rename and the store's commit): then it is left as it is.
// The message.json of an inbox folder; `files` lists the attachments (name, mediaType, size,
// sha256). Shared by WriteInbox and the streamed path (stream_receive.cc).
nlohmann::json InboxMessageJson(const wire::Header& h, const std::string& title,
                                const std::string& metadata_json, const SignerInfo& signer,
                                int64_t received_ms, nlohmann::json files);

Status WriteInbox(const std::string& inbox, const crypto::Opened& opened, const SignerInfo& signer,
                  int64_t received_ms);

}  // namespace bud::ip
