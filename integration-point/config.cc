// Integration point config loading and validation.
#include "integration-point/config.h"

#include <fmt/format.h>

#include "common/config.h"
#include "common/config_check.h"
#include "common/fs.h"
#include "common/http_auth.h"
#include "common/http_server.h"
#include "common/message_channel.h"
#include "common/wire/curve.h"
#include "integration-point/identity.h"
#include "integration-point/outbox.h"

namespace bud::ip {

namespace {

// [keys]
Status LoadKeys(ConfigFile& f, Config& c) {
  BUD_ASSIGN_OR_RETURN(c.keys.signing_key, f.Path("keys.signing_key"));
  BUD_ASSIGN_OR_RETURN(c.keys.signing_cert, f.Path("keys.signing_cert"));
  BUD_ASSIGN_OR_RETURN(c.keys.encryption_key, f.Path("keys.encryption_key"));
  BUD_ASSIGN_OR_RETURN(c.keys.encryption_cert, f.Path("keys.encryption_cert"));
  BUD_ASSIGN_OR_RETURN(c.keys.trust_anchor, f.Path("keys.trust_anchor"));
  BUD_ASSIGN_OR_RETURN(c.keys.crl_dir, f.Path("keys.crl_dir", ""));
  BUD_ASSIGN_OR_RETURN(c.keys.crl_reload_ms, f.Int("keys.crl_reload_ms", c.keys.crl_reload_ms, 0, 86400000));
  BUD_ASSIGN_OR_RETURN(c.keys.next_encryption_key, f.Path("keys.next_encryption_key", ""));
  BUD_ASSIGN_OR_RETURN(c.keys.next_encryption_cert, f.Path("keys.next_encryption_cert", ""));
  if (c.keys.next_encryption_key.empty() != c.keys.next_encryption_cert.empty()) {
    return f.Error("keys.next_encryption_key",
                   "next_encryption_key and next_encryption_cert go together");
  }
  BUD_ASSIGN_OR_RETURN(c.keys.curve_key_file, f.Path("keys.curve_key_file", ""));
  return Status::Ok();
}

// [registry] and [broker]
Status LoadLinks(ConfigFile& f, Config& c) {
  BUD_ASSIGN_OR_RETURN(c.registry.endpoints,
                       f.Endpoints("registry.endpoints", "registry.endpoint", /*required=*/true));
  BUD_ASSIGN_OR_RETURN(c.registry.server_key, f.String("registry.server_key", ""));
  BUD_ASSIGN_OR_RETURN(c.broker.server_key, f.String("broker.server_key", ""));
  if (!c.keys.curve_key_file.empty()) {
    for (const char* k : {"registry.server_key", "broker.server_key"}) {
      const std::string& v =
          std::string_view(k) == "broker.server_key" ? c.broker.server_key : c.registry.server_key;
      if (!wire::IsZ85Key(v)) {
        return f.Error(k,
                       "must be the server's 40-character Z85 CURVE public key when "
                       "keys.curve_key_file is set");
      }
    }
  }
  BUD_ASSIGN_OR_RETURN(c.registry.timeout_ms,
                       f.Int("registry.timeout_ms", c.registry.timeout_ms, 100, 60000));
  BUD_ASSIGN_OR_RETURN(c.registry.cache_ms,
                       f.Int("registry.cache_ms", c.registry.cache_ms, 0, 86400000));
  BUD_ASSIGN_OR_RETURN(c.registry.stale_ms,
                       f.Int("registry.stale_ms", c.registry.stale_ms, 0, 7 * 86400000ll));
  BUD_ASSIGN_OR_RETURN(c.broker.endpoints,
                       f.Endpoints("broker.endpoints", "broker.endpoint", /*required=*/false));
  BUD_ASSIGN_OR_RETURN(
      c.broker.failover_backoff_ms,
      f.Int("broker.failover_backoff_ms", c.broker.failover_backoff_ms, 10, 600000));
  BUD_ASSIGN_OR_RETURN(c.broker.failover_backoff_max_ms,
                       f.Int("broker.failover_backoff_max_ms", c.broker.failover_backoff_max_ms,
                             c.broker.failover_backoff_ms, 3600000));
  BUD_ASSIGN_OR_RETURN(c.broker.credit, f.Int("broker.credit", c.broker.credit, 1, 10000));
  BUD_ASSIGN_OR_RETURN(c.broker.heartbeat_ms, f.Int("broker.heartbeat_ms", c.broker.heartbeat_ms, 100, 600000));
  BUD_ASSIGN_OR_RETURN(c.broker.submit_timeout_ms,
                       f.Int("broker.submit_timeout_ms", c.broker.submit_timeout_ms, 100, 3600000));
  BUD_ASSIGN_OR_RETURN(c.broker.max_in_flight, f.Int("broker.max_in_flight", c.broker.max_in_flight, 1, 100000));
  return Status::Ok();
}

// [outbox]
Status LoadOutbox(ConfigFile& f, Config& c) {
  BUD_ASSIGN_OR_RETURN(c.rescan_ms, f.Int("outbox.rescan_ms", c.rescan_ms, 50, 3600000));
  BUD_ASSIGN_OR_RETURN(c.max_attachments,
                       f.Int("outbox.max_attachments", c.max_attachments, 1, 10000));
  BUD_ASSIGN_OR_RETURN(c.max_attachment_bytes, f.Int("outbox.max_attachment_bytes",
                                                     c.max_attachment_bytes, 1, 200ll << 20));
  BUD_ASSIGN_OR_RETURN(c.default_ttl_ms,
                       f.Int("outbox.default_ttl_ms", c.default_ttl_ms, 1000, 366ll * 86400000));
  BUD_ASSIGN_OR_RETURN(c.stream_threshold_bytes, f.Int("outbox.stream_threshold_bytes",
                                                       c.stream_threshold_bytes, 0, 200ll << 20));
  BUD_ASSIGN_OR_RETURN(c.max_message_bytes,
                       f.Int("outbox.max_message_bytes", c.max_message_bytes, 1, 64ll << 30));
  return Status::Ok();
}

}  // namespace

Result<Config> Config::Load(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(ConfigFile f, ConfigFile::Load(path));
  Config c;
  BUD_ASSIGN_OR_RETURN(c.orgnr, f.String("agency.orgnr"));
  auto org = Orgnr::Parse(c.orgnr);
  if (!org.ok()) return f.Error("agency.orgnr", org.status().message());
  c.orgnr = org->digits();
  BUD_ASSIGN_OR_RETURN(auto on_behalf_of,
                       f.StringList("agency.on_behalf_of", std::vector<std::string>{}));
  for (const auto& party : on_behalf_of) {
    auto p = SenderParty(party);
    if (!p.ok()) return f.Error("agency.on_behalf_of", p.status().message());
    c.on_behalf_of.push_back(*p);
  }
  BUD_ASSIGN_OR_RETURN(c.outbox, f.Path("paths.outbox"));
  BUD_ASSIGN_OR_RETURN(c.inbox, f.Path("paths.inbox", ""));
  BUD_ASSIGN_OR_RETURN(c.store, f.Path("paths.store"));
  BUD_RETURN_IF_ERROR(LoadKeys(f, c));
  BUD_RETURN_IF_ERROR(LoadLinks(f, c));
  BUD_RETURN_IF_ERROR(LoadOutbox(f, c));
  BUD_ASSIGN_OR_RETURN(c.delivery, f.String("incoming.delivery", c.delivery));
  if (c.delivery != "folder" && c.delivery != "api") {
    return f.Error("incoming.delivery",
                   "must be \"folder\" (write paths.inbox) or \"api\" "
                   "(keep messages for the HTTP API's peek/pop/delete)");
  }
  if (c.delivery == "folder" && c.inbox.empty()) {
    return f.Error("paths.inbox", "is missing (needed with incoming.delivery = \"folder\")");
  }
  c.http.name = "http";
  BUD_RETURN_IF_ERROR(LoadHttpOptions(f, c.http));
  if (c.http.listen.empty() && c.delivery == "api") {
    return f.Error("incoming.delivery", "\"api\" needs the HTTP API: set http.listen");
  }
  BUD_ASSIGN_OR_RETURN(c.peek_lock_ms, f.Int("http.peek_lock_ms", c.peek_lock_ms, 100, 86400000));
  BUD_ASSIGN_OR_RETURN(c.broker.message_channel, f.String("next_move.message_channel", ""));
  if (Status ch = CheckChannel(c.broker.message_channel, "the value"); !ch.ok()) {
    return f.Error("next_move.message_channel", ch.message());
  }
  auto& wh = c.webhooks;
  BUD_ASSIGN_OR_RETURN(wh.connect_timeout_ms,
                       f.Int("webhooks.connect_timeout_ms", wh.connect_timeout_ms, 10, 600000));
  BUD_ASSIGN_OR_RETURN(wh.read_timeout_ms,
                       f.Int("webhooks.read_timeout_ms", wh.read_timeout_ms, 10, 600000));
  BUD_ASSIGN_OR_RETURN(wh.poll_ms, f.Int("webhooks.poll_ms", wh.poll_ms, 10, 60000));
  BUD_ASSIGN_OR_RETURN(wh.backoff_ms, f.Int("webhooks.backoff_ms", wh.backoff_ms, 10, 3600000));
  BUD_ASSIGN_OR_RETURN(wh.backoff_max_ms,
                       f.Int("webhooks.backoff_max_ms", wh.backoff_max_ms, wh.backoff_ms, 3600000));
  BUD_ASSIGN_OR_RETURN(wh.give_up_after_ms, f.Int("webhooks.give_up_after_ms", wh.give_up_after_ms,
                                                  60000, 30ll * 86400000));
  BUD_ASSIGN_OR_RETURN(wh.max_subscriptions,
                       f.Int("webhooks.max_subscriptions", wh.max_subscriptions, 1, 1000));
  BUD_ASSIGN_OR_RETURN(int64_t max_upload,
                       f.Int("http.max_upload_bytes", 100ll << 20, 1024, 200ll << 20));
  c.http.max_body_bytes = static_cast<size_t>(max_upload);
  BUD_ASSIGN_OR_RETURN(c.log_level, f.Choice("log.level", c.log_level, kLogLevels));
  BUD_ASSIGN_OR_RETURN(c.log_file, f.Path("log.file", ""));
  BUD_RETURN_IF_ERROR(f.CheckNoUnknownKeys());
  return c;
}

Result<std::string> CheckConfig(const Config& config, const std::string& config_path) {
  ConfigCheck check(config_path);
  check.Note("agency.orgnr", config.me().wire());
  check.Note("next_move.message_channel",
             config.broker.message_channel.empty()
                 ? std::string("none: this point takes the messages for no channel")
                 : fmt::format("'{}': this point takes only the messages of that channel",
                               config.broker.message_channel));
  const std::pair<const char*, const std::string*> files[] = {
      {"keys.signing_key", &config.keys.signing_key},
      {"keys.signing_cert", &config.keys.signing_cert},
      {"keys.encryption_key", &config.keys.encryption_key},
      {"keys.encryption_cert", &config.keys.encryption_cert},
      {"keys.next_encryption_key", &config.keys.next_encryption_key},
      {"keys.next_encryption_cert", &config.keys.next_encryption_cert},
      {"keys.trust_anchor", &config.keys.trust_anchor},
  };
  for (const auto& [key, path] : files) {
    if (!path->empty()) BUD_RETURN_IF_ERROR(check.ReadableFile(key, *path));
  }
  BUD_RETURN_IF_ERROR(check.TrustAnchor("keys.trust_anchor", config.keys.trust_anchor).status());
  auto id = LoadIdentity(config);
  if (!id.ok()) {
    return Status(Code::kConfig,
                  fmt::format("config '{}': {}", config_path, id.status().message()));
  }
  for (auto [key, cert] : {std::pair{"keys.signing_cert", id->signing_cert.get()},
                           std::pair{"keys.encryption_cert", id->encryption_cert.get()}}) {
    int days = crypto::DaysToExpiry(cert);
    check.Note(key, fmt::format("{} valid {} more day(s){}", crypto::SubjectOf(cert), days,
                                days < 30 ? " -- RENEW IT SOON" : ""));
  }
  if (id->next_encryption_cert) {
    check.Note("keys.next_encryption_cert", crypto::SubjectOf(id->next_encryption_cert.get()));
  }
  if (config.keys.crl_dir.empty()) {
    check.Note("keys.crl_dir", "none: certificate revocation is NOT checked");
  } else {
    std::string note = fmt::format("{} CRL(s) in use", id->trust->CrlCount());
    for (const auto& p : id->trust->CrlProblems()) note += "; " + p;
    check.Note("keys.crl_dir", note);
  }
  if (config.keys.curve_key_file.empty()) {
    check.Note("keys.curve_key_file", "none: talking WITHOUT CURVE (development only)");
  } else {
    BUD_RETURN_IF_ERROR(check.CurveKey("keys.curve_key_file", config.keys.curve_key_file).status());
  }
  auto joined = [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& e : v) out += (out.empty() ? "" : ", ") + e;
    return out;
  };
  check.Note("registry.endpoints",
             fmt::format("{}; entries served {} ms past cache_ms while no registry answers",
                         joined(config.registry.endpoints), config.registry.stale_ms));
  check.Note("broker.endpoints", config.broker.endpoints.empty()
                                     ? std::string("none here: the list of our registry entry")
                                     : joined(config.broker.endpoints));
  if (!config.http.basic_auth_file.empty()) {
    // What `bud-ip run` would refuse at start (common/http_auth.h): a missing file, one others
    // can read, a line that does not parse. The user is noted; the hash never is.
    const std::string& path = config.http.basic_auth_file;
    BUD_RETURN_IF_ERROR(check.ReadableFile("http.basic_auth_file", path));
    auto credential = LoadBasicAuthFile(path);
    if (!credential.ok()) return check.Fail("http.basic_auth_file", credential.status());
    check.Note("http.basic_auth_file",
               fmt::format("{}: HTTP Basic for user '{}' (scrypt, N = 2^{})", path,
                           EscapeControl(credential->user), credential->log2_n));
  }
  BUD_RETURN_IF_ERROR(check.Store("paths.store", config.store));
  BUD_RETURN_IF_ERROR(check.Folder("paths.outbox", config.outbox));
  BUD_RETURN_IF_ERROR(check.Folder("paths.inbox", config.inbox));
  BUD_RETURN_IF_ERROR(check.LogFile("log.file", config.log_file));
  return check.Report();
}

}  // namespace bud::ip
