// The address registry's configuration: one TOML file, validated at start.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "common/storage/store_config.h"

namespace bud::registry {

struct Config {
  std::string listen = "tcp://127.0.0.1:7600";  // [registry] listen
  std::string endpoint_file;                     // [registry] endpoint_file: where the bound endpoint is written
  // [store] backend/path/url/password_file; the older [registry] store = <file> still names
  // the SQLite file.
  storage::StoreConfig store;
  std::string trust_anchor;                      // [registry] trust_anchor: CA certificates (PEM)
  std::string crl_dir;  // [registry] crl_dir: the issuers' CRLs; "" = revocation not checked
  std::string curve_key_file;                    // [registry] curve_key_file: server key pair
  std::vector<std::string> allowed_client_keys;  // [registry] allowed_client_keys: brokers' keys
  std::string log_level = "info";                // [log] level
  std::string log_file;                          // [log] file (stderr when empty)

  static Result<Config> Load(const std::string& path);
};

// `--check-config`: what Load cannot see. The trust anchor holds valid certificates, the CURVE
// key file is private and well-formed, the store can be opened or created (SQLite) or its
// password file can be read (PostgreSQL: reaching the server is `db check`), the endpoint and log
// files can be written. Binds nothing and creates nothing. The report starts "config OK: ".
Result<std::string> CheckConfig(const Config& config, const std::string& config_path);

}  // namespace bud::registry
