// Logging: one named spdlog logger per component. Lines name the message, organisation and peer
// they are about. Never log keys, passwords or payload content.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace bud {

// Sets the default sink (stderr, or a file when `file` is not empty) and level
// ("trace".."critical"). Call once at process start.
void SetupLogging(const std::string& level, const std::string& file = "");
// The named logger for a component, created on first use with the default sink.
std::shared_ptr<spdlog::logger> Logger(const std::string& component);

}  // namespace bud
