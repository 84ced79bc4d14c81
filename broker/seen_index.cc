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
  BUD_ASSIGN_OR_RETURN(auto* count, side.Prepare("SELECT count(*) FROM ids"));
  BUD_ASSIGN_OR_RETURN(bool counted, count->Step());
  const int64_t ids = counted ? count->Int(0) : 0;
  count->Reset();
  auto filter = std::make_unique<Filter>(ids + 4 * merge_at_);
  BUD_ASSIGN_OR_RETURN(auto* q, side.Prepare("SELECT message_id FROM ids"));
  BUD_RETURN_IF_ERROR(EachRow(*q, [&] { filter->Add(Hash(q->Text(0))); }));
  return filter;
}

SeenIndex::SeenIndex(std::string path, std::string store_path, int64_t merge_at, uint64_t seed)
    : path_(std::move(path)),
      store_path_(std::move(store_path)),
      merge_at_(std::max<int64_t>(merge_at, 1)),
      seed_(seed) {}

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
  if (side_token != token) {
    if (!side_token.empty()) {
      Logger("broker")->warn("the id index '{}' belongs to another store; rebuilding it", path);
    }
    storage::Transaction tx(s);
    BUD_RETURN_IF_ERROR(tx.began());
    BUD_RETURN_IF_ERROR(s.Exec("DELETE FROM ids"));
    BUD_RETURN_IF_ERROR(SetMeta(s, "token", token));
    BUD_RETURN_IF_ERROR(SetMeta(s, "watermark", "0"));
    BUD_RETURN_IF_ERROR(tx.Commit());
  }
  BUD_ASSIGN_OR_RETURN(std::string mark,
                       MetaValue(s, "SELECT value FROM meta WHERE key='watermark'"));
  std::random_device rd;
  const uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  std::unique_ptr<SeenIndex> index(new SeenIndex(path, store.path(), merge_at, seed));
  int64_t watermark = 0;
  if (!mark.empty()) {
    auto [end, ec] = std::from_chars(mark.data(), mark.data() + mark.size(), watermark);
    if (ec != std::errc() || end != mark.data() + mark.size() || watermark < 0) watermark = 0;
  }
  index->watermark_ = watermark;

  BUD_ASSIGN_OR_RETURN(auto* top, store.Prepare("SELECT coalesce(max(n), 0), count(*) FROM seen "
                                                "WHERE n>?"));
  BUD_ASSIGN_OR_RETURN(bool row, top->Bind(1, index->watermark_).Step());
  const int64_t max_n = row ? top->Int(0) : 0, tail = row ? top->Int(1) : 0;
  top->Reset();
  if (tail > 4 * index->merge_at_) {
    // A lost or foreign side file: build it now, in id order, rather than hold every id in memory.
    Logger("broker")->info("building the id index '{}' from {} rows of the store", path, tail);
    BUD_RETURN_IF_ERROR(Merge(store, s, Job{index->watermark_, max_n, {}}, index->merge_at_));
    index->watermark_ = max_n;
  } else if (tail > 0) {
    index->recent_.reserve(static_cast<size_t>(tail));
    BUD_ASSIGN_OR_RETURN(auto* q, store.Prepare("SELECT message_id, n FROM seen WHERE n>?"));
    q->Bind(1, index->watermark_);
    for (;;) {
      BUD_ASSIGN_OR_RETURN(bool r, q->Step());
      if (!r) break;
      index->recent_.emplace(index->Hash(q->Text(0)), q->Int(1));
    }
  }
  // Room for a merge's worth of ids before the table grows (as after each merge).
  index->recent_.reserve(static_cast<size_t>(index->merge_at_));
  index->committed_max_ = std::max(max_n, index->watermark_);
  BUD_ASSIGN_OR_RETURN(index->reader_, storage::Db::Open(path));
  storage::Db::Options read_only;
  read_only.read_only = true;
  BUD_ASSIGN_OR_RETURN(index->thread_store_, storage::Db::Open(store.path(), read_only));
  // The merge's sort by id stays in memory (a batch's ids: a few MiB), not in a file under
  // /var/tmp outside the store's folder.
  BUD_RETURN_IF_ERROR(index->thread_store_->Exec("PRAGMA temp_store=MEMORY"));
  BUD_RETURN_IF_ERROR(s.Exec("PRAGMA temp_store=MEMORY"));
  BUD_ASSIGN_OR_RETURN(auto* few, s.Prepare("SELECT count(*) FROM (SELECT 1 FROM ids LIMIT ?)"));
  // A side file of at most a merge's worth of ids gets its filter now (a few ms); a larger one from
  // the thread, so that a restart does not wait for a read of every id.
  BUD_ASSIGN_OR_RETURN(bool counted, few->Bind(1, index->merge_at_ + 1).Step());
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
  // FNV-1a from a per-process random basis, then a 64-bit finaliser: ids a peer chooses cannot be
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

