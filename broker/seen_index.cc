// The SQLite broker store's message-id index. See seen_index.h and docs/storage.md.
#include "broker/seen_index.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <random>

#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/storage/paced_vfs.h"

namespace bud::broker {

namespace {
// The side file's own schema (its owner is this class; version in user_version).
const std::vector<std::string> kSideMigrations = {
    R"(CREATE TABLE ids (
         message_id TEXT PRIMARY KEY,
         n INTEGER NOT NULL
       ) WITHOUT ROWID;
       CREATE TABLE meta (
         key TEXT PRIMARY KEY,
         value TEXT NOT NULL
       ) WITHOUT ROWID;)",
    // v2: runs of hashed ids in chunks (seen_index.h). The v1 table of text ids is dropped with
    // the token and the watermark: the file is rebuilt from the store.
    R"(DROP TABLE ids;
       DELETE FROM meta;
       CREATE TABLE runs (
         run INTEGER PRIMARY KEY,
         level INTEGER NOT NULL,
         ids INTEGER NOT NULL
       );
       CREATE TABLE chunks (
         run INTEGER NOT NULL,
         first INTEGER NOT NULL,
         entries BLOB NOT NULL,
         PRIMARY KEY (run, first)
       );)",
};

// After a failed merge, the next one waits this long (a full disk is not retried per commit).
constexpr int64_t kRetryMs = 5000;

Status RemoveSideFile(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string p = path + suffix;
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, fmt::format("cannot remove the id index '{}'", p));
    }
  }
  return Status::Ok();
}

// Steps `q` to its end, calling `row` at each row; leaves it reset either way (its read ends).
template <typename F>
Status EachRow(storage::Stmt& q, F&& row) {
  for (;;) {
    auto stepped = q.Step();
    if (!stepped.ok() || !*stepped) {
      q.Reset();
      return stepped.ok() ? Status::Ok() : stepped.status();
    }
    row();
  }
}

Result<std::unique_ptr<storage::Db>> OpenSide(const std::string& path) {
  // Derived data: NORMAL is enough (a crash may lose the last merge, never the file's
  // consistency; the rows above the watermark are read back from the store).
  storage::Db::Options options;
  options.synchronous_full = false;
  // A merge's commit is checkpointed into the file at once (thousands of pages); paced, it does
  // not queue ahead of the store's commits on the disk (common/storage/paced_vfs.h).
  options.vfs = storage::PacedWritesVfs();
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::Open(path, options));
  BUD_RETURN_IF_ERROR(db->Check());
  BUD_RETURN_IF_ERROR(db->Migrate(kSideMigrations));
  // Sorts and statement journals (a merge of levels deletes thousands of chunks) stay in memory,
  // not in files under /var/tmp outside the store's folder.
  BUD_RETURN_IF_ERROR(db->Exec("PRAGMA temp_store=MEMORY"));
  return db;
}

Result<std::string> MetaValue(storage::Db& db, std::string_view sql) {
  BUD_ASSIGN_OR_RETURN(auto* q, db.Prepare(sql));
  BUD_ASSIGN_OR_RETURN(bool row, q->Step());
  std::string out = row ? q->Text(0) : std::string();
  q->Reset();
  return out;
}

Status SetMeta(storage::Db& side, const std::string& key, const std::string& value) {
  BUD_ASSIGN_OR_RETURN(auto* st,
                       side.Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)"));
  return st->Bind(1, key).Bind(2, value).Run();
}

// A meta value written by this class: a decimal number, or nothing when absent or not one.
std::optional<uint64_t> ParseNumber(const std::string& text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// The number the next run gets: above every run, so that its rows land at the B-tree's end.
Result<int64_t> NextRun(storage::Db& side) {
  BUD_ASSIGN_OR_RETURN(auto* q, side.Prepare("SELECT coalesce(max(run), 0) + 1 FROM runs"));
  BUD_ASSIGN_OR_RETURN(bool row, q->Step());
  const int64_t run = row ? q->Int(0) : 1;
  q->Reset();
  return run;
}

Status AddRun(storage::Db& side, int64_t run, int level, int64_t ids) {
  BUD_ASSIGN_OR_RETURN(auto* st, side.Prepare("INSERT INTO runs(run, level, ids) VALUES(?,?,?)"));
  return st->Bind(1, run).Bind(2, level).Bind(3, ids).Run();
}

Result<std::vector<int64_t>> Runs(storage::Db& side) {
  std::vector<int64_t> runs;
  BUD_ASSIGN_OR_RETURN(auto* q, side.Prepare("SELECT run FROM runs ORDER BY run"));
  BUD_RETURN_IF_ERROR(EachRow(*q, [&] { runs.push_back(q->Int(0)); }));
  return runs;
}

// A chunk's entries: (hash, row) pairs, 16 bytes each, little-endian, in key order.
constexpr size_t kEntryBytes = 16;

void PutInt(std::string& out, int64_t v) {
  auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i, u >>= 8) out.push_back(static_cast<char>(u & 0xff));
}

