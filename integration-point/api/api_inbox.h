// Incoming messages kept for the archive system ([incoming] delivery = "api"): peek locks the
// oldest one for [http] peek_lock_ms, pop gives the locked one's attachments as an ASiC-E
// container signed with this point's signing key (asic.h), delete records INNKOMMENDE_LEVERT and
// has the engine report LEVERT.
//
// Operation: called on the HTTP server's threads; the store's mutex is held for each store call
// and never while a container's bytes are read. After a delete it wakes the engine, which gives
// the queued LEVERT to the broker.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "integration-point/api/shared_store.h"
#include "integration-point/asic.h"
#include "integration-point/config.h"

namespace bud::ip::api {

// The attachments of an incoming message kept for the API, for its pop container: files in
// `api_inbox`/<id>/ for a streamed one (row.files), else the stored payload's bytes.
Result<std::vector<AsicFile>> AsicFiles(const MessageRow& row, const std::string& api_inbox);

// The main document (the business message's "hoveddokument") of the SBD the stored payload of
// `row` carries; "" when there is none.
std::string MainDocument(const MessageRow& row);

class ApiInbox {
 public:
  // `wake` makes the engine look at the store now; `now_ms` is the clock (NowMs when running).
  ApiInbox(const Config& config, SharedStore& store, std::function<void()> wake,
           std::function<int64_t()> now_ms);

  // The SBD of the message it locked; nullopt when none waits (`process` filters when set).
  Result<std::optional<nlohmann::json>> Peek(const std::string& process);
  // The same for the oldest unlocked message matching `filter` (`peek?messageId=X` locks X).
  Result<std::optional<nlohmann::json>> PeekMatching(const IncomingFilter& filter);
  // A page (number `page` of `size`) of the SBDs of the messages waiting that match `filter`,
  // locked or not, oldest first.
  Result<nlohmann::json> List(const IncomingFilter& filter, int64_t page, int64_t size);
  // The locked message's container, ready to be read piece by piece; null for a message
  // without files (a receipt). kConflict when it is not locked, kNotFound when unknown or
  // already deleted.
  Result<std::shared_ptr<AsicStream>> Pop(const std::string& id);
  // Done with it: INNKOMMENDE_LEVERT, LEVERT queued for the sender. kConflict / kNotFound as Pop.
  Status Delete(const std::string& id);
  // Delete, answering the message's SBD as eFormidling's DELETE does.
  Result<nlohmann::json> DeleteReturningSbd(const std::string& id);

 private:
  const Config& config_;
  SharedStore& store_;
  std::function<void()> wake_;
  std::function<int64_t()> now_ms_;
};

}  // namespace bud::ip::api