Result<std::optional<int64_t>> SeenIndex::Merged(const std::string& id) {
  if (filter_ && !filter_->MayContain(Hash(id))) return std::optional<int64_t>();
  ++side_reads_;
  BUD_ASSIGN_OR_RETURN(auto* q, reader_->Prepare("SELECT n FROM ids WHERE message_id=?"));
  BUD_ASSIGN_OR_RETURN(bool row, q->Bind(1, id).Step());
  std::optional<int64_t> out;
  if (row) out = q->Int(0);
  q->Reset();  // outside BeginReads, ends the read transaction: the next lookup sees the next merge
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
  pending_.emplace(Hash(id), n);
  staged_max_ = std::max(staged_max_, n);
}

void SeenIndex::Commit() {
  // Node by node: Map::merge reserves for size() + the batch first, which in libstdc++ rehashes
  // (shrinking the table reserved at the last merge, then growing it again): every commit paid for
  // the whole table, 5 % of the broker loop's time under load.
  while (!pending_.empty()) recent_.insert(pending_.extract(pending_.begin()));
  committed_max_ = std::max(committed_max_, staged_max_);
}

void SeenIndex::Drop() { pending_.clear(); }

void SeenIndex::Forget(std::vector<std::pair<std::string, int64_t>> rows) {
  for (auto& r : rows) {
    const uint64_t h = Hash(r.first);
    Erase(recent_, h, r.second);
    Erase(merging_, h, r.second);
    forget_.push_back(std::move(r));
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
      out.status = Merge(*thread_store_, *thread_side_, *job, merge_at_);
    }
    lock.lock();
    outcome_ = std::move(out);
    cv_.notify_all();
  }
}

Status SeenIndex::Merge(storage::Db& store, storage::Db& side, const Job& job, int64_t chunk) {
  storage::Transaction tx(side);
  BUD_RETURN_IF_ERROR(tx.began());
  BUD_ASSIGN_OR_RETURN(auto* ins, side.Prepare("INSERT OR REPLACE INTO ids(message_id, n) "
                                               "VALUES(?,?)"));
  // The rows a chunk at a time, each in one short read of the store's log (in row order: no
  // sort), then sorted here and inserted in id order, so that consecutive inserts land on the
  // same pages. A read of the store held open for the whole merge kept the WAL from starting
  // again, and the broker's commits slowed while it grew; the chunk bounds what a merge of a
  // long range (a rebuild at open, or the retry of failed merges) holds in memory.
  BUD_ASSIGN_OR_RETURN(auto* q, store.Prepare("SELECT message_id, n FROM seen WHERE n>? AND n<=? "
                                              "ORDER BY n LIMIT ?"));
  std::vector<std::pair<std::string, int64_t>> rows;
  rows.reserve(static_cast<size_t>(std::clamp<int64_t>(job.upto - job.from, 0, chunk)));
  for (int64_t after = job.from;;) {
    rows.clear();
    q->Bind(1, after).Bind(2, job.upto).Bind(3, chunk);
    BUD_RETURN_IF_ERROR(EachRow(*q, [&] { rows.emplace_back(q->Text(0), q->Int(1)); }));
    if (rows.empty()) break;
    after = rows.back().second;
    const bool last = static_cast<int64_t>(rows.size()) < chunk;
    std::sort(rows.begin(), rows.end());
    for (const auto& [id, n] : rows) {
      ins->Reset();  // Run leaves it done; a done statement takes no new bindings
      BUD_RETURN_IF_ERROR(ins->Bind(1, id).Bind(2, n).Run());
    }
    if (last) break;
  }
  BUD_ASSIGN_OR_RETURN(auto* del, side.Prepare("DELETE FROM ids WHERE message_id=? AND n=?"));
  for (const auto& [id, n] : job.forget) {
    del->Reset();
    BUD_RETURN_IF_ERROR(del->Bind(1, id).Bind(2, n).Run());
  }
  BUD_RETURN_IF_ERROR(SetMeta(side, "watermark", std::to_string(job.upto)));
  return tx.Commit();
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
      watermark_ = watermark_pending_;
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
  job->from = watermark_;
  job->upto = committed_max_;
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