void PutEntry(std::string& out, const std::pair<int64_t, int64_t>& e) {
  PutInt(out, e.first);
  PutInt(out, e.second);
}

int64_t GetInt(const char* p) {
  uint64_t u = 0;
  for (int i = 7; i >= 0; --i) u = (u << 8) | static_cast<unsigned char>(p[i]);
  return static_cast<int64_t>(u);
}

// The entries of a chunk; a blob that is not whole entries is read as far as it goes (the file
// is derived: a wrong entry costs a row read, never a wrong answer).
void Decode(std::string_view blob, std::vector<std::pair<int64_t, int64_t>>& out) {
  for (size_t at = 0; at + kEntryBytes <= blob.size(); at += kEntryBytes) {
    out.emplace_back(GetInt(blob.data() + at), GetInt(blob.data() + at + 8));
  }
}

// Writes one run's entries, given in key order, as chunks of about kChunkEntries; an entry equal
// to the one before is written once. Entries of one hash are never split between chunks, so the
// chunk that may hold a hash is the last one whose `first` is not above it.
class RunWriter {
 public:
  static constexpr size_t kChunkEntries = 240;  // 3,840 bytes: a chunk fills a 4 KiB page
  RunWriter(storage::Db& side, int64_t run) : side_(side), run_(run) {}
  Status Add(const std::pair<int64_t, int64_t>& e) {
    if (written_ > 0 && e == last_) return Status::Ok();
    if (buf_.size() >= kChunkEntries * kEntryBytes && e.first != last_.first) {
      BUD_RETURN_IF_ERROR(Flush());
    }
    if (buf_.empty()) first_ = e.first;
    PutEntry(buf_, e);
    last_ = e;
    ++written_;
    return Status::Ok();
  }
  Status Flush() {
    if (buf_.empty()) return Status::Ok();
    BUD_ASSIGN_OR_RETURN(auto* ins, side_.Prepare("INSERT INTO chunks(run, first, entries) "
                                                  "VALUES(?,?,?)"));
    BUD_RETURN_IF_ERROR(ins->Bind(1, run_).Bind(2, first_).BindBlobView(3, buf_).Run());
    buf_.clear();
    return Status::Ok();
  }
  int64_t written() const { return written_; }

 private:
  storage::Db& side_;
  const int64_t run_;
  std::string buf_;
  int64_t first_ = 0;
  std::pair<int64_t, int64_t> last_;
  int64_t written_ = 0;
};

// The chunk of `run` that may hold hash `h` (its `first` and entries); nothing when none can.
Result<std::optional<std::pair<int64_t, std::vector<std::pair<int64_t, int64_t>>>>> ChunkFor(
    storage::Db& db, int64_t run, int64_t h) {
  BUD_ASSIGN_OR_RETURN(auto* q, db.Prepare("SELECT first, entries FROM chunks WHERE run=? AND "
                                           "first<=? ORDER BY first DESC LIMIT 1"));
  q->Bind(1, run).Bind(2, h);
  std::optional<std::pair<int64_t, std::vector<std::pair<int64_t, int64_t>>>> out;
  BUD_RETURN_IF_ERROR(EachRow(*q, [&] {
    out.emplace();
    out->first = q->Int(0);
    Decode(q->BlobView(1), out->second);
  }));
  return out;
}
}  // namespace

std::string SeenIndex::PathFor(const std::string& store_path) { return store_path + ".ids"; }

SeenIndex::Filter::Filter(int64_t ids) {
  uint64_t bits = uint64_t{1} << 20;
  while (bits < kMaxBits && bits < static_cast<uint64_t>(std::max<int64_t>(ids, 0)) * 16) {
    bits <<= 1;
  }
  bits_.assign(bits / 64, 0);
  mask_ = bits - 1;
}

