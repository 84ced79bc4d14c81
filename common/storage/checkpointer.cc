// Background WAL checkpoints. See checkpointer.h.
#include "common/storage/checkpointer.h"

#include <algorithm>

#include "common/clock.h"
#include "common/log.h"
#include "common/storage/paced_vfs.h"

namespace bud::storage {

Result<std::unique_ptr<Checkpointer>> Checkpointer::Attach(Db& db, int64_t pages,
                                                           int64_t hard_factor,
                                                           int64_t finish_pages) {
  if (pages <= 0 || hard_factor < 2 || finish_pages >= pages) {
    return Status(Code::kInvalidArgument,
                  "checkpointer: pages must be > 0, hard_factor >= 2, finish_pages < pages");
  }
  if (finish_pages < 0) finish_pages = std::clamp<int64_t>(pages / 64, 1, 64);
  // Its writes to the database file paced, so that a commit's flush never waits for a burst.
  Db::Options options;
  options.vfs = PacedWritesVfs();
  BUD_ASSIGN_OR_RETURN(auto own, Db::Open(db.path(), options));
  std::unique_ptr<Checkpointer> c(
      new Checkpointer(db, std::move(own), pages, hard_factor, finish_pages));
  // Replaces SQLite's automatic checkpoint, which is a WAL hook too.
  sqlite3_wal_hook(db.raw(), &Checkpointer::OnCommit, c.get());
  c->thread_ = std::thread([p = c.get()] { p->Loop(); });
  return c;
}

Checkpointer::Checkpointer(Db& db, std::unique_ptr<Db> own, int64_t pages, int64_t hard_factor,
                           int64_t finish_pages)
    : db_(db),
      own_(std::move(own)),
      pages_(pages),
      hard_pages_(pages * hard_factor),
      finish_pages_(finish_pages) {}

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
  if (c->finish_.exchange(false)) {
    // The thread copied up to `copied_`. Fewer frames than that: the WAL started again already.
    const int64_t left = wal_pages - c->copied_.load();
    if (left <= 0) return SQLITE_OK;
    if (left <= c->finish_pages_) {
      c->writer_finishes_.fetch_add(1);
      sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      return SQLITE_OK;
    }
  }
  if (wal_pages >= c->pages_) {
    {
      std::lock_guard lock(c->mu_);
      if (c->running_) return SQLITE_OK;  // the first commit after its checkpoint decides
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
    running_ = true;
    lock.unlock();
    int log = 0, copied = 0;
    const int rc =
        sqlite3_wal_checkpoint_v2(own_->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    background_runs_.fetch_add(1);
    if (rc == SQLITE_OK) {
      // The writer's next commit decides: the few frames since are its own to copy, more wake
      // this thread again (OnCommit).
      copied_.store(copied);
      finish_.store(true);
    } else if (rc != SQLITE_BUSY && MonoMs() - last_warning_mono_ms >= 60000) {
      // The writer takes over at the hard limit; nothing is lost by a failed checkpoint. A
      // failure that persists (a full disk) is said once a minute, not after every commit.
      last_warning_mono_ms = MonoMs();
      Logger("storage")->warn("background checkpoint of '{}' failed: {}", own_->path(),
                              own_->Error(rc, "wal checkpoint").message());
    }
    lock.lock();
    running_ = false;
  }
}

}  // namespace bud::storage
