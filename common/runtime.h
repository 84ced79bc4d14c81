// Process runtime shared by the three binaries: stop on SIGINT/SIGTERM, publishing the endpoint
// a socket actually bound (tests bind port 0, "tcp://127.0.0.1:*", and read it back), and the
// `backup` verb.
#pragma once

#include <string>

#include "common/status.h"

namespace bud {

// SIGINT and SIGTERM set a flag that StopRequested() reports; SIGPIPE is ignored.
void InstallStopSignals();
bool StopRequested();
void RequestStop();

// Writes `endpoint` to `path` atomically (temp file, fsync, rename). No-op for an empty path.
Status PublishEndpoint(const std::string& path, const std::string& endpoint);

// How a verb that produces text ends: `out` on stdout and 0, or "<tool>: <message>" on stderr
// and 1. (`--check-config`, `stats`, `list` ...)
int PrintResult(const Result<std::string>& out, const std::string& tool);

// The `backup` verb of every binary: storage::BackupDatabase(store, out), then one line saying
// what was written, or the error on stderr. Exit code (0 or 1).
int BackupCommand(const std::string& store, const std::string& out, const std::string& tool);

}  // namespace bud