// Double hashing over the two halves of the 64-bit id hash (Kirsch and Mitzenmacher).
void SeenIndex::Filter::Add(uint64_t h) {
  const uint64_t step = (h >> 32) | 1;
  for (int i = 0; i < kProbes; ++i, h += step) bits_[(h & mask_) >> 6] |= uint64_t{1} << (h & 63);
  ++added_;
}

bool SeenIndex::Filter::MayContain(uint64_t h) const {
  const uint64_t step = (h >> 32) | 1;
  for (int i = 0; i < kProbes; ++i, h += step) {
    if ((bits_[(h & mask_) >> 6] & (uint64_t{1} << (h & 63))) == 0) return false;
  }
  return true;
}

Result<std::unique_ptr<SeenIndex::Filter>> SeenIndex::BuildFilter(storage::Db& side) const {
  // Counted first, then read, in one read transaction: sized once, and nothing held per id.
  BUD_RETURN_IF_ERROR(side.Exec("BEGIN"));
  struct EndRead {
    storage::Db& db;
    ~EndRead() { (void)db.Exec("COMMIT"); }
  } end_read{side};
  BUD_ASSIGN_OR_RETURN(auto* count, side.Prepare("SELECT coalesce(sum(ids), 0) FROM runs"));
  BUD_ASSIGN_OR_RETURN(bool counted, count->Step());
  const int64_t ids = counted ? count->Int(0) : 0;
  count->Reset();
  auto filter = std::make_unique<Filter>(ids + 4 * merge_at_);
  BUD_ASSIGN_OR_RETURN(auto* q, side.Prepare("SELECT entries FROM chunks"));
  std::vector<Entry> entries;
  BUD_RETURN_IF_ERROR(EachRow(*q, [&] {
    entries.clear();
    Decode(q->BlobView(0), entries);
    for (const auto& e : entries) filter->Add(static_cast<uint64_t>(e.first));
  }));
  return filter;
}

SeenIndex::SeenIndex(std::string path, int64_t merge_at, uint64_t seed)
    : path_(std::move(path)), merge_at_(std::max<int64_t>(merge_at, 1)), seed_(seed) {}

