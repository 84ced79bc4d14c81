// Broker config loading.
#include "broker/config.h"

#include <fmt/format.h>

#include "common/config.h"
#include "common/http_server.h"
#include "common/config_check.h"
#include "common/crypto/envelope.h"
#include "common/crypto/stream.h"
#include "common/storage/pg.h"
#include "common/wire/curve.h"

namespace bud::broker {

Result<Config> Config::Load(const std::string& path) {
  BUD_ASSIGN_OR_RETURN(ConfigFile f, ConfigFile::Load(path));
  Config c;
  BUD_ASSIGN_OR_RETURN(c.listen, f.Endpoint("broker.listen", c.listen));
  BUD_ASSIGN_OR_RETURN(c.endpoint_file, f.Path("broker.endpoint_file", ""));
  BUD_ASSIGN_OR_RETURN(c.storage, storage::LoadStoreConfig(f, "broker.store"));
  if (c.storage.sqlite()) c.store = c.storage.path;
  BUD_ASSIGN_OR_RETURN(c.spool_dir, f.Path("broker.spool_dir", ""));
  BUD_ASSIGN_OR_RETURN(c.curve_key_file, f.Path("broker.curve_key_file", ""));
  BUD_ASSIGN_OR_RETURN(c.registry_endpoints,
                       f.Endpoints("registry.endpoints", "registry.endpoint", /*required=*/false));
  BUD_ASSIGN_OR_RETURN(c.registry_server_key, f.String("registry.server_key", ""));
  BUD_ASSIGN_OR_RETURN(c.registry_timeout_ms,
                       f.Int("registry.timeout_ms", c.registry_timeout_ms, 100, 60000));
  if (!c.curve_key_file.empty() && c.registry_endpoints.empty()) {
    return f.Error(
        "registry.endpoint",
        "(or registry.endpoints) is needed with broker.curve_key_file: the broker asks the "
        "registry whose CURVE key a client has");
  }
  if (!c.curve_key_file.empty() && !wire::IsZ85Key(c.registry_server_key)) {
    return f.Error("registry.server_key",
                   "must be the registry's 40-character Z85 CURVE public "
                   "key when broker.curve_key_file is set");
  }
  BUD_ASSIGN_OR_RETURN(c.registry_key_cache_ms, f.Int("registry.key_cache_ms",
                                                       c.registry_key_cache_ms, 0, 3600000));
  BUD_ASSIGN_OR_RETURN(c.registry_stale_ms,
                       f.Int("registry.stale_ms", c.registry_stale_ms, 0, 7 * 86400000ll));
  BUD_ASSIGN_OR_RETURN(c.heartbeat_ms, f.Int("broker.heartbeat_ms", c.heartbeat_ms, 100, 600000));
  BUD_ASSIGN_OR_RETURN(c.hello_timeout_ms,
                       f.Int("broker.hello_timeout_ms", c.hello_timeout_ms, 100, 3600000));
  BUD_ASSIGN_OR_RETURN(c.max_credit, f.Int("broker.max_credit", c.max_credit, 1, 100000));
  BUD_ASSIGN_OR_RETURN(c.ack_timeout_ms,
                       f.Int("broker.ack_timeout_ms", c.ack_timeout_ms, 100, 86400000));
  BUD_ASSIGN_OR_RETURN(c.max_batch, f.Int("broker.max_batch", c.max_batch, 1, 100000));
  BUD_ASSIGN_OR_RETURN(c.default_ttl_ms,
                       f.Int("broker.default_ttl_ms", c.default_ttl_ms, 1000, 366ll * 86400000));
  BUD_ASSIGN_OR_RETURN(c.max_attempts, f.Int("broker.max_attempts", c.max_attempts, 1, 1000000));
  BUD_ASSIGN_OR_RETURN(c.store_max_bytes,
                       f.Int("broker.store_max_bytes", c.store_max_bytes, 0, INT64_MAX));
  BUD_ASSIGN_OR_RETURN(c.max_payload_bytes, f.Int("broker.max_payload_bytes", c.max_payload_bytes,
                                                   1, 64ll << 30));
  BUD_ASSIGN_OR_RETURN(c.stream_window, f.Int("broker.stream_window", c.stream_window, 1, 256));
  BUD_ASSIGN_OR_RETURN(c.sweep_ms, f.Int("broker.sweep_ms", c.sweep_ms, 10, 3600000));
  BUD_ASSIGN_OR_RETURN(c.session_lease_ms,
                       f.Int("broker.session_lease_ms", c.session_lease_ms, 300, 600000));
  BUD_ASSIGN_OR_RETURN(c.wake_poll_ms, f.Int("broker.wake_poll_ms", c.wake_poll_ms, 50, 600000));
  BUD_ASSIGN_OR_RETURN(c.checkpoint_ms,
                       f.Int("broker.checkpoint_ms", c.checkpoint_ms, 100, 86400000));
  BUD_ASSIGN_OR_RETURN(c.max_envelope_bytes,
                       f.Int("broker.max_envelope_bytes", c.max_envelope_bytes, 64 << 10,
                             static_cast<int64_t>(crypto::kMaxEnvelopeBytes)));
  BUD_ASSIGN_OR_RETURN(c.max_batch_bytes,
                       f.Int("broker.max_batch_bytes", c.max_batch_bytes, 1 << 20, 4ll << 30));
  BUD_ASSIGN_OR_RETURN(c.receive_hwm, f.Int("broker.receive_hwm", c.receive_hwm, 2, 100000));
  BUD_ASSIGN_OR_RETURN(c.max_queued_per_receiver,
                       f.Int("broker.max_queued_per_receiver", c.max_queued_per_receiver, 1,
                             INT64_MAX));
  BUD_ASSIGN_OR_RETURN(c.max_queued_per_sender,
                       f.Int("broker.max_queued_per_sender", c.max_queued_per_sender, 1,
                             INT64_MAX));
  BUD_ASSIGN_OR_RETURN(c.max_uploads, f.Int("broker.max_uploads", c.max_uploads, 1, 100000));
  BUD_ASSIGN_OR_RETURN(c.max_uploads_per_org,
                       f.Int("broker.max_uploads_per_org", c.max_uploads_per_org, 1, 100000));
  BUD_ASSIGN_OR_RETURN(c.max_upload_bytes_per_org,
                       f.Int("broker.max_upload_bytes_per_org", c.max_upload_bytes_per_org, 0,
                             INT64_MAX));
  BUD_ASSIGN_OR_RETURN(c.upload_idle_ms,
                       f.Int("broker.upload_idle_ms", c.upload_idle_ms, 1000, 30 * kDay));
  BUD_ASSIGN_OR_RETURN(c.max_ttl_ms, f.Int("broker.max_ttl_ms", c.max_ttl_ms, 1000, 366 * kDay));
  if (c.default_ttl_ms > c.max_ttl_ms) {
    return f.Error("broker.default_ttl_ms", fmt::format("is {} ms, more than broker.max_ttl_ms "
                                                        "({} ms)", c.default_ttl_ms, c.max_ttl_ms));
  }
  BUD_ASSIGN_OR_RETURN(c.retention_ms,
                       f.Int("broker.retention_ms", c.retention_ms, 1000, 3660 * kDay));
  if (c.retention_ms <= c.max_ttl_ms) {
    return f.Error("broker.retention_ms",
                   fmt::format("must be longer than broker.max_ttl_ms ({} ms): a message id "
                               "forgotten while its envelope can still be resubmitted would be "
                               "taken as a new message",
                               c.max_ttl_ms));
  }
  BUD_RETURN_IF_ERROR(LoadHttpOptions(f, c.http));
  BUD_ASSIGN_OR_RETURN(c.log_level, f.Choice("log.level", c.log_level, kLogLevels));
  BUD_ASSIGN_OR_RETURN(c.log_file, f.Path("log.file", ""));
  BUD_RETURN_IF_ERROR(f.CheckNoUnknownKeys());
  return c;
}

int64_t Config::MaxFrameBytes() const {
  const int64_t chunk = std::min<int64_t>(crypto::kMaxChunkSize, max_payload_bytes) +
                        static_cast<int64_t>(crypto::kChunkTagBytes);
  return std::max<int64_t>({max_envelope_bytes, chunk,
                            static_cast<int64_t>(crypto::kMaxStreamHeadBytes)}) +
         kFrameOverheadBytes;
}

Result<std::string> CheckConfig(const Config& config, const std::string& config_path) {
  ConfigCheck check(config_path);
  check.Note("broker.listen", config.listen);
  if (!config.endpoint_file.empty()) {
    BUD_RETURN_IF_ERROR(check.WritableFile("broker.endpoint_file", config.endpoint_file));
  }
  if (config.storage.sqlite()) {
    BUD_RETURN_IF_ERROR(check.Store(config.storage.path_key.empty() ? "broker.store"
                                                                     : config.storage.path_key,
                                    config.store));
  } else {
    check.Note("store.url", config.storage.Describe() +
                                " (connection not tried: `bud-broker db check`)");
    if (config.storage.password_file.empty()) {
      check.Note("store.password_file",
                 "none: libpq's own password file or a server that asks none");
    } else {
      auto pw = storage::pg::ReadPasswordFile(config.storage.password_file);
      if (!pw.ok()) return pw.status().Context("store.password_file");
      check.Note("store.password_file", config.storage.password_file + " (readable)");
    }
    check.Note("broker.spool_dir", "not used: streamed messages' chunks are in the database");
  }
  if (config.curve_key_file.empty()) {
    check.Note("broker.curve_key_file", "none: serving WITHOUT CURVE (development only)");
  } else {
    BUD_RETURN_IF_ERROR(check.CurveKey("broker.curve_key_file", config.curve_key_file).status());
    std::string eps;
    for (const auto& e : config.registry_endpoints) eps += (eps.empty() ? "" : ", ") + e;
    check.Note("registry.endpoints",
               fmt::format("{} (server key {}); known keys admitted {} ms "
                           "past key_cache_ms while no registry answers",
                           eps, config.registry_server_key, config.registry_stale_ms));
  }
  check.Note("broker.store_max_bytes", config.store_max_bytes > 0
                                           ? fmt::format("{} bytes", config.store_max_bytes)
                                           : fmt::format("auto: what the store holds plus the "
                                                         "free space, less {} % of the file "
                                                         "system (measured at start)",
                                                         kAutoQuotaReservePercent));
  BUD_RETURN_IF_ERROR(check.LogFile("log.file", config.log_file));
  return check.Report();
}

}  // namespace bud::broker
