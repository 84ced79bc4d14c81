// TOML config access. See config.h.
#include "common/config.h"

#include <fmt/format.h>

#include "common/fs.h"

namespace bud {

std::string TomlString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

Result<ConfigFile> ConfigFile::Parse(std::string_view text, const std::string& name) {
  ConfigFile cf;
  cf.path_ = name;
  cf.dir_ = ParentDir(AbsolutePath(name));
  try {
    cf.table_ = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Status(Code::kConfig, fmt::format("config '{}' line {} column {}: {}", name, where.line,
                                             where.column, e.description()));
  }
  return cf;
}

Result<ConfigFile> ConfigFile::Load(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) {
    return Status(Code::kConfig, fmt::format("cannot read config: {}", text.status().message()));
  }
  return Parse(*text, path);
}

Status ConfigFile::Error(std::string_view key, std::string_view problem) const {
  return Status(Code::kConfig, fmt::format("config '{}': key '{}': {}", path_, key, problem));
}

Result<std::string> ConfigFile::String(std::string_view key, std::optional<std::string> dflt) {
  used_.emplace(key);
  auto node = table_.at_path(key);
  if (!node) {
    if (dflt) return *dflt;
    return Error(key, "is missing");
  }
  auto v = node.value<std::string>();
  if (!node.is_string() || !v) return Error(key, "must be a string");
  return *v;
}

Result<int64_t> ConfigFile::Int(std::string_view key, std::optional<int64_t> dflt, int64_t min,
                                int64_t max) {
  used_.emplace(key);
  auto node = table_.at_path(key);
  int64_t v;
  if (!node) {
    if (!dflt) return Error(key, "is missing");
    v = *dflt;
  } else {
    if (!node.is_integer()) return Error(key, "must be an integer");
    v = *node.value<int64_t>();
  }
  if (v < min || v > max) return Error(key, fmt::format("must be between {} and {}", min, max));
  return v;
}

Result<bool> ConfigFile::Bool(std::string_view key, std::optional<bool> dflt) {
  used_.emplace(key);
  auto node = table_.at_path(key);
  if (!node) {
    if (dflt) return *dflt;
    return Error(key, "is missing");
  }
  if (!node.is_boolean()) return Error(key, "must be true or false");
  return *node.value<bool>();
}

Result<std::vector<std::string>> ConfigFile::StringList(
    std::string_view key, std::optional<std::vector<std::string>> dflt) {
  used_.emplace(key);
  auto node = table_.at_path(key);
  if (!node) {
    if (dflt) return *dflt;
    return Error(key, "is missing");
  }
  auto* arr = node.as_array();
  if (arr == nullptr) return Error(key, "must be an array of strings");
  std::vector<std::string> out;
  for (auto& el : *arr) {
    auto s = el.value<std::string>();
    if (!el.is_string() || !s) return Error(key, "must be an array of strings");
    out.push_back(*s);
  }
  return out;
}

Result<std::string> ConfigFile::Path(std::string_view key, std::optional<std::string> dflt) {
  const bool optional_empty = dflt && dflt->empty();
  BUD_ASSIGN_OR_RETURN(std::string p, String(key, std::move(dflt)));
  if (p.empty()) {
    if (optional_empty) return p;
    return Error(key, "must not be empty");
  }
  if (p.front() != '/') p = JoinPath(dir_, p);
  return p;
}

Result<std::string> ConfigFile::Choice(std::string_view key, std::optional<std::string> dflt,
                                       const std::vector<std::string_view>& choices) {
  BUD_ASSIGN_OR_RETURN(std::string v, String(key, std::move(dflt)));
  std::string list;
  for (auto c : choices) {
    if (v == c) return v;
    list += fmt::format("{}{}", list.empty() ? "" : ", ", c);
  }
  return Error(key, fmt::format("'{}' is not one of: {}", v, list));
}

Result<std::string> ConfigFile::Endpoint(std::string_view key, std::optional<std::string> dflt) {
  const bool optional_empty = dflt && dflt->empty();
  BUD_ASSIGN_OR_RETURN(std::string e, String(key, std::move(dflt)));
  if (e.empty() && optional_empty) return e;
  for (std::string_view scheme : {"tcp://", "ipc://", "inproc://"}) {
    if (e.starts_with(scheme) && e.size() > scheme.size()) return e;
  }
  return Error(key, fmt::format("'{}' is not a ZeroMQ endpoint (e.g. tcp://host.example:7700)", e));
}

Result<std::vector<std::string>> ConfigFile::Endpoints(std::string_view list_key,
                                                       std::string_view one_key, bool required) {
  BUD_ASSIGN_OR_RETURN(auto list, StringList(list_key, std::vector<std::string>{}));
  BUD_ASSIGN_OR_RETURN(std::string one, Endpoint(one_key, ""));
  if (!list.empty() && !one.empty()) {
    return Error(list_key, fmt::format("give {} or {}, not both", list_key, one_key));
  }
  if (list.empty() && !one.empty()) list.push_back(one);
  if (list.empty() && required) {
    return Error(list_key,
                 fmt::format("is missing: give {} = [\"tcp://host:port\", ...] (or the one "
                             "{})",
                             list_key, one_key));
  }
  if (list.size() > 16) return Error(list_key, "at most 16 endpoints");
  for (size_t i = 0; i < list.size(); ++i) {
    bool ok = false;
    for (std::string_view scheme : {"tcp://", "ipc://", "inproc://"}) {
      ok = ok || (list[i].starts_with(scheme) && list[i].size() > scheme.size());
    }
    if (!ok) {
      return Error(list_key, fmt::format("'{}' is not a ZeroMQ endpoint (e.g. "
                                         "tcp://host.example:7700)",
                                         list[i]));
    }
    for (size_t j = 0; j < i; ++j) {
      if (list[j] == list[i]) return Error(list_key, fmt::format("'{}' is given twice", list[i]));
    }
  }
  return list;
}

Status ConfigFile::CheckNoUnknownKeys() const {
  std::vector<std::string> unknown;
  auto walk = [&](auto&& self, const toml::table& t, const std::string& prefix) -> void {
    for (auto&& [k, v] : t) {
      std::string full = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (const toml::table* sub = v.as_table()) {
        self(self, *sub, full);
      } else if (!used_.contains(full)) {
        unknown.push_back(full);
      }
    }
  };
  walk(walk, table_, "");
  if (unknown.empty()) return Status::Ok();
  std::string list;
  for (auto& u : unknown) list += (list.empty() ? "" : ", ") + u;
  return Status(Code::kConfig, fmt::format("config '{}': unknown key(s): {} (misspelt?)", path_,
                                           list));
}

}  // namespace bud