Result<std::unique_ptr<SeenIndex>> SeenIndex::Open(const std::string& path, storage::Db& store,
                                                   int64_t merge_at) {
  BUD_ASSIGN_OR_RETURN(
      std::string token,
      MetaValue(store, "SELECT value FROM store_meta WHERE key='seen_index_token'"));
  if (token.empty()) {
    return Status(Code::kInternal, "the broker store has no seen_index_token (schema too old?)");
  }
  auto side = OpenSide(path);
  if (!side.ok()) {
    // Derived data: a damaged side file is rebuilt, not a reason to stop the broker.
    Logger("broker")->warn("the id index '{}' cannot be used ({}); rebuilding it from the store",
                           path, side.status().message());
    BUD_RETURN_IF_ERROR(RemoveSideFile(path));
    side = OpenSide(path);
    if (!side.ok()) return side.status();
  }
  storage::Db& s = **side;
  BUD_ASSIGN_OR_RETURN(std::string side_token,
                       MetaValue(s, "SELECT value FROM meta WHERE key='token'"));
  BUD_ASSIGN_OR_RETURN(std::string seed_text,
                       MetaValue(s, "SELECT value FROM meta WHERE key='seed'"));
  std::optional<uint64_t> seed = ParseNumber(seed_text);
  if (side_token != token || !seed) {
    if (!side_token.empty()) {
      Logger("broker")->warn("the id index '{}' {}; rebuilding it", path,
                             side_token != token ? "belongs to another store" : "has no seed");
    }
    // A new seed with every new file: the hashes a peer would have to aim at change with it.
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    storage::Transaction tx(s);
    BUD_RETURN_IF_ERROR(tx.began());
    BUD_RETURN_IF_ERROR(s.Exec("DELETE FROM chunks; DELETE FROM runs"));
    BUD_RETURN_IF_ERROR(SetMeta(s, "token", token));
    BUD_RETURN_IF_ERROR(SetMeta(s, "seed", std::to_string(*seed)));
    BUD_RETURN_IF_ERROR(SetMeta(s, "watermark", "0"));
    BUD_RETURN_IF_ERROR(tx.Commit());
  }
  BUD_ASSIGN_OR_RETURN(std::string mark,
                       MetaValue(s, "SELECT value FROM meta WHERE key='watermark'"));
  std::unique_ptr<SeenIndex> index(new SeenIndex(path, merge_at, *seed));
  const std::optional<uint64_t> watermark = ParseNumber(mark);
  index->watermark_ =
      watermark && *watermark <= uint64_t{INT64_MAX} ? static_cast<int64_t>(*watermark) : 0;

  BUD_ASSIGN_OR_RETURN(auto* top, store.Prepare("SELECT coalesce(max(n), 0), count(*) FROM seen "
                                                "WHERE n>?"));
  BUD_ASSIGN_OR_RETURN(bool row, top->Bind(1, index->watermark_).Step());
  const int64_t max_n = row ? top->Int(0) : 0, tail = row ? top->Int(1) : 0;
  top->Reset();
  if (tail > 4 * index->merge_at_) {
    // A lost or foreign side file: build it now, in id order, rather than hold every id in memory.
    // In runs a level above a merge's (fewer runs to merge again), then its full levels merged.
    Logger("broker")->info("building the id index '{}' from {} rows of the store", path, tail);
    BUD_RETURN_IF_ERROR(
        index->Rebuild(store, s, index->watermark_, max_n, index->merge_at_ * kFanIn));
    index->watermark_ = max_n;
    BUD_RETURN_IF_ERROR(index->MergeLevels(s, &index->level_merges_));
  } else if (tail > 0) {
    index->recent_.reserve(static_cast<size_t>(tail));
    index->log_.reserve(static_cast<size_t>(tail));
    BUD_ASSIGN_OR_RETURN(auto* q, store.Prepare("SELECT message_id, n FROM seen WHERE n>?"));
    q->Bind(1, index->watermark_);
    BUD_RETURN_IF_ERROR(EachRow(*q, [&] {
      const uint64_t h = index->Hash(q->TextView(0));
      index->recent_.emplace(h, q->Int(1));
      index->log_.emplace_back(static_cast<int64_t>(h), q->Int(1));
    }));
  }
  // Room for a merge's worth of ids before the table grows (as after each merge).
  index->recent_.reserve(static_cast<size_t>(index->merge_at_));
  index->log_.reserve(static_cast<size_t>(index->merge_at_));
  index->committed_max_ = std::max(max_n, index->watermark_);
  BUD_ASSIGN_OR_RETURN(index->reader_, storage::Db::Open(path));
  BUD_ASSIGN_OR_RETURN(auto* few, s.Prepare("SELECT coalesce(sum(ids), 0) FROM runs"));
  // A side file of at most a merge's worth of ids gets its filter now (a few ms); a larger one from
  // the thread, so that a restart does not wait for a read of every id.
  BUD_ASSIGN_OR_RETURN(bool counted, few->Step());
  const int64_t side_ids = counted ? few->Int(0) : index->merge_at_ + 1;
  few->Reset();
  if (side_ids <= index->merge_at_) {
    BUD_ASSIGN_OR_RETURN(index->filter_, index->BuildFilter(s));
    index->filter_wanted_ = false;
  }
  index->thread_side_ = std::move(*side);
  index->Start();
  index->Tick(/*force=*/false);  // hands the thread the filter's build when it is still wanted
  return index;
}

