// `backup` on PostgreSQL: pg_dump of one service's tables into a file, checked and put in place.
//
// Operation: runs pg_dump (PostgreSQL's client tools, found in PATH) in custom format for the
// tables matching the given patterns, into a temporary file beside `out`; checks that pg_restore
// can list it; fsyncs it and renames it to `out` without replacing anything; fsyncs the folder.
// The password goes to pg_dump through a private password file (mode 0600, in a temporary
// folder removed afterwards), never on its command line or in its environment. pg_dump takes
// one consistent snapshot (REPEATABLE READ), so the service keeps running meanwhile; it may read
// from a standby. Restore with pg_restore (docs/operating.md).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/storage/pg.h"

namespace bud::storage::pg {

struct DumpInfo {
  int64_t bytes = 0;     // size of the dump
  int64_t entries = 0;   // items pg_restore --list shows (tables, data, indexes ...)
};

// kAlreadyExists when `out` exists; kUnavailable/kNotFound/kConfig as Connection::Open would
// say when pg_dump cannot connect (its message included); kNotFound when pg_dump is missing.
// On failure nothing is left at `out` or beside it.
Result<DumpInfo> DumpTables(const ConnectOptions& options,
                            const std::vector<std::string>& table_patterns, const std::string& out,
                            std::chrono::seconds timeout = std::chrono::seconds(3600));

}  // namespace bud::storage::pg
