// Refused intake: every outbox folder the point moved to outbox/.failed/ and every Next Move API
// request refused after its body was taken, with its name, time and reason, so an admin finds
// what was never sent (`bud-ip status --failed`, the status page, /metrics, /api/refusals). A
// folder's refusal stays open until a folder of the same name (its outbox name or its name in
// .failed) is taken in, an API request's until a message of the id it named is taken in through
// the API; then it is resolved with that message's id. An admin may also dismiss one (resolved
// with no message id). Schema in docs/storage.md.
//
// Operation: a view on a PointDb (point_db.h), used on the thread that owns it; the engine writes
// (inside its turn), readers use a read-only PointDb.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "integration-point/store/point_db.h"

namespace bud::ip {

// Why something was refused, coarsely (the metrics' label; the full reason is `reason`).
enum class RefusalClass {
  kFolder,      // not a folder we may read: a link, unsafe entries, unreadable layout
  kMetadata,    // message.json missing, malformed or incomplete; attachments not as listed
  kReceiver,    // receiver unknown to the registry, or it does not take the process/type
  kDuplicate,   // the message id was taken in before
  kAttachment,  // an attachment changed or could not be moved into the spool
  kApi,         // a Next Move API request refused after its body was taken
};
inline constexpr RefusalClass kRefusalClasses[] = {
    RefusalClass::kFolder,    RefusalClass::kMetadata,   RefusalClass::kReceiver,
    RefusalClass::kDuplicate, RefusalClass::kAttachment, RefusalClass::kApi};
const char* Text(RefusalClass c);

struct RefusalRow {
  int64_t id = 0;
  std::string source;      // "outbox" or "api"
  std::string name;        // the outbox folder's name, or the API request ("POST /api/...")
  std::string moved_to;    // where the folder is now (outbox/.failed/<name>), "" for the API
  std::string message_id;  // API: the message id the request named ("" when none)
  std::string reason;
  RefusalClass reason_class = RefusalClass::kMetadata;
  int64_t refused_ms = 0;
  int64_t resolved_ms = 0;          // 0 while open
  std::string resolved_message_id;  // "" with resolved_ms set: dismissed by an admin
};

struct RefusalCounts {
  std::map<std::string, int64_t> by_class;  // every refusal ever recorded, by class text
  int64_t open = 0;
};

class RefusalStore {
 public:
  explicit RefusalStore(PointDb& db) : db_(db) {}  // `db` must outlive this view

  // Stores `row` (its id and resolution ignored); returns its id.
  Result<int64_t> Record(const RefusalRow& row);
  // The open outbox refusals named `folder` (by outbox name or by the basename of moved_to) are
  // resolved: the folder was taken in as `message_id`. Returns how many.
  Result<int> ResolveOutbox(const std::string& folder, const std::string& message_id,
                            int64_t at_ms);
  // The open API refusals that named `message_id` are resolved: a message of that id was taken
  // in through the API. Returns how many.
  Result<int> ResolveApi(const std::string& message_id, int64_t at_ms);
  // An admin dismisses refusal `id` (resolved, no message): kNotFound when there is no such open
  // refusal.
  Status Dismiss(int64_t id, int64_t at_ms);
  // Newest first, at most `limit`; resolved ones only with `include_resolved`.
  Result<std::vector<RefusalRow>> List(bool include_resolved, int limit);
  Result<RefusalCounts> Counts();

 private:
  PointDb& db_;
};

}  // namespace bud::ip