SeenIndex::~SeenIndex() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t SeenIndex::Hash(std::string_view id) const {
  // FNV-1a from the file's random basis, then a 64-bit finaliser: ids a peer chooses cannot be
  // aimed at one bucket without knowing the basis (and a collision costs a row read, not a wrong
  // answer: every candidate is checked).
  uint64_t h = seed_ ^ 0xcbf29ce484222325ULL;
  for (unsigned char c : id) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

void SeenIndex::Erase(Map& map, uint64_t h, int64_t n) {
  auto [first, last] = map.equal_range(h);
  for (auto it = first; it != last; ++it) {
    if (it->second == n) {
      map.erase(it);
      return;
    }
  }
}

std::vector<int64_t> SeenIndex::Recent(const std::string& id) const {
  std::vector<int64_t> out;
  const uint64_t h = Hash(id);
  for (const Map* m : {&pending_, &recent_, &merging_}) {
    auto [first, last] = m->equal_range(h);
    for (auto it = first; it != last; ++it) out.push_back(it->second);
  }
  return out;
}

Result<std::vector<int64_t>> SeenIndex::Merged(const std::string& id) {
  std::vector<int64_t> out;
  const uint64_t h = Hash(id);
  if (filter_ && !filter_->MayContain(h)) return out;
  ++side_reads_;
  // The one chunk of each run that may hold the hash. Each statement is reset at its end: outside
  // BeginReads, that ends its read transaction, and the next lookup sees the next merge (within
  // it, the reads share one snapshot).
  BUD_ASSIGN_OR_RETURN(const std::vector<int64_t> runs, Runs(*reader_));
  const auto key = static_cast<int64_t>(h);
  for (int64_t run : runs) {
    BUD_ASSIGN_OR_RETURN(auto chunk, ChunkFor(*reader_, run, key));
    if (!chunk) continue;
    const auto& entries = chunk->second;
    for (auto it = std::lower_bound(entries.begin(), entries.end(), Entry{key, INT64_MIN});
         it != entries.end() && it->first == key; ++it) {
      out.push_back(it->second);
    }
  }
  return out;
}

void SeenIndex::BeginReads() {
  // A failed BEGIN leaves each lookup its own transaction, as without it.
  reading_ = reader_->Exec("BEGIN").ok();
}

void SeenIndex::EndReads() {
  if (reading_) (void)reader_->Exec("COMMIT");  // a read transaction: nothing to lose
  reading_ = false;
}

void SeenIndex::Stage(const std::string& id, int64_t n) {
  const uint64_t h = Hash(id);
  pending_.emplace(h, n);
  staged_.emplace_back(static_cast<int64_t>(h), n);
  staged_max_ = std::max(staged_max_, n);
}

void SeenIndex::Commit() {
  // Node by node: Map::merge reserves for size() + the batch first, which in libstdc++ rehashes
  // (shrinking the table reserved at the last merge, then growing it again): every commit paid for
  // the whole table, 5 % of the broker loop's time under load.
  while (!pending_.empty()) recent_.insert(pending_.extract(pending_.begin()));
  log_.insert(log_.end(), staged_.begin(), staged_.end());
  staged_.clear();
  committed_max_ = std::max(committed_max_, staged_max_);
}

void SeenIndex::Drop() {
  pending_.clear();
  staged_.clear();
}

void SeenIndex::Forget(std::vector<std::pair<std::string, int64_t>> rows) {
  for (const auto& [id, n] : rows) {
    const uint64_t h = Hash(id);
    Erase(recent_, h, n);
    Erase(merging_, h, n);
    forget_.emplace_back(static_cast<int64_t>(h), n);
  }
}

std::string SeenIndex::Room() const {
  if (in_memory() < kCapFactor * merge_at_) return {};
  return fmt::format("the message-id index '{}' cannot be written ({}); {} ids wait in memory",
                     path_, last_error_.empty() ? "merges fall behind" : last_error_, in_memory());
}

void SeenIndex::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void SeenIndex::Loop() {
  // Below the loop: a merge's inserts and sort are no hurry, the commits waiting behind them on
  // a busy core are (half-load p99 at 25,000 submits a second: ~6 ms at the same priority,
  // ~4 ms at 19). Nice only lowers, so it needs no privilege; the thread still gets the idle
  // time, and only a machine kept saturated by other work would let merges fall behind (then
  // Room() refuses new ids, docs/storage.md).
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kThreadNice) != 0) {
    Logger("broker")->warn("the id index's merge thread keeps the loop's priority: {}",
                           std::strerror(errno));
  }
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return job_ != nullptr || stop_; });
    if (stop_) return;  // a job not begun is left: the watermark did not move
    std::unique_ptr<Job> job = std::move(job_);
    lock.unlock();
    Outcome out{true, Status::Ok(), nullptr};
    if (job->build_filter) {
      auto built = BuildFilter(*thread_side_);
      if (built.ok()) {
        out.filter = std::move(*built);
      } else {
        out.status = built.status();
      }
    } else {
      out.status = Merge(*thread_side_, *job);
      // The merge stands either way: a failed merge of levels is tried again after the next.
      const Status levels =
          out.status.ok() ? MergeLevels(*thread_side_, &out.level_merges) : Status::Ok();
      if (!levels.ok()) {
        Logger("broker")->warn(
            "merging the runs of '{}' failed: {}; tried again after the next "
            "merge",
            path_, levels.message());
      }
    }
    lock.lock();
    outcome_ = std::move(out);
    cv_.notify_all();
  }
}

int SeenIndex::Level(int64_t ids) const {
  int level = 0;
  for (int64_t size = merge_at_; level < kTopLevel && ids > size; size *= kFanIn) ++level;
  return level;
}

