// Registry config loading.
#include "address-registry/config.h"

#include <fmt/format.h>

#include "common/config.h"
#include "common/config_check.h"
#include "common/crypto/certs.h"
#include "common/storage/pg.h"
#include "common/wire/curve.h"

namespace bud::registry {

Result<Config> Config::Load(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(ConfigFile f, ConfigFile::Load(path));
  Config c;
  BUD_ASSIGN_OR_RETURN(c.listen, f.Endpoint("registry.listen", c.listen));
  BUD_ASSIGN_OR_RETURN(c.endpoint_file, f.Path("registry.endpoint_file", ""));
  BUD_ASSIGN_OR_RETURN(c.store, storage::LoadStoreConfig(f, "registry.store"));
  BUD_ASSIGN_OR_RETURN(c.trust_anchor, f.Path("registry.trust_anchor"));
  BUD_ASSIGN_OR_RETURN(c.crl_dir, f.Path("registry.crl_dir", ""));
  BUD_ASSIGN_OR_RETURN(c.curve_key_file, f.Path("registry.curve_key_file", ""));
  BUD_ASSIGN_OR_RETURN(c.allowed_client_keys,
                       f.StringList("registry.allowed_client_keys", std::vector<std::string>{}));
  for (const auto& k : c.allowed_client_keys) {
    if (!wire::IsZ85Key(k)) {
      return f.Error("registry.allowed_client_keys", fmt::format("'{}' is not a Z85 CURVE public key", k));
    }
  }
  BUD_ASSIGN_OR_RETURN(c.log_level, f.Choice("log.level", c.log_level, kLogLevels));
  BUD_ASSIGN_OR_RETURN(c.log_file, f.Path("log.file", ""));
  BUD_RETURN_IF_ERROR(f.CheckNoUnknownKeys());
  return c;
}

Result<std::string> CheckConfig(const Config& config, const std::string& config_path) {
  ConfigCheck check(config_path);
  check.Note("registry.listen", config.listen);
  if (!config.endpoint_file.empty()) {
    BUD_RETURN_IF_ERROR(check.WritableFile("registry.endpoint_file", config.endpoint_file));
  }
  if (config.store.sqlite()) {
    BUD_RETURN_IF_ERROR(check.Store(config.store.path_key, config.store.path));
  } else {
    check.Note("store.url", config.store.Describe() + " (connection not tried: `bud-registry db check`)");
    if (config.store.password_file.empty()) {
      check.Note("store.password_file", "none: libpq's own password file or a server that asks none");
    } else {
      auto pw = storage::pg::ReadPasswordFile(config.store.password_file);
      if (!pw.ok()) return pw.status().Context("store.password_file");
      check.Note("store.password_file", config.store.password_file + " (readable)");
    }
  }
  BUD_RETURN_IF_ERROR(check.TrustAnchor("registry.trust_anchor", config.trust_anchor).status());
  if (config.crl_dir.empty()) {
    check.Note("registry.crl_dir", "none: registration does NOT check revocation");
  } else {
    auto trust = crypto::TrustStore::Load(config.trust_anchor, {.dir = config.crl_dir});
    if (!trust.ok()) return trust.status().Context("registry.crl_dir");
    std::string note = fmt::format("{} CRL(s) in use", trust->CrlCount());
    for (const auto& p : trust->CrlProblems()) note += "; " + p;
    check.Note("registry.crl_dir", note);
  }
  if (config.curve_key_file.empty()) {
    check.Note("registry.curve_key_file", "none: serving WITHOUT CURVE (development only)");
  } else {
    BUD_RETURN_IF_ERROR(check.CurveKey("registry.curve_key_file", config.curve_key_file).status());
  }
  check.Note("registry.allowed_client_keys",
             fmt::format("{} service key(s)", config.allowed_client_keys.size()));
  BUD_RETURN_IF_ERROR(check.LogFile("log.file", config.log_file));
  return check.Report();
}

}  // namespace bud::registry
