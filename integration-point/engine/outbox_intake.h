// Outbox intake: folders the archive system writes to outbox/ become outgoing messages
// (OPPRETTET, state new) in the store (docs/DESIGN's folder contract, outbox.h).
// Operation: Scan lists the outbox (on inotify or every rescan_ms) and takes ready folders in,
// at most kTakePerScan a turn (dirty() stays true while more wait): each opened once, read and
// checked (outbox.h), its receiver checked in the registry, stored in the turn, and removed only
// after the turn's commit. A refused folder moves to outbox/.failed with error.txt and is
// recorded in the store's refusals (refusal_store.h) until a folder of that name is taken in;
// one that cannot be taken in now (registry down, store busy) stays. A large folder's files move
// into spool/src/<id>/ before the commit (the sender seals them as a stream).
// Concurrency: the engine thread; it owns the inotify descriptor.
#pragma once

#include <functional>
#include <string>

#include "common/orgnr.h"
#include "common/status.h"
#include "integration-point/config.h"
#include "integration-point/engine/clock.h"
#include "integration-point/engine/registry_lookup.h"
#include "integration-point/engine/turn.h"
#include "integration-point/message_state.h"
#include "integration-point/outbox.h"
#include "integration-point/store/point_store.h"

namespace bud::ip {

class OutboxIntake {
 public:
  // Every reference must outlive the intake. `taken` is called for each message stored.
  OutboxIntake(const Config& config, Orgnr me, OutgoingStore& store, RefusalStore& refusals,
               Turn& turn, RegistryLookup& registry, const Clock& clock,
               std::function<void()> taken);
  ~OutboxIntake();
  OutboxIntake(const OutboxIntake&) = delete;
  OutboxIntake& operator=(const OutboxIntake&) = delete;

  // Starts watching the outbox (inotify; without it the rescan timer alone).
  void Watch();
  int notify_fd() const { return inotify_fd_; }
  // Reads the pending inotify events: the outbox changed.
  void DrainNotify();
  void MarkDirty() { dirty_ = true; }
  bool dirty() const { return dirty_; }
  // True when the outbox should be scanned now (changed, or rescan_ms passed).
  bool Due() const;
  void Scan();

 private:
  void TakeFolder(const std::string& name);
  // Moves a refused folder aside with the reason and records the refusal.
  void Refuse(const std::string& name, const Status& why, RefusalClass klass);
  // Reads and checks the opened folder into a row (and its number of attachments); empty when
  // refused or not ready (logged).
  std::optional<MessageRow> ReadFolder(OutboxFolder& folder, const std::string& name, bool large,
                                       int& attachments);
  Status MoveIntoSpool(OutboxFolder& folder, const std::string& message_id);
  void RemoveAfterCommit(const std::string& name, const char* what);

  const Config& config_;
  const Orgnr me_;
  OutgoingStore& store_;
  RefusalStore& refusals_;
  Turn& turn_;
  RegistryLookup& registry_;
  const Clock& clock_;
  std::function<void()> taken_;
  // Folders taken in or refused by one Scan at most (the rest wait for the next turn).
  static constexpr size_t kTakePerScan = 64;
  size_t handled_ = 0;  // folders taken in or refused so far
  int inotify_fd_ = -1;
  bool dirty_ = true;
  int64_t last_scan_mono_ = 0;
};

}  // namespace bud::ip
