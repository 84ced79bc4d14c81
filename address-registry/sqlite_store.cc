// The registry's store in SQLite. See sqlite_store.h, store.h and docs/storage.md.
#include "address-registry/sqlite_store.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

namespace bud::registry {

namespace {
const std::vector<std::string> kMigrations = {
    R"(CREATE TABLE entries (
         orgnr TEXT PRIMARY KEY,
         entry BLOB NOT NULL,          -- serialised wire::RegistryEntry
         updated_ms INTEGER NOT NULL
       ) WITHOUT ROWID;)",
};
static_assert(kRegistrySchemaVersion == 1, "add the SQLite migration for the new version");
}  // namespace

Result<std::unique_ptr<SqliteRegistryStore>> SqliteRegistryStore::Open(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::OpenStore(path, kMigrations));
  return std::unique_ptr<SqliteRegistryStore>(new SqliteRegistryStore(std::move(db)));
}

Result<MigrateResult> SqliteRegistryStore::Migrate(const std::string& path) {
  MigrateResult r;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    auto ro = storage::Db::Open(path, {.read_only = true});
    if (ro.ok()) {
      auto v = (*ro)->UserVersion();
      if (v.ok()) r.from = *v;
    }
  }
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::OpenStore(path, kMigrations));
  BUD_ASSIGN_OR_RETURN(r.to, db->UserVersion());
  return r;
}

Result<StoreHealth> SqliteRegistryStore::Check(const std::string& path) {
  StoreHealth h;
  h.engine = "sqlite";
  h.where = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status(Code::kNotFound, fmt::format("store '{}' does not exist (`bud-registry db init` "
                                               "creates it)",
                                               path));
  }
  BUD_ASSIGN_OR_RETURN(auto db, storage::Db::Open(path, {.read_only = true}));
  BUD_RETURN_IF_ERROR(db->Check());
  BUD_ASSIGN_OR_RETURN(h.schema_version, db->UserVersion());
  if (h.schema_version >= 1) {
    BUD_ASSIGN_OR_RETURN(auto* st, db->Prepare("SELECT count(*) FROM entries"));
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (row) h.entries = st->Int(0);
    st->Reset();
  }
  const std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
  h.writable = ::access(path.c_str(), R_OK | W_OK) == 0 && ::access(dir.c_str(), W_OK | X_OK) == 0;
  return h;
}

Status SqliteRegistryStore::Put(const wire::RegistryEntry& entry) {
  // The check and the write in one transaction, so two `add`s cannot both take one key.
  storage::Transaction tx(*db_);
  BUD_RETURN_IF_ERROR(tx.began());
  if (!entry.curve_public_key().empty()) {
    BUD_ASSIGN_OR_RETURN(auto entries, List());
    for (const auto& e : entries) {
      if (e.orgnr() != entry.orgnr() && e.curve_public_key() == entry.curve_public_key()) {
        return Status(Code::kAlreadyExists,
                      fmt::format("CURVE key {} is already registered to organisation {}; each "
                                  "organisation needs its own key pair (make one with keygen)",
                                  entry.curve_public_key(), e.orgnr()));
      }
    }
  }
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare(
      "INSERT INTO entries(orgnr, entry, updated_ms) VALUES(?,?,?) "
      "ON CONFLICT(orgnr) DO UPDATE SET entry=excluded.entry, updated_ms=excluded.updated_ms"));
  st->Bind(1, entry.orgnr()).BindBlob(2, entry.SerializeAsString()).Bind(3, entry.updated_unix_ms());
  BUD_RETURN_IF_ERROR(st->Run());
  return tx.Commit();
}

Status SqliteRegistryStore::Remove(const Orgnr& org) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare("DELETE FROM entries WHERE orgnr=?"));
  BUD_RETURN_IF_ERROR(st->Bind(1, org.digits()).Run());
  if (st->Changes() == 0) {
    return Status(Code::kNotFound, fmt::format("organisation {} is not registered", org.digits()));
  }
  return Status::Ok();
}

Result<std::optional<wire::RegistryEntry>> SqliteRegistryStore::Get(const Orgnr& org) {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare("SELECT entry FROM entries WHERE orgnr=?"));
  st->Bind(1, org.digits());
  BUD_ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return std::optional<wire::RegistryEntry>();
  wire::RegistryEntry e;
  if (!e.ParseFromString(st->Blob(0))) {
    return Status(Code::kCorrupt, fmt::format("registry entry for {} cannot be parsed", org.digits()));
  }
  st->Reset();
  return std::optional<wire::RegistryEntry>(std::move(e));
}

Result<std::optional<wire::RegistryEntry>> SqliteRegistryStore::GetByCurveKey(const std::string& z85_key) {
  // Entries number in the hundreds: a scan is cheaper than keeping an index in step.
  BUD_ASSIGN_OR_RETURN(auto entries, List());
  std::optional<wire::RegistryEntry> found;
  for (auto& e : entries) {
    if (z85_key.empty() || e.curve_public_key() != z85_key) continue;
    if (found) {
      // Put refuses this; a store written before that check (or edited by hand) may hold it.
      // Such a key names no one: refused until the operator gives each its own key.
      return Status(Code::kAlreadyExists,
                    fmt::format("CURVE key {} is registered to both {} and {}", z85_key,
                                found->orgnr(), e.orgnr()));
    }
    found = std::move(e);
  }
  return found;
}

Status SqliteRegistryStore::Probe() {
  storage::Transaction tx(*db_);  // BEGIN IMMEDIATE: takes the write lock; rolled back
  if (!tx.began().ok()) return tx.began().Context("the store takes no writes");
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare("SELECT count(*) FROM entries"));
  auto row = st->Step();
  st->Reset();
  return row.status().Context("the store cannot be read");
}

Result<std::vector<wire::RegistryEntry>> SqliteRegistryStore::List() {
  BUD_ASSIGN_OR_RETURN(auto* st, db_->Prepare("SELECT entry FROM entries ORDER BY orgnr"));
  std::vector<wire::RegistryEntry> out;
  for (;;) {
    BUD_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    wire::RegistryEntry e;
    if (!e.ParseFromString(st->Blob(0))) return Status(Code::kCorrupt, "registry entry cannot be parsed");
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace bud::registry
