// Signals and endpoint publication. See runtime.h.
#include "common/runtime.h"

#include <csignal>

#include <atomic>

#include "common/fs.h"

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

}  // namespace bud
