// Background WAL checkpoints. See checkpointer.h.
#include "common/storage/checkpointer.h"

#include "common/clock.h"
#include "common/log.h"

namespace bud::storage {

Result<std::unique_ptr<Checkpointer>> Checkpointer::Attach(Db& db, int64_t pages,
                                                           int64_t hard_factor) {
  if (pages <= 0 || hard_factor < 2) {
    return Status(Code::kInvalidArgument, "checkpointer: pages must be > 0, hard_factor >= 2");
  }
  BUD_ASSIGN_OR_RETURN(auto own, Db::Open(db.path()));
  std::unique_ptr<Checkpointer> c(new Checkpointer(db, std::move(own), pages, hard_factor));
  // Replaces SQLite's automatic checkpoint, which is a WAL hook too.
  sqlite3_wal_hook(db.raw(), &Checkpointer::OnCommit, c.get());
  c->thread_ = std::thread([p = c.get()] { p->Loop(); });
  return c;
}

Checkpointer::Checkpointer(Db& db, std::unique_ptr<Db> own, int64_t pages, int64_t hard_factor)
    : db_(db), own_(std::move(own)), pages_(pages), hard_pages_(pages * hard_factor) {}

Checkpointer::~Checkpointer() {
  sqlite3_wal_autocheckpoint(db_.raw(), 1000);  // SQLite's default hook again
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

// In the writer's thread, after its commit (the write lock is already released).
int Checkpointer::OnCommit(void* self, sqlite3* db, const char* name, int wal_pages) {
  auto* c = static_cast<Checkpointer*>(self);
  if (wal_pages >= c->hard_pages_) {
    c->writer_runs_.fetch_add(1);
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    return SQLITE_OK;
  }
  if (wal_pages >= c->pages_) {
    {
      std::lock_guard lock(c->mu_);
      c->wanted_ = true;
    }
    c->cv_.notify_one();
  }
  return SQLITE_OK;
}

void Checkpointer::Loop() {
  int64_t last_warning_mono_ms = -60000;
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return wanted_ || stop_; });
    if (stop_) return;
    wanted_ = false;
    lock.unlock();
    const int rc = sqlite3_wal_checkpoint_v2(own_->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                             nullptr, nullptr);
    background_runs_.fetch_add(1);
    // The writer takes over at the hard limit; nothing is lost by a failed checkpoint. A failure
    // that persists (a full disk) is said once a minute, not after every commit.
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && MonoMs() - last_warning_mono_ms >= 60000) {
      last_warning_mono_ms = MonoMs();
      Logger("storage")->warn("background checkpoint of '{}' failed: {}", own_->path(),
                              own_->Error(rc, "wal checkpoint").message());
    }
    lock.lock();
  }
}

}  // namespace bud::storage