Status SeenIndex::WriteRun(storage::Db& side, const std::vector<Entry>& sorted, int level) const {
  if (sorted.empty()) return Status::Ok();
  BUD_ASSIGN_OR_RETURN(const int64_t run, NextRun(side));
  RunWriter writer(side, run);
  for (const auto& e : sorted) BUD_RETURN_IF_ERROR(writer.Add(e));
  BUD_RETURN_IF_ERROR(writer.Flush());
  return AddRun(side, run, level, writer.written());
}

Status SeenIndex::Merge(storage::Db& side, const Job& job) const {
  // The loop's record of the rows committed since the last merge (no read of the store), sorted
  // and written as a run of its own, in key order at the B-tree's end: pages written once, full.
  std::vector<Entry> sorted;
  if (job.entries) sorted = *job.entries;
  std::sort(sorted.begin(), sorted.end());
  // Rows pruned before their merge are not written; the others leave the runs they are in.
  std::vector<Entry> forget;
  if (!job.forget.empty()) {
    std::vector<Entry> kept;
    kept.reserve(sorted.size());
    std::set_difference(sorted.begin(), sorted.end(), job.forget.begin(), job.forget.end(),
                        std::back_inserter(kept));
    std::set_difference(job.forget.begin(), job.forget.end(), sorted.begin(), sorted.end(),
                        std::back_inserter(forget));
    sorted = std::move(kept);
  }
  storage::Transaction tx(side);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(const std::vector<int64_t> runs, Runs(side));
  // Level 0 whatever its size: a merge starts at kMergeAt ids or a few more (the commit that
  // reached it), and a run a little over the size taken for level 1 would skip a level.
  BUD_RETURN_IF_ERROR(WriteRun(side, sorted, 0));
  if (!forget.empty()) {
    BUD_ASSIGN_OR_RETURN(auto* put, side.Prepare("UPDATE chunks SET entries=? WHERE run=? AND "
                                                 "first=?"));
    BUD_ASSIGN_OR_RETURN(auto* drop, side.Prepare("DELETE FROM chunks WHERE run=? AND first=?"));
    BUD_ASSIGN_OR_RETURN(auto* fewer, side.Prepare("UPDATE runs SET ids=ids-1 WHERE run=?"));
    for (const auto& [h, n] : forget) {
      for (int64_t run : runs) {
        BUD_ASSIGN_OR_RETURN(auto chunk, ChunkFor(side, run, h));
        if (!chunk) continue;
        auto& entries = chunk->second;
        auto it = std::lower_bound(entries.begin(), entries.end(), Entry{h, n});
        if (it == entries.end() || *it != Entry{h, n}) continue;
        entries.erase(it);
        if (entries.empty()) {
          drop->Reset();
          BUD_RETURN_IF_ERROR(drop->Bind(1, run).Bind(2, chunk->first).Run());
        } else {
          std::string blob;
          blob.reserve(entries.size() * kEntryBytes);
          for (const auto& e : entries) PutEntry(blob, e);
          put->Reset();
          BUD_RETURN_IF_ERROR(put->BindBlobView(1, blob).Bind(2, run).Bind(3, chunk->first).Run());
        }
        fewer->Reset();
        BUD_RETURN_IF_ERROR(fewer->Bind(1, run).Run());
      }
    }
  }
  BUD_RETURN_IF_ERROR(SetMeta(side, "watermark", std::to_string(job.upto)));
  return tx.Commit();
}

Status SeenIndex::Rebuild(storage::Db& store, storage::Db& side, int64_t from, int64_t upto,
                          int64_t chunk) const {
  storage::Transaction tx(side);
  BUD_RETURN_IF_ERROR(tx.began());
  // The rows `chunk` at a time, each in one short read of the store's log (in row order), each
  // chunk a run: what is held in memory stays bounded however many rows the store has.
  BUD_ASSIGN_OR_RETURN(auto* q, store.Prepare("SELECT message_id, n FROM seen WHERE n>? AND n<=? "
                                              "ORDER BY n LIMIT ?"));
  std::vector<Entry> rows;
  rows.reserve(static_cast<size_t>(std::clamp<int64_t>(upto - from, 0, chunk)));
  for (int64_t after = from;;) {
    rows.clear();
    q->Bind(1, after).Bind(2, upto).Bind(3, chunk);
    BUD_RETURN_IF_ERROR(EachRow(
        *q, [&] { rows.emplace_back(static_cast<int64_t>(Hash(q->TextView(0))), q->Int(1)); }));
    if (rows.empty()) break;
    after = rows.back().second;
    std::sort(rows.begin(), rows.end());
    BUD_RETURN_IF_ERROR(WriteRun(side, rows, Level(static_cast<int64_t>(rows.size()))));
    if (static_cast<int64_t>(rows.size()) < chunk) break;
  }
  BUD_RETURN_IF_ERROR(SetMeta(side, "watermark", std::to_string(upto)));
  return tx.Commit();
}

