// Signals and endpoint publication. See runtime.h.
#include "common/runtime.h"

#include <atomic>
#include <csignal>
#include <cstdio>

#include "common/fs.h"
#include "common/storage/sqlite.h"

namespace bud {

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }
}  // namespace

void InstallStopSignals() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool StopRequested() { return g_stop.load(); }
void RequestStop() { g_stop.store(true); }

Status PublishEndpoint(const std::string& path, const std::string& endpoint) {
  if (path.empty()) return Status::Ok();
  std::string tmp = path + ".tmp";
  BUD_RETURN_IF_ERROR(WriteFileSynced(tmp, endpoint + "\n", 0644));
  return RenameDurable(tmp, path);
}

int PrintResult(const Result<std::string>& out, const std::string& tool) {
  if (!out.ok()) {
    std::fprintf(stderr, "%s: %s\n", tool.c_str(), out.status().message().c_str());
    return 1;
  }
  std::fwrite(out->data(), 1, out->size(), stdout);
  return 0;
}

int BackupCommand(const std::string& store, const std::string& out, const std::string& tool) {
  auto info = storage::BackupDatabase(store, out);
  if (!info.ok()) {
    std::fprintf(stderr, "%s backup: %s\n", tool.c_str(), info.status().ToString().c_str());
    return 1;
  }
  std::printf("backed up %s to %s: %lld bytes, schema version %d, integrity_check ok\n",
              store.c_str(), out.c_str(), static_cast<long long>(info->bytes),
              info->schema_version);
  return 0;
}

}  // namespace bud
