// Opens the broker's store on the engine its config names ([store] backend): SQLite
// (SqliteQueueStore) or PostgreSQL (PgQueueStore). The one place that knows both engines.
#pragma once

#include <memory>
#include <string>

#include "broker/config.h"
#include "broker/queue_store.h"
#include "common/storage/pg.h"

namespace bud::broker {

// The store the broker's loop writes (created or migrated as needed).
Result<std::unique_ptr<QueueStore>> OpenQueueStore(const Config& config);
// Its read side, read-only, beside a running broker (creating and migrating nothing).
Result<std::unique_ptr<QueueStoreReader>> OpenQueueReader(const Config& config);
// Where the spool files of streamed messages go: broker.spool_dir, or "spool" beside the SQLite
// file; "" on PostgreSQL, whose store keeps the chunks.
std::string SpoolDir(const Config& config);
// How to reach the PostgreSQL server of a postgresql store.
storage::pg::ConnectOptions PgOptions(const Config& config);

// `bud-broker db init|migrate|check`: a few lines for people, or an error (kUnsupported for a
// schema that is not this release's, kUnavailable for a server that takes no writes).
Result<std::string> DbMigrateCommand(const Config& config, const char* verb);
Result<std::string> DbCheckCommand(const Config& config);
// `bud-broker backup` on PostgreSQL: pg_dump (custom format) of the broker's tables into `out`
// (never replaced), checked with pg_restore --list. SQLite stores use BackupCommand.
Result<std::string> BackupPgStoreCommand(const Config& config, const std::string& out);

}  // namespace bud::broker
