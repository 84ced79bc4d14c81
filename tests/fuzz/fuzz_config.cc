// Fuzz target: config files (common/config.h and the three processes' Config::Load).
//
// 1. ConfigFile::Parse on the text, then every accessor on a handful of fixed keys and on the
//    keys the text itself defines (found with toml++ directly, so quoted keys with dots,
//    brackets and odd characters reach ConfigFile's dotted-path lookup), then
//    CheckNoUnknownKeys. Every failure must be kConfig.
// 2. When it is TOML, the text written to /tmp/bud-fuzz-config-<pid>.toml (mode 0600) and loaded
//    as a broker, registry and integration point config and as a CURVE key file
//    (common/wire/curve.h). A config either loads or is refused with kConfig; one that loads
//    must hold what its process relies on after Load (ranges, absolute paths, a valid orgnr,
//    Z85 keys where required).
#include <fcntl.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "address-registry/config.h"
#include "broker/config.h"
#include "common/config.h"
#include "common/wire/curve.h"
#include "integration-point/config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace bud;

template <typename T>
void ExpectConfigError(const Result<T>& r, const char* what) {
  if (!r.ok()) BUD_FUZZ_CHECK(r.status().code() == Code::kConfig, what);
}

void CheckStatusCode(const Status& s, const char* what) {
  if (!s.ok()) BUD_FUZZ_CHECK(s.code() == Code::kConfig, what);
}

// Up to `max` dotted paths of the values in `t`, as ConfigFile names them.
void CollectKeys(const toml::table& t, const std::string& prefix, std::vector<std::string>& out,
                 size_t max) {
  for (auto&& [k, v] : t) {
    if (out.size() >= max) return;
    std::string full = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    out.push_back(full);
    if (const toml::table* sub = v.as_table()) CollectKeys(*sub, full, out, max);
  }
}

void Accessors(ConfigFile& f, const std::string& key) {
  auto s = f.String(key);
  ExpectConfigError(s, "ConfigFile::String: wrong error code");
  ExpectConfigError(f.String(key, "dflt"), "ConfigFile::String(default): wrong error code");
  auto i = f.Int(key, std::nullopt, -1000, 1000);
  ExpectConfigError(i, "ConfigFile::Int: wrong error code");
  if (i.ok()) BUD_FUZZ_CHECK(*i >= -1000 && *i <= 1000, "ConfigFile::Int ignored its range");
  ExpectConfigError(f.Int(key, 7), "ConfigFile::Int(default): wrong error code");
  ExpectConfigError(f.Bool(key), "ConfigFile::Bool: wrong error code");
  ExpectConfigError(f.StringList(key), "ConfigFile::StringList: wrong error code");
  auto p = f.Path(key);
  ExpectConfigError(p, "ConfigFile::Path: wrong error code");
  if (p.ok()) BUD_FUZZ_CHECK(!p->empty() && p->front() == '/', "ConfigFile::Path: not absolute");
  auto po = f.Path(key, "");
  ExpectConfigError(po, "ConfigFile::Path(optional): wrong error code");
  if (po.ok() && !po->empty()) {
    BUD_FUZZ_CHECK(po->front() == '/', "ConfigFile::Path(optional): not absolute");
  }
}

// Returns whether the text is TOML at all.
bool ParseAndQuery(std::string_view text) {
  auto cf = ConfigFile::Parse(text, "fuzz.toml");
  if (!cf.ok()) {
    BUD_FUZZ_CHECK(cf.status().code() == Code::kConfig, "ConfigFile::Parse: wrong error code");
    return false;
  }
  ConfigFile& f = *cf;
  static const char* const kFixed[] = {"broker.listen",
                                       "broker.heartbeat_ms",
                                       "agency.orgnr",
                                       "paths.outbox",
                                       "log.file",
                                       "a.b.c",
                                       "x"};
  for (const char* k : kFixed) Accessors(f, k);
  CheckStatusCode(f.CheckNoUnknownKeys(), "CheckNoUnknownKeys: wrong error code");

  std::vector<std::string> keys;
  try {
    toml::table t = toml::parse(text, std::string("fuzz.toml"));
    CollectKeys(t, "", keys, 16);
  } catch (const toml::parse_error&) {
    BUD_FUZZ_CHECK(false, "toml++ refused a text that ConfigFile::Parse accepted");
  }
  for (const auto& k : keys) Accessors(f, k);
  CheckStatusCode(f.CheckNoUnknownKeys(), "CheckNoUnknownKeys: wrong error code");
  return true;
}

const std::string& TempPath() {
  static const std::string path = "/tmp/bud-fuzz-config-" + std::to_string(::getpid()) + ".toml";
  return path;
}

