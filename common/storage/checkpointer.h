// Background WAL checkpoints for a store written by one thread.
//
// A WAL checkpoint copies every page changed since the last one into the database file and fsyncs
// it. SQLite's automatic checkpoint does that inside the commit that crosses its threshold, so the
// writer (the broker's event loop) stalls for the whole copy: the latency spikes of a group commit
// behind a checkpoint.
//
// Operation: Attach turns off the connection's automatic checkpoint and installs a WAL hook. After
// a commit that leaves at least `pages` frames in the WAL, a thread with its own connection copies
// them into the database file (PASSIVE: it never waits for the writer and never blocks it); the
// next commit wakes it again when many frames came meanwhile, and otherwise copies the few left
// itself: a checkpoint that reaches the WAL's end with no commit in between is what lets SQLite
// start the WAL again from its beginning, and a thread that chased a busy writer ran a checkpoint
// (two fsyncs) after nearly every commit. Should the WAL
// still reach `hard_factor` times `pages` (the thread fell behind or keeps failing), the writer
// checkpoints itself after that commit, as SQLite's automatic checkpoint would. Durability is
// SQLite's either way: a commit is durable in the WAL when it returns; a checkpoint only moves
// pages. Destroy the Checkpointer before the Db it is attached to.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/storage/sqlite.h"

namespace bud::storage {

class Checkpointer {
 public:
  // `finish_pages`: see finish_pages_ (-1: the default, from `pages`).
  static Result<std::unique_ptr<Checkpointer>> Attach(Db& db, int64_t pages,
                                                      int64_t hard_factor = 8,
                                                      int64_t finish_pages = -1);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Checkpoints run by the thread; by the writer because the WAL reached the hard limit; and by
  // the writer to copy the last frames the thread left it.
  int64_t background_runs() const { return background_runs_.load(); }
  int64_t writer_runs() const { return writer_runs_.load(); }
  int64_t writer_finishes() const { return writer_finishes_.load(); }

 private:
  Checkpointer(Db& db, std::unique_ptr<Db> own, int64_t pages, int64_t hard_factor,
               int64_t finish_pages);
  static int OnCommit(void* self, sqlite3* db, const char* name, int wal_pages);
  void Loop();

  Db& db_;
  std::unique_ptr<Db> own_;  // the thread's connection
  const int64_t pages_;
  const int64_t hard_pages_;
  // A commit that finds at most this many frames beyond the thread's last checkpoint copies them
  // itself (pages / 64, at most 64: about a millisecond of the writer's time).
  const int64_t finish_pages_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wanted_ = false;
  bool running_ = false;
  bool stop_ = false;
  // Set by the thread after each checkpoint, with the frames it had copied.
  std::atomic<bool> finish_{false};
  std::atomic<int64_t> copied_{0};
  std::atomic<int64_t> background_runs_{0};
  std::atomic<int64_t> writer_runs_{0};
  std::atomic<int64_t> writer_finishes_{0};
  std::thread thread_;
};

}  // namespace bud::storage
