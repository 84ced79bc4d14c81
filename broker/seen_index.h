// The message-id index of the SQLite broker store's `seen` log (docs/storage.md, "The id index").
//
// Why: `seen` keyed by the random message id dirtied one random B-tree page per message in every
// commit, two thirds of what the broker wrote. `seen` is now a log in commit order (its rows land
// on its last page), and this index finds a row by id: the rows of recent commits in memory, older
// ones in a side file beside the store (`<store>.ids`, SQLite, tables `runs` and `chunks`) that a
// thread fills. The file is a log-structured merge tree: each merge writes its ids as a new run,
// sorted (a keyed 64-bit hash of the id and the row number, 16 bytes an entry), in chunks of
// about a page each (RunWriter::kChunkEntries), one row a chunk: a merge of 65,536 ids is ~270
// inserts at the B-tree's end. kFanIn runs of one level are merged into one of the next, up to
// kTopLevel. The merge takes the ids from the loop's own record of its commits (log_), not from
// the store. Until this layout, one B-tree of the text ids took a row insert per id, each merge
// read its rows back from the store, and a batch of random ids dirtied most of the B-tree's pages:
// the merge thread was 17 % of the broker's CPU at full load (docs/benchmarks.md, "Eleventh
// round").
// Truth: the store's `seen` rows. The side file is derived and never trusted alone: every
// candidate row number the index gives is checked against the row itself by the store (its
// message_id must be the id asked for), so a stale or foreign entry costs a read, never a wrong
// answer. The hashes are keyed by a seed chosen when the file is built and kept in it: a
// collision is one more candidate. Its watermark says which rows it holds; every row above it is
// read back into memory at open. A side file that is missing, damaged, of an older layout, without
// a seed or of another store (its token) is rebuilt from `seen`.
// Operation: owned by the broker's loop through SqliteQueueStore, which calls Stage / Commit /
// Drop around each transaction and Tick after it. The merge thread has its own connection to the
// side file (its only writer; its checkpoints go through the paced-writes VFS); the loop hands it
// the entries committed since the last merge and takes the outcome back at a later Tick, so the
// loop never waits for a merge. After a merge the thread merges full levels, in transactions of
// their own.
// A Bloom filter over the side file's ids (16 bits an id when built, 7 probes, at most 16 MiB;
// built by the thread from the side file after open and again when it has grown to 8 bits an id,
// kept up by the loop after each merge) answers most lookups of a new id, the usual case of a
// submit, without reading the side file. A lookup that reads it reads one chunk a run; a pruned
// id stays in the filter (it costs a read, never a wrong answer).
// Memory: a hash of the id and the row number per row not yet merged (about 50 bytes in the hash
// map, 16 in the log). A merge starts at kMergeAt such rows (or at a forced Tick); if merges keep
// failing (the side file's disk is full), Room() refuses new ids at kCapFactor merges' worth
// (524,288 by default) rather than grow without bound. A merge of levels reads its runs kMergeRead
// entries at a time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/storage/sqlite.h"

namespace bud::broker {

class SeenIndex {
 public:
  static constexpr int64_t kMergeAt = 65536;
  static constexpr int64_t kCapFactor = 8;
  // Ids of a finished merge that leave memory at each Tick (Drain).
  static constexpr size_t kDrainChunk = 2048;
  // The merge thread's nice value (the loop's is the process's).
  static constexpr int kThreadNice = 19;
  // Runs of a level merged into one of the next; the top level's runs (kFanIn^kTopLevel merges'
  // worth, 1,048,576 ids by default) are not merged again, so that no merge of levels holds the
  // thread for long. Lookups that read the file search every run: at most kFanIn - 1 a level
  // below the top, and one a 1,048,576 ids above it.
  static constexpr int kFanIn = 4;
  static constexpr int kTopLevel = 2;
  static constexpr int64_t kMergeRead = 4096;

  // Opens (creating or rebuilding) the side file at `path` for the store open in `store` (schema
  // with the `seen` log and store_meta's seen_index_token). Rows above the side file's watermark
  // are loaded into memory, or merged before returning when they are more than 4 * kMergeAt (a
  // lost side file). `merge_at` lowers kMergeAt (and the cap with it) for tests.
  static Result<std::unique_ptr<SeenIndex>> Open(const std::string& path, storage::Db& store,
                                                 int64_t merge_at = kMergeAt);
  ~SeenIndex();
  SeenIndex(const SeenIndex&) = delete;
  SeenIndex& operator=(const SeenIndex&) = delete;

  // The side file's path for a store at `store_path`.
  static std::string PathFor(const std::string& store_path);

  // Row numbers that may be `id`'s row; the caller checks each against the row. The rows of
  // recent commits are in memory (Recent); older ones in the side file (Merged).
  std::vector<int64_t> Recent(const std::string& id) const;
  Result<std::vector<int64_t>> Merged(const std::string& id);
  // Inside the store's transaction: `id` was written as row `n`. Kept apart until Commit() (the
  // transaction committed) or Drop() (it did not).
  void Stage(const std::string& id, int64_t n);
  void Commit();
  void Drop();
  // Rows deleted from `seen` (pruned): out of memory now, out of the side file with the next merge.
  void Forget(std::vector<std::pair<std::string, int64_t>> rows);
  // Takes a finished merge's outcome; starts a merge when kMergeAt rows wait, or when `force` and
  // any do (and none runs).
  void Tick(bool force);
  // Between them, Candidates reads the side file in one read transaction (one snapshot: call
  // Tick only after EndReads, so that a merge taken is visible to the next lookups).
  void BeginReads();
  void EndReads();
  // Empty while memory may take another id; otherwise why not (the side file cannot be written).
  std::string Room() const;

