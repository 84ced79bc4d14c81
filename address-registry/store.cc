// Choosing the registry's store engine from the config. See store.h.
#include "address-registry/store.h"

#include <fmt/format.h>

#include "address-registry/pg_store.h"
#include "address-registry/sqlite_store.h"
#include "common/fs.h"
#include "common/storage/pg_dump.h"
#include "common/storage/sqlite.h"

namespace bud::registry {
namespace {

storage::pg::ConnectOptions PgOptions(const storage::StoreConfig& config) {
  storage::pg::ConnectOptions o;
  o.conninfo = config.url;
  o.password_file = config.password_file;
  o.application_name = "bud-registry";
  return o;
}

}  // namespace

Result<std::unique_ptr<RegistryStore>> OpenRegistryStore(const storage::StoreConfig& config,
                                                         OpenMode mode) {
  if (config.sqlite()) {
    if (mode == OpenMode::kExisting && !Exists(config.path)) {
      return Status(Code::kNotFound, fmt::format("store '{}' does not exist (`bud-registry db init`, "
                                                 "`add` or `run` creates it)",
                                                 config.path));
    }
    BUD_ASSIGN_OR_RETURN(auto s, SqliteRegistryStore::Open(config.path));
    return std::unique_ptr<RegistryStore>(std::move(s));
  }
  BUD_ASSIGN_OR_RETURN(auto s, PgRegistryStore::Open(PgOptions(config), mode == OpenMode::kCreateOrMigrate));
  return std::unique_ptr<RegistryStore>(std::move(s));
}

Result<MigrateResult> MigrateRegistryStore(const storage::StoreConfig& config) {
  if (config.sqlite()) return SqliteRegistryStore::Migrate(config.path);
  return PgRegistryStore::Migrate(PgOptions(config));
}

Result<StoreHealth> CheckRegistryStore(const storage::StoreConfig& config) {
  if (config.sqlite()) return SqliteRegistryStore::Check(config.path);
  return PgRegistryStore::Check(PgOptions(config));
}

Result<std::string> BackupRegistryStore(const storage::StoreConfig& config, const std::string& out) {
  if (config.sqlite()) {
    BUD_ASSIGN_OR_RETURN(auto info, storage::BackupDatabase(config.path, out));
    return fmt::format("backed up {} to {}: {} bytes, schema version {}, integrity_check ok",
                       config.path, out, info.bytes, info.schema_version);
  }
  auto o = PgOptions(config);
  o.read_write = false;  // a dump may be taken from a standby
  BUD_ASSIGN_OR_RETURN(auto info, storage::pg::DumpTables(o, {"registry_schema", "registry_entries"}, out));
  return fmt::format("backed up postgresql {} (registry tables) to {}: {} bytes, {} items, "
                     "pg_restore --list ok",
                     storage::pg::Describe(config.url), out, info.bytes, info.entries);
}

}  // namespace bud::registry
