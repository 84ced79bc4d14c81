// Registry config loading.
#include "address-registry/config.h"

#include <fmt/format.h>

#include "common/config.h"
#include "common/wire/curve.h"

namespace bud::registry {

Result<Config> Config::Load(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(ConfigFile f, ConfigFile::Load(path));
  Config c;
  BUD_ASSIGN_OR_RETURN(c.listen, f.String("registry.listen", c.listen));
  BUD_ASSIGN_OR_RETURN(c.endpoint_file, f.Path("registry.endpoint_file", ""));
  BUD_ASSIGN_OR_RETURN(c.store, f.Path("registry.store"));
  BUD_ASSIGN_OR_RETURN(c.trust_anchor, f.Path("registry.trust_anchor"));
  BUD_ASSIGN_OR_RETURN(c.curve_key_file, f.Path("registry.curve_key_file", ""));
  BUD_ASSIGN_OR_RETURN(c.allowed_client_keys,
                       f.StringList("registry.allowed_client_keys", std::vector<std::string>{}));
  for (const auto& k : c.allowed_client_keys) {
    if (!wire::IsZ85Key(k)) {
      return f.Error("registry.allowed_client_keys", fmt::format("'{}' is not a Z85 CURVE public key", k));
    }
  }
  BUD_ASSIGN_OR_RETURN(c.log_level, f.String("log.level", c.log_level));
  BUD_ASSIGN_OR_RETURN(c.log_file, f.Path("log.file", ""));
  BUD_RETURN_IF_ERROR(f.CheckNoUnknownKeys());
  return c;
}

}  // namespace bud::registry
