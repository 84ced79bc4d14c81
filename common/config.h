// Reading TOML config files with errors that name the file, the key and the problem.
//
// Each process has one plain config struct (see e.g. broker/config.h) filled from a ConfigFile
// and validated at start; defaults live in that struct. Relative paths in a config are resolved
// against the config file's directory, so a config can be moved with its folder.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace bud {

// The values of every config's [log] level.
inline const std::vector<std::string_view> kLogLevels = {"trace", "debug",    "info", "warn",
                                                         "error", "critical", "off"};

// `s` as a TOML basic string, quotes included (for programs that write configs).
std::string TomlString(std::string_view s);

class ConfigFile {
 public:
  static Result<ConfigFile> Load(const std::string& path);
  static Result<ConfigFile> Parse(std::string_view text, const std::string& name);

  // `key` is a dotted path, e.g. "broker.endpoint". Missing and no default: kConfig.
  Result<std::string> String(std::string_view key,
                             std::optional<std::string> dflt = std::nullopt);
  Result<int64_t> Int(std::string_view key, std::optional<int64_t> dflt = std::nullopt,
                      int64_t min = INT64_MIN, int64_t max = INT64_MAX);
  Result<bool> Bool(std::string_view key, std::optional<bool> dflt = std::nullopt);
  Result<std::vector<std::string>> StringList(
      std::string_view key, std::optional<std::vector<std::string>> dflt = std::nullopt);
  // A string resolved against the config file's directory when relative. With a default of ""
  // the key is optional and an absent or empty value gives "".
  Result<std::string> Path(std::string_view key, std::optional<std::string> dflt = std::nullopt);

  // A string that must be one of `choices`.
  Result<std::string> Choice(std::string_view key, std::optional<std::string> dflt,
                             const std::vector<std::string_view>& choices);
  // A ZeroMQ endpoint (tcp://, ipc:// or inproc://). With a default of "" the key is optional.
  Result<std::string> Endpoint(std::string_view key,
                               std::optional<std::string> dflt = std::nullopt);

  // A list of ZeroMQ endpoints from `list_key = [...]` (e.g. "broker.endpoints") or, as before
  // lists, the one `one_key = "..."` ("broker.endpoint"); both at once is an error, as is a
  // duplicate or more than 16. Empty when neither is there and !required.
  Result<std::vector<std::string>> Endpoints(std::string_view list_key, std::string_view one_key,
                                             bool required);

  // kConfig naming every key present in the file that was never asked for (catches typos).
  Status CheckNoUnknownKeys() const;

  Status Error(std::string_view key, std::string_view problem) const;
  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_; }

 private:
  toml::table table_;
  std::string path_;
  std::string dir_;
  std::set<std::string, std::less<>> used_;
};

}  // namespace bud