  // Every row number at or below it is in the side file (or was pruned).
  int64_t watermark() const { return watermark_; }
  int64_t in_memory() const { return static_cast<int64_t>(recent_.size() + merging_.size()); }
  int64_t merges() const { return merges_; }
  // Merges of a level's runs into one of the next (by the thread, counted when taken).
  int64_t level_merges() const { return level_merges_; }
  // Lookups that read the side file (the filter could not rule the id out), and whether the
  // filter is built.
  int64_t side_reads() const { return side_reads_; }
  bool filter_ready() const { return filter_ != nullptr; }
  int64_t merge_failures() const { return merge_failures_; }
  // Waits (at most `timeout_ms`) for a running merge, takes its outcome and moves its ids out of
  // memory; for tests and close.
  void Settle(int64_t timeout_ms);

 private:
  using Map = std::unordered_multimap<uint64_t, int64_t>;
  // A Bloom filter over id hashes (Hash): no false negatives.
  class Filter {
   public:
    explicit Filter(int64_t ids);  // sized for `ids` at 16 bits each (at least 2^20 bits)
    void Add(uint64_t h);
    bool MayContain(uint64_t h) const;
    // Past 8 bits an id: time to build a bigger one, unless it has the largest size already
    // (then it rules out fewer new ids as it fills: about 2 % wrongly kept at 8 bits an id).
    bool Full() const { return added_ * 8 > static_cast<int64_t>(bits_.size()) * 64; }
    bool Largest() const { return bits_.size() * 64 >= kMaxBits; }

   private:
    static constexpr uint64_t kMaxBits = uint64_t{1} << 27;  // 16 MiB: 8 million ids at 16 bits
    static constexpr int kProbes = 7;
    std::vector<uint64_t> bits_;
    uint64_t mask_;
    int64_t added_ = 0;
  };
  // An id's hash (as SQLite stores it) and its row number.
  using Entry = std::pair<int64_t, int64_t>;
  struct Job {
    int64_t upto = 0;  // the watermark once merged: every row n above the last one, up to it
    // Those rows, as the loop committed them (shared with the loop, which gives them back to its
    // log if the merge fails).
    std::shared_ptr<const std::vector<Entry>> entries;
    std::vector<Entry> forget;
    bool build_filter = false;  // instead of a merge: read every id of the side file
  };
  struct Outcome {
    bool done = false;
    Status status;
    std::unique_ptr<Filter> filter;  // a build_filter job's
    int64_t level_merges = 0;
  };

  SeenIndex(std::string path, int64_t merge_at, uint64_t seed);
  uint64_t Hash(std::string_view id) const;
  static void Erase(Map& map, uint64_t h, int64_t n);
  void Start();
  void Loop();
  // Writes `job` into the side file through `side`, in one transaction: its entries as a run,
  // its forgotten rows out of the runs, the watermark.
  Status Merge(storage::Db& side, const Job& job) const;
  // Writes the rows of `store` with from < n <= upto into the side file through `side`, in one
  // transaction, `chunk` rows a run (a lost side file, at open).
  Status Rebuild(storage::Db& store, storage::Db& side, int64_t from, int64_t upto,
                 int64_t chunk) const;
  // Writes `sorted` as a new run of `level` (inside a transaction).
  Status WriteRun(storage::Db& side, const std::vector<Entry>& sorted, int level) const;
  // Merges full levels (kFanIn runs below kTopLevel) into runs of the next, each in a transaction
  // of its own; counts them into `merged`.
  Status MergeLevels(storage::Db& side, int64_t* merged) const;
  // The level of a run of `ids` written at once (a rebuild's).
  int Level(int64_t ids) const;
  // A filter over every id in the side file, read through `side`.
  Result<std::unique_ptr<Filter>> BuildFilter(storage::Db& side) const;
  // Hands `job` to the thread.
  void Hand(std::unique_ptr<Job> job);
  // After a merge: moves up to `most` of its ids from memory into the filter (all of them at once
  // cost the loop 6-9 ms of one commit, the freeing of 65,536 nodes and the filter's random
  // writes). Until they have all left, they are still found in memory and no job starts.
  void Drain(size_t most);

  const std::string path_;
  const int64_t merge_at_;
  const uint64_t seed_;
  std::unique_ptr<storage::Db> reader_;  // the loop's read connection to the side file
  bool reading_ = false;                 // inside BeginReads
  Map pending_, recent_, merging_;
  // The same rows in commit order, as the merge takes them: staged, committed and not yet handed
  // to a merge, and handed to the running one.
  std::vector<Entry> staged_, log_;
  std::shared_ptr<const std::vector<Entry>> merging_log_;
  std::vector<Entry> forget_, forgetting_;
  int64_t watermark_ = 0;
  int64_t watermark_pending_ = 0;  // the running merge's, once it succeeds
  int64_t retry_at_mono_ms_ = 0;   // after a failed merge
  int64_t staged_max_ = 0, committed_max_ = 0;
  bool running_ = false;
  bool draining_ = false;        // merging_ holds a finished merge's ids (Drain)
  bool running_filter_ = false;  // the running job builds the filter
  bool force_ = false;           // a forced merge waits for the running job
  std::unique_ptr<Filter> filter_;
  bool filter_wanted_ = true;  // built after open, and again when full
  int64_t side_reads_ = 0;
  int64_t merges_ = 0, merge_failures_ = 0, level_merges_ = 0;
  std::string last_error_;

  // Shared with the merge thread.
  std::mutex mu_;
  std::condition_variable cv_;
  std::unique_ptr<Job> job_;  // handed to the thread
  Outcome outcome_;           // handed back
  bool stop_ = false;
  std::unique_ptr<storage::Db> thread_side_;
  std::thread thread_;
};

}  // namespace bud::broker
