// Which engine holds a central service's store, and how to reach it: the [store] table.
//
//   [store]
//   backend = "sqlite"          # default: one file on this machine
//   path = "registry.db"        # the SQLite file (or the older [<service>] store = ...)
//
//   [store]
//   backend = "postgresql"
//   url = "host=db1,db2 port=5432,5432 dbname=budstikke user=budstikke"  # libpq connection string
//   password_file = "/etc/budstikke/pg-password"                          # first line: the password
//
// A password never stands in the config: a `url` that carries one is refused. Loading checks
// the shape only (both engines' keys are not mixed, the URL parses); reaching the server is
// `db check`'s job.
#pragma once

#include <string>
#include <string_view>

#include "common/config.h"
#include "common/status.h"

namespace bud::storage {

enum class Backend { kSqlite, kPostgres };

struct StoreConfig {
  Backend backend = Backend::kSqlite;
  std::string path;           // kSqlite: the database file
  std::string path_key;       // kSqlite: the config key that named it (for messages)
  std::string url;            // kPostgres: libpq connection string (no password)
  std::string password_file;  // kPostgres: optional; first line is the password

  bool sqlite() const { return backend == Backend::kSqlite; }
  // "sqlite /var/lib/x.db" or "postgresql host=... dbname=... user=..." (never a password).
  std::string Describe() const;
};

// Reads [store] from `f`; `legacy_path_key` (e.g. "registry.store") is where older configs name
// the SQLite file, and is still accepted for backend "sqlite".
Result<StoreConfig> LoadStoreConfig(ConfigFile& f, std::string_view legacy_path_key);

}  // namespace bud::storage
