// The broker's configuration: one TOML file, validated at start. Defaults are here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/http_server.h"
#include "common/status.h"
#include "common/storage/store_config.h"

namespace bud::broker {

// With store_max_bytes = 0 the broker takes, at start, what the store holds plus the free space
// of its file system minus this share of the file system, so that a flood of reservations cannot
// promise more disk than exists (docs/operating.md).
inline constexpr int64_t kAutoQuotaReservePercent = 5;
// What a frame may carry beyond its envelope or chunk record (protobuf framing, ids).
inline constexpr int64_t kFrameOverheadBytes = 64 << 10;

struct Config {
  static constexpr int64_t kDay = 86400ll * 1000;
  std::string listen = "tcp://127.0.0.1:7700";  // [broker] listen
  std::string endpoint_file;                     // [broker] endpoint_file (optional)
  // [store] backend = "sqlite" | "postgresql", path, url, password_file
  // (common/storage/store_config.h); the older [broker] store = <file> still names the SQLite
  // file.
  storage::StoreConfig storage;
  std::string store;                             // the SQLite file (storage.path; "" on PostgreSQL)
  // [broker] spool_dir: spool files of streamed messages. Default: "spool" beside the SQLite
  // file. Not used with PostgreSQL (the chunks are rows of the database).
  std::string spool_dir;
  std::string curve_key_file;                    // [broker] curve_key_file: server key pair
  // [registry] endpoints (or the one endpoint): for ZAP, key -> organisation; tried in order.
  std::vector<std::string> registry_endpoints;
  std::string registry_server_key;               // [registry] server_key (Z85)
  int64_t registry_timeout_ms = 3000;            // [registry] timeout_ms
  int64_t registry_key_cache_ms = 60000;         // [registry] key_cache_ms: ZAP's admitted keys
  // [registry] stale_ms: when no registry answers, a key admitted before is still admitted this
  // long after its key_cache_ms ran out (never one the registry answered NOT_FOUND for).
  int64_t registry_stale_ms = 3600 * 1000;
  int64_t heartbeat_ms = 2000;                   // [broker] heartbeat_ms
  int64_t hello_timeout_ms = 10000;              // [broker] hello_timeout_ms: close connections
                                                 // that have not said Hello by then
  int64_t max_credit = 64;                       // [broker] max_credit: unacked deliveries per receiver
  int64_t ack_timeout_ms = 30000;                // [broker] ack_timeout_ms: redeliver after this
  int64_t max_batch = 512;                       // [broker] max_batch: submits per commit
  int64_t default_ttl_ms = 24 * 3600 * 1000;     // [broker] default_ttl_ms when expires is unset
  int64_t max_attempts = 10;                     // [broker] max_attempts: failed deliveries before FEIL
  int64_t max_payload_bytes = 5ll << 30;        // [broker] max_payload_bytes: streamed messages
  int64_t stream_window = 8;                     // [broker] stream_window: unacked chunks per transfer
  int64_t store_max_bytes = 0;                   // [broker] store_max_bytes: cap (0 = auto, below)
  int64_t sweep_ms = 1000;                       // [broker] sweep_ms: expiry sweep interval
  int64_t checkpoint_ms = 60000;                 // [broker] checkpoint_ms: WAL checkpoint interval
  // Several brokers on one PostgreSQL store (docs/operating.md, "Several brokers on one
  // database"). [broker] session_lease_ms: a session's lease, renewed every third of it;
  // [broker] wake_poll_ms: look at every session this often, besides LISTEN/NOTIFY.
  int64_t session_lease_ms = 5000;
  int64_t wake_poll_ms = 1000;
  // Caps on what one peer can make the broker hold (docs/operating.md, "Limits").
  int64_t max_envelope_bytes = 16ll << 20;       // [broker] max_envelope_bytes: one small envelope
  int64_t max_batch_bytes = 64ll << 20;          // [broker] max_batch_bytes: frame bytes per turn
  int64_t receive_hwm = 16;                      // [broker] receive_hwm: frames queued per connection
  int64_t max_queued_per_receiver = 100000;      // [broker] max_queued_per_receiver
  int64_t max_queued_per_sender = 20000;         // [broker] max_queued_per_sender
  int64_t max_uploads = 256;                     // [broker] max_uploads: streamed uploads open
  int64_t max_uploads_per_org = 16;              // [broker] max_uploads_per_org
  int64_t max_upload_bytes_per_org = 0;          // [broker] ... their streams (0 = quota / 4)
  int64_t upload_idle_ms = 3600 * 1000;          // [broker] upload_idle_ms: no chunk -> dropped
  int64_t max_ttl_ms = kDay * 90;                // [broker] max_ttl_ms: expires at most this ahead
  int64_t retention_ms = kDay * 97;              // [broker] retention_ms: seen/reports kept
  // [http] listen ("" = off), port_file, token_file, tls_cert, tls_key, threads: /metrics and
  // /healthz.
  HttpOptions http{.listen = "",
                   .port_file = "",
                   .token_file = "",
                   .basic_auth_file = "",
                   .tls_cert = "",
                   .tls_key = "",
                   .threads = 2,
                   .max_body_bytes = 64 * 1024,
                   .streams_body = nullptr,
                   .max_streamed_body_bytes = 0,
                   .allowed_hosts = {},
                   .name = "broker-http"};
  std::string log_level = "info";                // [log] level
  std::string log_file;                          // [log] file

  static Result<Config> Load(const std::string& path);
  // ZMQ_MAXMSGSIZE of the broker's socket: the larger of a small envelope and a chunk record
  // (a chunk's plaintext is at most min(kMaxChunkSize, max_payload_bytes)), plus framing.
  int64_t MaxFrameBytes() const;
};

// `--check-config`: what Load cannot see. The CURVE key file is private and well-formed, the
// store can be opened or created, the endpoint and log files can be written. Binds nothing,
// connects to nothing and creates nothing. The report starts "config OK: ".
Result<std::string> CheckConfig(const Config& config, const std::string& config_path);

}  // namespace bud::broker