Status SeenIndex::MergeLevels(storage::Db& side, int64_t* merged) const {
  BUD_ASSIGN_OR_RETURN(auto* full, side.Prepare("SELECT level FROM runs WHERE level<? GROUP BY "
                                                "level HAVING count(*)>=? ORDER BY level LIMIT 1"));
  BUD_ASSIGN_OR_RETURN(auto* of_level,
                       side.Prepare("SELECT run FROM runs WHERE level=? ORDER BY run LIMIT ?"));
  // A run's chunks after `first`, in key order, kMergeRead entries' worth at a time.
  BUD_ASSIGN_OR_RETURN(auto* read, side.Prepare("SELECT first, entries FROM chunks WHERE run=? "
                                                "AND first>? ORDER BY first LIMIT ?"));
  BUD_ASSIGN_OR_RETURN(auto* drop_chunks, side.Prepare("DELETE FROM chunks WHERE run=?"));
  BUD_ASSIGN_OR_RETURN(auto* drop_run, side.Prepare("DELETE FROM runs WHERE run=?"));
  const int64_t chunks_a_read =
      std::max<int64_t>(1, kMergeRead / static_cast<int64_t>(RunWriter::kChunkEntries));
  struct Source {
    int64_t run;
    std::vector<Entry> rows;
    size_t at = 0;
    int64_t after = INT64_MIN;  // the `first` of the last chunk read
    bool done = false;          // its last read came back short
  };
  auto refill = [&](Source& src) -> Status {
    src.rows.clear();
    src.at = 0;
    int64_t got = 0;
    read->Bind(1, src.run).Bind(2, src.after).Bind(3, chunks_a_read);
    BUD_RETURN_IF_ERROR(EachRow(*read, [&] {
      src.after = read->Int(0);
      Decode(read->BlobView(1), src.rows);
      ++got;
    }));
    src.done = got < chunks_a_read;
    return Status::Ok();
  };
  for (;;) {
    int level = -1;
    full->Bind(1, kTopLevel).Bind(2, kFanIn);
    BUD_RETURN_IF_ERROR(EachRow(*full, [&] { level = static_cast<int>(full->Int(0)); }));
    if (level < 0) return Status::Ok();
    std::vector<Source> sources;
    of_level->Bind(1, level).Bind(2, kFanIn);
    BUD_RETURN_IF_ERROR(EachRow(*of_level, [&] {
      sources.push_back(Source{of_level->Int(0), {}});
    }));
    storage::Transaction tx(side);
    BUD_RETURN_IF_ERROR(tx.began());
    BUD_ASSIGN_OR_RETURN(const int64_t run, NextRun(side));
    RunWriter writer(side, run);
    for (auto& src : sources) BUD_RETURN_IF_ERROR(refill(src));
    // The runs' entries in key order (the least head of kFanIn, each run read in key order).
    for (;;) {
      Source* least = nullptr;
      for (auto& src : sources) {
        if (src.at == src.rows.size() && !src.done) BUD_RETURN_IF_ERROR(refill(src));
        if (src.at == src.rows.size()) continue;
        if (!least || src.rows[src.at] < least->rows[least->at]) least = &src;
      }
      if (!least) break;
      BUD_RETURN_IF_ERROR(writer.Add(least->rows[least->at++]));
    }
    BUD_RETURN_IF_ERROR(writer.Flush());
    for (const auto& src : sources) {
      drop_chunks->Reset();
      BUD_RETURN_IF_ERROR(drop_chunks->Bind(1, src.run).Run());
      drop_run->Reset();
      BUD_RETURN_IF_ERROR(drop_run->Bind(1, src.run).Run());
    }
    BUD_RETURN_IF_ERROR(AddRun(side, run, level + 1, writer.written()));
    BUD_RETURN_IF_ERROR(tx.Commit());
    ++*merged;
  }
}

