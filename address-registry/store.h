// The registry's store: one entry per organisation (schemas in docs/storage.md).
//
// RegistryStore is the interface the server and the admin verbs use; two engines implement it,
// chosen by the [store] table of the config (common/storage/store_config.h):
// SqliteRegistryStore (sqlite_store.h, one file on this machine, the default) and
// PgRegistryStore (pg_store.h, PostgreSQL, for a registry that must survive the loss of a
// machine). No SQL lives outside those two files. Both keep the same rules, and one conformance
// suite (tests/registry/store_conformance_test.cc) runs against each: an organisation has one
// entry (Put replaces it), and a CURVE public key belongs to at most one organisation.
//
// Concurrency: a store object is owned by one thread. Several processes may use one store at
// once (the running registry and `bud-registry add`); each sees the others' committed changes at
// its next call.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/orgnr.h"
#include "common/status.h"
#include "common/storage/store_config.h"
#include "proto/registry.pb.h"

namespace bud::registry {

// The schema version this build reads and writes (SQLite: PRAGMA user_version; PostgreSQL: the
// registry_schema table).
inline constexpr int kRegistrySchemaVersion = 1;

// What `db check` reports.
struct StoreHealth {
  std::string engine;        // "sqlite" or "postgresql"
  std::string where;         // the file, or "host:port (dbname=... user=...)"
  std::string server;        // PostgreSQL's version string; "" for SQLite
  int schema_version = 0;    // 0: no schema yet (`db init`)
  bool writable = false;     // a write would be accepted now (not a standby, not read-only)
  int64_t entries = 0;
};

class RegistryStore {
 public:
  virtual ~RegistryStore() = default;

  // Inserts or replaces the entry for entry.orgnr(). kAlreadyExists when another organisation
  // holds the same (non-empty) CURVE public key.
  virtual Status Put(const wire::RegistryEntry& entry) = 0;
  // kNotFound when there is no such entry.
  virtual Status Remove(const Orgnr& org) = 0;
  virtual Result<std::optional<wire::RegistryEntry>> Get(const Orgnr& org) = 0;
  // The entry holding this CURVE key (none for ""); kAlreadyExists when more than one does (a
  // SQLite store written before the check).
  virtual Result<std::optional<wire::RegistryEntry>> GetByCurveKey(const std::string& z85_key) = 0;
  // Every entry, ordered by organisation number.
  virtual Result<std::vector<wire::RegistryEntry>> List() = 0;
  // Health: Ok when the store can be read and would take a write now (SQLite: the write lock is
  // taken and released; PostgreSQL: a primary, not read-only, the table lockable for writing;
  // nothing is changed). The error says why not.
  virtual Status Probe() = 0;
  // The engine's name and where the data lives, for logs ("sqlite /x/registry.db").
  virtual std::string Describe() const = 0;
};

// Opens the store the config names, creating or migrating its schema to kRegistrySchemaVersion
// (PostgreSQL: under an advisory lock, so several registries can start at once). A schema newer
// than this build is refused (kUnsupported). With kExisting nothing is created or migrated:
// kNotFound when there is no schema yet, kUnsupported when it has another version.
enum class OpenMode { kCreateOrMigrate, kExisting };
Result<std::unique_ptr<RegistryStore>> OpenRegistryStore(const storage::StoreConfig& config,
                                                         OpenMode mode = OpenMode::kCreateOrMigrate);

// `db init` / `db migrate`: the same creation or migration, without anything else; returns the
// schema version before and after.
struct MigrateResult {
  int from = 0;
  int to = 0;
};
Result<MigrateResult> MigrateRegistryStore(const storage::StoreConfig& config);

// `db check`: connects (never creates or migrates) and reports; errors say what is wrong (a
// wrong URL, a missing database, a password refused, no server).
Result<StoreHealth> CheckRegistryStore(const storage::StoreConfig& config);

// `backup`: SQLite's online backup (storage::BackupDatabase), or pg_dump of the registry's tables
// (custom format, checked with pg_restore --list) on PostgreSQL. Never overwrites `out`. Returns
// a line saying what was written.
Result<std::string> BackupRegistryStore(const storage::StoreConfig& config, const std::string& out);

}  // namespace bud::registry
