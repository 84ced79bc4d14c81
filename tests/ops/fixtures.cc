// Operations test fixtures. See fixtures.h.
#include "tests/ops/fixtures.h"

#include <sys/stat.h>

#include <stdexcept>

#include "common/config.h"
#include "common/fs.h"
#include "common/wire/curve.h"

namespace bud::test {

std::string Quoted(const std::string& s) { return TomlString(s); }

std::string RenderToml(const TomlConfig& config) {
  std::string out;
  for (const auto& [section, keys] : config) {
    out += "[" + section + "]\n";
    for (const auto& [k, v] : keys) out += k + " = " + v + "\n";
  }
  return out;
}

void WriteFileMode(const std::string& path, const std::string& text, int mode) {
  Status s = WriteFileSynced(path, text, mode);
  if (s.ok() && ::chmod(path.c_str(), static_cast<mode_t>(mode)) != 0) {
    s = ErrnoStatus(errno, "chmod " + path);
  }
  if (!s.ok()) throw std::runtime_error("fixture: " + s.ToString());
}

std::string NewCurveKey(const std::string& path) {
  auto kp = wire::WriteNewCurveKeyFile(path);
  if (!kp.ok()) throw std::runtime_error("fixture: " + kp.status().ToString());
  return kp->public_key;
}

int ModeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

OpsFolder::OpsFolder(std::string orgnr) : orgnr_(std::move(orgnr)) {
  ca_.WriteCertFile(Path("ca.pem"));
  if (!MakeDirs(Path("keys"), 0700).ok()) throw std::runtime_error("fixture: mkdir keys");
  ca_.IssueSigning(KeyType::kEcP256, orgnr_)
      .WriteFiles(Path("keys/signing.key"), Path("keys/signing.pem"));
  ca_.IssueEncryption(KeyType::kEcP256, orgnr_)
      .WriteFiles(Path("keys/encryption.key"), Path("keys/encryption.pem"));
  registry_key = NewCurveKey(Path("registry.key"));
  broker_key = NewCurveKey(Path("broker.key"));
  ip_key = NewCurveKey(Path("keys/curve.key"));
}

TomlConfig OpsFolder::RegistryConfig() const {
  return {{"registry",
           {{"listen", Quoted("tcp://127.0.0.1:*")},
            {"endpoint_file", Quoted("registry.endpoint")},
            {"store", Quoted("registry.db")},
            {"trust_anchor", Quoted("ca.pem")},
            {"curve_key_file", Quoted("registry.key")},
            {"allowed_client_keys", "[" + Quoted(broker_key) + "]"}}},
          {"log", {{"level", Quoted("info")}}}};
}

TomlConfig OpsFolder::BrokerConfig() const {
  return {{"broker",
           {{"listen", Quoted("tcp://127.0.0.1:*")},
            {"endpoint_file", Quoted("broker.endpoint")},
            {"store", Quoted("broker.db")},
            {"curve_key_file", Quoted("broker.key")}}},
          {"registry",
           {{"endpoint", Quoted("tcp://127.0.0.1:7600")}, {"server_key", Quoted(registry_key)}}}};
}

TomlConfig OpsFolder::IpConfig() const {
  return {{"agency", {{"orgnr", Quoted(orgnr_)}}},
          {"paths",
           {{"outbox", Quoted("outbox")}, {"inbox", Quoted("inbox")}, {"store", Quoted("ip.db")}}},
          {"keys",
           {{"signing_key", Quoted("keys/signing.key")},
            {"signing_cert", Quoted("keys/signing.pem")},
            {"encryption_key", Quoted("keys/encryption.key")},
            {"encryption_cert", Quoted("keys/encryption.pem")},
            {"trust_anchor", Quoted("ca.pem")},
            {"curve_key_file", Quoted("keys/curve.key")}}},
          {"registry",
           {{"endpoint", Quoted("tcp://127.0.0.1:7600")}, {"server_key", Quoted(registry_key)}}},
          {"broker",
           {{"endpoint", Quoted("tcp://127.0.0.1:7700")}, {"server_key", Quoted(broker_key)}}}};
}

std::string OpsFolder::Write(const std::string& name, const TomlConfig& config) const {
  std::string path = Path(name);
  WriteFileMode(path, RenderToml(config), 0644);
  return path;
}

}  // namespace bud::test
