// Drafts of the HTTP API's large-message flow (docs/http-api.md, "Large files"): created from an
// SBD (POST /api/messages/out), a file at a time (PUT, streamed to disk; the same name again
// replaces it), sent (POST .../{id}: read into the message when small, hard-linked into the spool
// and streamed when large) or deleted.
//
// Operation: called on the HTTP server's threads. An upload's bytes go to a new file in
// spool/drafts/<id>/ (data_dirs.h) without the store's mutex; only when it is complete and
// synced does the store point at it, in one commit that replaces an earlier file of the same
// name. Whatever fails on the way (too large, disk full, the client gone) leaves the draft as it
// was.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "integration-point/api/outgoing.h"
#include "integration-point/api/shared_store.h"
#include "integration-point/config.h"

namespace bud::ip::api {

// A request body read piece by piece: the source calls the sink with each piece and returns
// true when the body ended, false when the sink refused a piece or the body was cut short
// (httplib's ContentReader is one; a test passes a string).
using ByteSink = std::function<bool(const char*, size_t)>;
using ByteSource = std::function<bool(const ByteSink&)>;

// What a PUT says of its file.
struct FileUpload {
  std::string filename;                     // Content-Disposition's filename
  std::string title;                        // its name
  std::string media_type;                   // Content-Type; guessed from the name when empty
  std::optional<uint64_t> announced_bytes;  // Content-Length, when sent
};

class Drafts {
 public:
  Drafts(const Config& config, SharedStore& store, OutgoingMessages& outgoing);

  // A new draft from the SBD in `body` (JSON text); the completed SBD. kAlreadyExists for a
  // used message id.
  Result<nlohmann::json> Create(const std::string& body);
  // Adds (or replaces) one file. kNotFound without the draft, kTooLarge past
  // outbox.max_message_bytes for the draft's files together, kDiskFull, kInvalidArgument for a
  // body cut short or a bad name.
  Status Upload(const std::string& id, const FileUpload& file, const ByteSource& body);
  // Sends the draft: the completed SBD once it is taken in (OPPRETTET).
  Result<nlohmann::json> Send(const std::string& id);
  // kConflict once sent, kNotFound when there never was one.
  Status Delete(const std::string& id);
  // The draft's SBD, or a sent message's.
  Result<nlohmann::json> Get(const std::string& id);

 private:
  struct Loaded {
    OutgoingDraft draft;
    nlohmann::json sbd;
    std::vector<DraftFile> files;
  };
  Result<uint64_t> CheckUpload(const std::string& id, const std::string& filename);
  Result<uint64_t> WriteBody(const std::string& id, const FileUpload& file, const std::string& path,
                             uint64_t others, const ByteSource& body);
  Status Record(const std::string& id, const FileUpload& file, const std::string& stored,
                uint64_t bytes);
  Result<Loaded> Load(const std::string& id);
  Result<nlohmann::json> SendSmall(Loaded loaded);
  Result<nlohmann::json> SendStreamed(Loaded loaded);
  Status TakeArkivmelding(OutgoingDraft& draft, const DraftFile& f);
  Status PlaceInSpool(const std::vector<DraftFile>& files, const std::string& id);
  OutboxLimits UploadLimits() const;

  const Config& config_;
  SharedStore& store_;
  OutgoingMessages& outgoing_;
};

}  // namespace bud::ip::api
