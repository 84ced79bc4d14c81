// Fixtures for the operations tests (tests/ops): configs for each binary in a temporary folder,
// with real certificates (tests/support/test_pki.h), real CURVE key files and real stores, and the
// installed-binary paths (BUD_*_BIN). Configs are a map section -> key -> TOML value, so a test
// can break exactly one key.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace bud::test {

// section -> key -> TOML value (already quoted when a string).
using TomlConfig = std::map<std::string, std::map<std::string, std::string>>;

std::string RenderToml(const TomlConfig& config);
// A TOML basic string with its quotes.
std::string Quoted(const std::string& s);
// Writes `text` to `path` with `mode`; throws on failure.
void WriteFileMode(const std::string& path, const std::string& text, int mode);
// The public key of a new CURVE key file at `path` (mode 0600).
std::string NewCurveKey(const std::string& path);
// The permission bits of a file (e.g. 0600).
int ModeOf(const std::string& path);

// A folder with everything the three configs name: a CA (ca.pem), an agency's keys and
// certificates (keys/, EC P-256), CURVE key files for the registry, the broker and the agency.
// The configs reference them by relative path; the stores, endpoint files, outbox and inbox do
// not exist yet.
class OpsFolder {
 public:
  explicit OpsFolder(std::string orgnr = kAgencyA);
  const std::string& root() const { return dir_.path(); }
  std::string Path(const std::string& rel) const { return dir_.path() + "/" + rel; }
  TestCa& ca() { return ca_; }
  const std::string& orgnr() const { return orgnr_; }

  TomlConfig RegistryConfig() const;
  TomlConfig BrokerConfig() const;
  TomlConfig IpConfig() const;
  // Writes the config as <root>/<name> and returns its path.
  std::string Write(const std::string& name, const TomlConfig& config) const;

  std::string registry_key, broker_key, ip_key;  // CURVE public keys

 private:
  TempDir dir_;
  std::string orgnr_;
  TestCa ca_;
};

}  // namespace bud::test