void SeenIndex::Tick(bool force) {
  force_ = force_ || force;  // a forced merge asked for while a job runs comes after it
  if (running_) {
    Outcome done;
    {
      std::lock_guard lock(mu_);
      if (!outcome_.done) return;
      done = std::move(outcome_);
      outcome_ = {};
    }
    running_ = false;
    if (running_filter_) {
      running_filter_ = false;
      if (done.status.ok()) {
        filter_ = std::move(done.filter);
        filter_wanted_ = false;
      } else {
        Logger("broker")->warn(
            "reading the ids of '{}' for its filter failed: {}; lookups read "
            "the file meanwhile",
            path_, done.status.message());
        retry_at_mono_ms_ = MonoMs() + kRetryMs;
      }
    } else if (done.status.ok()) {
      ++merges_;
      level_merges_ += done.level_merges;
      watermark_ = watermark_pending_;
      merging_log_.reset();
      draining_ = true;  // the merged ids leave memory for the filter a chunk a tick (Drain)
      forgetting_.clear();
      last_error_.clear();
    } else {
      ++merge_failures_;
      last_error_ = done.status.message();
      Logger("broker")->warn("merging ids into '{}' failed: {}; {} ids stay in memory", path_,
                             last_error_, in_memory());
      recent_.merge(merging_);
      merging_.clear();
      if (merging_log_) log_.insert(log_.end(), merging_log_->begin(), merging_log_->end());
      merging_log_.reset();
      forget_.insert(forget_.end(), forgetting_.begin(), forgetting_.end());
      forgetting_.clear();
      retry_at_mono_ms_ = MonoMs() + kRetryMs;
    }
  }
  if (draining_) {
    Drain(kDrainChunk);
    if (draining_) return;  // the next job waits until the last merge's ids have left memory
  }
  if (static_cast<int64_t>(recent_.size()) < merge_at_ &&
      !(force_ && (!recent_.empty() || !forget_.empty()))) {
    force_ = false;
    if (filter_wanted_ && MonoMs() >= retry_at_mono_ms_) {
      auto job = std::make_unique<Job>();
      job->build_filter = true;
      running_filter_ = true;
      Hand(std::move(job));
    }
    return;
  }
  if (MonoMs() < retry_at_mono_ms_ && !force_) return;
  force_ = false;
  auto job = std::make_unique<Job>();
  job->upto = committed_max_;
  job->entries = std::make_shared<const std::vector<Entry>>(std::move(log_));
  merging_log_ = job->entries;
  log_ = {};
  log_.reserve(static_cast<size_t>(merge_at_));
  std::sort(forget_.begin(), forget_.end());
  job->forget = forget_;
  forgetting_ = std::move(forget_);
  forget_.clear();
  merging_ = std::move(recent_);
  recent_ = Map();
  recent_.reserve(static_cast<size_t>(merge_at_));  // no rehash while it fills
  watermark_pending_ = committed_max_;
  Hand(std::move(job));
}

void SeenIndex::Drain(size_t most) {
  for (size_t i = 0; i < most && !merging_.empty(); ++i) {
    auto node = merging_.extract(merging_.begin());
    if (filter_) filter_->Add(node.key());
  }
  if (!merging_.empty()) return;
  draining_ = false;
  // Built again, bigger, when the thread is free (up to its largest size).
  if (filter_ && filter_->Full() && !filter_->Largest()) filter_wanted_ = true;
}

void SeenIndex::Hand(std::unique_ptr<Job> job) {
  running_ = true;
  {
    std::lock_guard lock(mu_);
    job_ = std::move(job);
  }
  cv_.notify_all();
}

void SeenIndex::Settle(int64_t timeout_ms) {
  // A taken outcome may start the next job (a forced merge after the filter's build): each is
  // waited for, within the one deadline.
  const int64_t deadline = MonoMs() + timeout_ms;
  for (;;) {
    if (draining_) {
      // A finished merge's ids all at once here; the job that waited for them may start now.
      Drain(merging_.size());
      Tick(false);
    }
    if (!running_) return;
    {
      std::unique_lock lock(mu_);
      const int64_t left = std::max<int64_t>(deadline - MonoMs(), 0);
      if (!cv_.wait_for(lock, std::chrono::milliseconds(left), [&] { return outcome_.done; })) {
        return;
      }
    }
    Tick(false);
  }
}

}  // namespace bud::broker
