// Outgoing messages of the HTTP API: the checks every way in shares (multipart, the JSON POST of
// a draft, sending a draft) and the take-in through the engine.
//
// Operation: called on the HTTP server's threads. The receiver is looked up in the address
// registry (RegistryLookup); take-in is the engine's (Engine::TakeIn), which stores the message
// with the loop turn's commit and answers after it.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/orgnr.h"
#include "common/status.h"
#include "integration-point/api/registry_lookup.h"
#include "integration-point/outbox.h"
#include "integration-point/store/point_store.h"

namespace bud::ip::api {

// One file of a multipart request.
struct UploadedFile {
  std::string name;
  std::string media_type;
  std::string content;
};

// A step that must succeed right before take-in (a streamed draft's files put into the spool),
// and what undoes it when it or the take-in failed.
struct Placement {
  std::function<Status()> place;
  std::function<void()> undo;
};

class OutgoingMessages {
 public:
  // `take_in` stores a message durably (Engine::TakeIn; in tests OutgoingStore::CreateOutgoing).
  OutgoingMessages(Orgnr me, OutboxLimits limits, RegistryLookup& registry,
                   std::function<Status(MessageRow)> take_in);

  const Orgnr& me() const { return me_; }
  const OutboxLimits& limits() const { return limits_; }

  // Validates an SBD (kInvalidArgument naming the field) into a draft without attachments;
  // `completed` gets the SBD with generated ids and creationDateAndTime.
  Result<OutgoingDraft> Parse(const nlohmann::json& sbd, nlohmann::json* completed) const;
  // The receiver's registry entry when it accepts the draft's process and document type.
  Result<wire::RegistryEntry> CheckReceiver(const OutgoingDraft& d);

  // POST /api/messages/out/multipart: the SBD's JSON text and its files, sent at once.
  Result<nlohmann::json> SendWithFiles(const std::string& sbd_text,
                                       const std::vector<UploadedFile>& files);
  // Checks the attachments and the receiver and takes `d` in; the completed SBD `sbd` when it
  // was. `placement` runs after the checks, right before the take-in.
  Result<nlohmann::json> Submit(OutgoingDraft d, nlohmann::json sbd,
                                const Placement& placement = {});

 private:
  Status CheckAttachments(const OutgoingDraft& d, const nlohmann::json& sbd) const;
  MessageRow RowOf(const OutgoingDraft& d) const;

  Orgnr me_;
  OutboxLimits limits_;
  RegistryLookup& registry_;
  std::function<Status(MessageRow)> take_in_;
};

}  // namespace bud::ip::api
