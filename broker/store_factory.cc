// The broker store's engines. See store_factory.h.
#include "broker/store_factory.h"

#include <fmt/format.h>

#include "broker/pg_queue_store.h"
#include "broker/sqlite_queue_store.h"
#include "common/fs.h"
#include "common/storage/pg_dump.h"

namespace bud::broker {

storage::pg::ConnectOptions PgOptions(const Config& config) {
  storage::pg::ConnectOptions o;
  o.conninfo = config.storage.url;
  o.password_file = config.storage.password_file;
  o.application_name = "bud-broker";
  return o;
}

std::string SpoolDir(const Config& config) {
  if (!config.storage.sqlite()) return std::string();  // the chunks are in the database
  if (!config.spool_dir.empty()) return config.spool_dir;
  return JoinPath(ParentDir(AbsolutePath(config.store)), "spool");
}

Result<std::unique_ptr<QueueStore>> OpenQueueStore(const Config& config) {
  if (config.storage.sqlite()) {
    BUD_ASSIGN_OR_RETURN(auto s, SqliteQueueStore::Open(config.store, config.store_max_bytes));
    return std::unique_ptr<QueueStore>(std::move(s));
  }
  BUD_ASSIGN_OR_RETURN(auto s, PgQueueStore::Open(PgOptions(config), config.store_max_bytes));
  return std::unique_ptr<QueueStore>(std::move(s));
}

Result<std::unique_ptr<QueueStoreReader>> OpenQueueReader(const Config& config) {
  if (config.storage.sqlite()) return OpenSqliteQueueReader(config.store);
  return OpenPgQueueReader(PgOptions(config));
}

Result<std::string> DbMigrateCommand(const Config& config, const char* verb) {
  if (config.storage.sqlite()) {
    auto store = SqliteQueueStore::Open(config.store);
    if (!store.ok()) return store.status();
    BUD_ASSIGN_OR_RETURN(auto stats, (*store)->Stats(/*count_history=*/false));
    return fmt::format("{}: broker schema version {} (SQLite migrates when it opens)\n",
                       config.storage.Describe(), stats.schema_version);
  }
  BUD_ASSIGN_OR_RETURN(PgStoreInfo info, MigratePgQueueStore(PgOptions(config)));
  std::string how = info.migrated_from == info.schema_version
                        ? "already current"
                        : info.migrated_from == 0
                              ? "created"
                              : fmt::format("migrated from version {}", info.migrated_from);
  return fmt::format("{} on {}: broker schema version {} ({}; {})\n", config.storage.Describe(),
                     info.server, info.schema_version, how, verb);
}

Result<std::string> DbCheckCommand(const Config& config) {
  if (config.storage.sqlite()) {
    BUD_ASSIGN_OR_RETURN(auto reader, OpenSqliteQueueReader(config.store));
    BUD_ASSIGN_OR_RETURN(auto stats, reader->Stats(/*count_history=*/false));
    return fmt::format("engine:         sqlite\nstore:          {}\nschema version: {} (this "
                       "release: {})\nqueued:         {}\ndb check OK\n",
                       config.store, stats.schema_version, SchemaVersion(), stats.queued);
  }
  BUD_ASSIGN_OR_RETURN(PgStoreInfo info, CheckPgQueueStore(PgOptions(config)));
  std::string out = fmt::format(
      "engine:         postgresql\nstore:          {}\nserver:         {}\nschema version: {} "
      "(this release: {})\nwritable:       {}",
      info.database, info.server, info.schema_version, PgSchemaVersion(),
      info.writable ? "yes" : "NO");
  if (info.schema_version != PgSchemaVersion()) {
    return Status(Code::kUnsupported,
                  fmt::format("{}\nthe schema is version {}, this release needs {} (`bud-broker "
                              "db init` or `db migrate`)",
                              out, info.schema_version, PgSchemaVersion()));
  }
  if (!info.writable) {
    return Status(Code::kUnavailable,
                  fmt::format("{}\nthe server takes no writes (a standby, or read-only); the "
                              "broker needs the primary",
                              out));
  }
  return out + "\ndb check OK\n";
}

Result<std::string> BackupPgStoreCommand(const Config& config, const std::string& out) {
  if (config.storage.sqlite()) {
    return Status(Code::kInvalidArgument, "the store is SQLite: `backup` copies it with SQLite's "
                                          "online backup");
  }
  BUD_ASSIGN_OR_RETURN(auto dump, storage::pg::DumpTables(PgOptions(config),
                                                          {"broker_*"}, out));
  return fmt::format("pg_dump of the broker's tables in {} written to {} ({} bytes, {} entries; "
                     "restore with pg_restore)\n",
                     config.storage.Describe(), out, dump.bytes, dump.entries);
}

}  // namespace bud::broker
