// Where the integration point keeps files beside its store (docs/storage.md, "Files"): all under
// the store's directory, so one file system holds them and a rename moves them.
// (<id>: the message id in lower case, LowerId)
//   spool/src/<id>/        a large message's attachments, taken in, until sealed
//   spool/out-<id>, in-<id> streamed envelopes being sent / received
//   spool/drafts/<id>/     the files PUT to a draft of the HTTP API (one file per upload)
//   api-in/<id>/           a streamed message received for the HTTP API, until deleted
//   api-in/.tmp/<id>/      the same while it is being decrypted
#pragma once

#include <string>

#include "common/fs.h"
#include "integration-point/config.h"
#include "integration-point/message_state.h"

namespace bud::ip {

inline std::string DataDir(const Config& c) { return ParentDir(AbsolutePath(c.store)); }
inline std::string SpoolDir(const Config& c) { return JoinPath(DataDir(c), "spool"); }
inline std::string SpoolSource(const Config& c, const std::string& message_id) {
  return JoinPath(JoinPath(SpoolDir(c), "src"), LowerId(message_id));
}
inline std::string DraftsDir(const Config& c) { return JoinPath(SpoolDir(c), "drafts"); }
inline std::string DraftDir(const Config& c, const std::string& message_id) {
  return JoinPath(DraftsDir(c), LowerId(message_id));
}
inline std::string ApiInboxDir(const Config& c) { return JoinPath(DataDir(c), "api-in"); }

}  // namespace bud::ip
