// Process runtime shared by the three binaries: stop on SIGINT/SIGTERM, and publishing the
// endpoint a socket actually bound (tests bind port 0, "tcp://127.0.0.1:*", and read it back).
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

}  // namespace bud