// Mode 0600: LoadCurveKeyFile refuses a key file that others can read.
bool WriteTemp(const uint8_t* data, size_t size) {
  int fd = ::open(TempPath().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = ::write(fd, data, size) == static_cast<ssize_t>(size);
  return ::close(fd) == 0 && ok;
}

bool Absolute(const std::string& p) { return !p.empty() && p.front() == '/'; }
bool AbsoluteOrEmpty(const std::string& p) { return p.empty() || p.front() == '/'; }

void LoadAll() {
  const std::string& path = TempPath();
  auto b = broker::Config::Load(path);
  ExpectConfigError(b, "broker::Config::Load: wrong error code");
  if (b.ok()) {
    BUD_FUZZ_CHECK(
        Absolute(b->store) && AbsoluteOrEmpty(b->endpoint_file) && AbsoluteOrEmpty(b->log_file),
        "broker config: a path is not absolute");
    BUD_FUZZ_CHECK(AbsoluteOrEmpty(b->curve_key_file) &&
                       (b->curve_key_file.empty() || !b->registry_endpoints.empty()),
                   "broker config: curve_key_file not absolute, or without registry.endpoint");
    BUD_FUZZ_CHECK(b->max_attempts >= 1 && b->store_max_bytes >= 0 && b->registry_timeout_ms >= 100,
                   "broker config: a value is out of range");
    BUD_FUZZ_CHECK(b->heartbeat_ms >= 100 && b->max_credit >= 1 && b->max_batch >= 1 &&
                       b->ack_timeout_ms >= 100 && b->default_ttl_ms >= 1000 && b->sweep_ms >= 10 &&
                       b->checkpoint_ms >= 100,
                   "broker config: a value is out of range");
  }
  auto r = registry::Config::Load(path);
  ExpectConfigError(r, "registry::Config::Load: wrong error code");
  if (r.ok()) {
    BUD_FUZZ_CHECK(r->store.sqlite() ? Absolute(r->store.path) && r->store.url.empty()
                                     : !r->store.url.empty() && r->store.path.empty(),
                   "registry config: a store without its file or URL, or with both");
    BUD_FUZZ_CHECK(AbsoluteOrEmpty(r->store.password_file) && Absolute(r->trust_anchor) &&
                       AbsoluteOrEmpty(r->endpoint_file) && AbsoluteOrEmpty(r->log_file),
                   "registry config: a path is not absolute");
    BUD_FUZZ_CHECK(AbsoluteOrEmpty(r->curve_key_file), "registry config: curve_key_file");
    for (const auto& k : r->allowed_client_keys) {
      BUD_FUZZ_CHECK(wire::IsZ85Key(k), "registry config: an allowed client key is not Z85");
    }
  }
  auto i = ip::Config::Load(path);
  ExpectConfigError(i, "ip::Config::Load: wrong error code");
  if (i.ok()) {
    fuzz::CheckOrgnr(i->orgnr);
    BUD_FUZZ_CHECK(Orgnr::Parse(i->orgnr).ok() && i->orgnr.size() == 9,
                   "ip config: orgnr is not 9 digits with a valid check digit");
    BUD_FUZZ_CHECK(Absolute(i->outbox) && Absolute(i->inbox) && Absolute(i->store) &&
                       Absolute(i->keys.signing_key) && Absolute(i->keys.signing_cert) &&
                       Absolute(i->keys.encryption_key) && Absolute(i->keys.encryption_cert) &&
                       Absolute(i->keys.trust_anchor) && AbsoluteOrEmpty(i->log_file),
                   "ip config: a path is not absolute");
    BUD_FUZZ_CHECK(i->broker.credit >= 1 && i->broker.max_in_flight >= 1 && i->max_attachments >= 1 &&
                       i->max_attachment_bytes >= 1 && i->registry.timeout_ms >= 100 &&
                       i->broker.heartbeat_ms >= 100 && i->rescan_ms >= 50 && i->default_ttl_ms >= 1000,
                   "ip config: a value is out of range");
    BUD_FUZZ_CHECK(i->keys.next_encryption_key.empty() == i->keys.next_encryption_cert.empty() &&
                       AbsoluteOrEmpty(i->keys.next_encryption_key) &&
                       AbsoluteOrEmpty(i->keys.next_encryption_cert) &&
                       AbsoluteOrEmpty(i->keys.curve_key_file),
                   "ip config: next_encryption_key/cert or curve_key_file");
    if (!i->keys.curve_key_file.empty()) {
      BUD_FUZZ_CHECK(wire::IsZ85Key(i->registry.server_key) && wire::IsZ85Key(i->broker.server_key),
                     "ip config: CURVE on without Z85 server keys");
    }
    (void)i->me();  // valid after Load
  }
  auto k = wire::LoadCurveKeyFile(path);
  if (k.ok()) {
    BUD_FUZZ_CHECK(wire::IsZ85Key(k->public_key) && wire::IsZ85Key(k->secret_key),
                   "LoadCurveKeyFile accepted keys that are not Z85");
  } else {
    BUD_FUZZ_CHECK(k.status().code() == Code::kConfig || k.status().code() == Code::kBadKey,
                   "LoadCurveKeyFile: wrong error code");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Text that is not TOML fails every Load in ConfigFile::Parse, just checked: skip the file.
  if (ParseAndQuery(std::string_view(reinterpret_cast<const char*>(data), size)) &&
      WriteTemp(data, size)) {
    LoadAll();
    ::unlink(TempPath().c_str());  // per input: libFuzzer may leave by _Exit, past atexit
  }
  return 0;
}
