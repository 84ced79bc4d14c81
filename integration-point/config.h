// The integration point's configuration: one TOML file, validated at start. Defaults are here.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/http_server.h"
#include "common/orgnr.h"
#include "common/status.h"
#include "integration-point/message_state.h"
#include "integration-point/webhooks/webhook_options.h"

namespace bud::ip {

// [keys]: our keys and certificates, and what we trust.
struct KeysConfig {
  std::string signing_key;           // signing_key (PEM, not readable by others)
  std::string signing_cert;          // signing_cert
  std::string encryption_key;        // encryption_key
  std::string encryption_cert;       // encryption_cert
  std::string next_encryption_key;   // next_encryption_key: during a rotation (optional)
  std::string next_encryption_cert;  // next_encryption_cert
  std::string trust_anchor;          // trust_anchor: CA certificates (PEM)
  // crl_dir: a folder of the issuers' CRLs (docs/operating.md); "" = revocation not checked.
  // Reread when its files change, looked at every crl_reload_ms.
  std::string crl_dir;
  int64_t crl_reload_ms = 60000;
  std::string curve_key_file;        // curve_key_file: our CURVE key pair ("" = no CURVE)
};

// [registry]: where the address registry answers.
struct RegistryLinkConfig {
  // endpoints = [...] (or the one endpoint): registries on one store, tried in order when one
  // does not answer within timeout_ms.
  std::vector<std::string> endpoints;
  int64_t timeout_ms = 3000;  // timeout_ms: per endpoint
  int64_t cache_ms = 300000;  // cache_ms: a found entry is fresh this long
  // stale_ms: ... and still served this much longer while no registry answers (never after a
  // NOT_FOUND). 0: not at all.
  int64_t stale_ms = 3600000;
  std::string server_key;            // server_key: the registry's CURVE public key
};

// [broker]: the link to the broker.
struct BrokerLinkConfig {
  // endpoints = [...] (or the one endpoint): brokers on one store, one connection at a time,
  // moving to the next on the silence rule. Empty: the list of our own registry entry.
  std::vector<std::string> endpoints;
  int64_t failover_backoff_ms = 500;        // failover_backoff_ms: an endpoint's first pause
  int64_t failover_backoff_max_ms = 30000;  // failover_backoff_max_ms: its longest
  std::string server_key;            // server_key: the broker's CURVE public key
  int64_t credit = 32;               // credit: deliveries in flight to us
  int64_t heartbeat_ms = 2000;       // heartbeat_ms
  int64_t submit_timeout_ms = 10000;  // submit_timeout_ms: resubmit when unanswered
  int64_t max_in_flight = 256;       // max_in_flight: submits awaiting ACCEPTED
  // [next_move] message_channel (not in [broker]: eFormidling's difi.move.dpo.messageChannel):
  // this point's message channel, "" = none (docs/protocol.md, "Message channels"). One
  // organisation may run several points, each on its own channel with the same keys; the Hello
  // names it, and the point takes only the messages (and statuses) of its channel.
  std::string message_channel;
};

struct Config {
  std::string orgnr;                 // [agency] orgnr: 9 digits
  // [agency] on_behalf_of: other organisations ("0192:<orgnr>") and sub-units
  // ("0192:<orgnr>:<orgnr of the part>") this point may send for (SBD or message.json sender);
  // the envelope's sender is always orgnr (docs/security.md, "On behalf of").
  std::vector<std::string> on_behalf_of = {};
  std::string outbox;                // [paths] outbox
  std::string inbox;                 // [paths] inbox
  std::string store;                 // [paths] store: SQLite file
  KeysConfig keys;                   // [keys]
  RegistryLinkConfig registry;       // [registry]
  BrokerLinkConfig broker;           // [broker]
  int64_t rescan_ms = 1000;          // [outbox] rescan_ms: periodic rescan besides inotify
  int64_t max_attachments = 100;     // [outbox] max_attachments
  int64_t max_attachment_bytes = 100ll << 20;  // [outbox] max_attachment_bytes (each)
  int64_t default_ttl_ms = 24 * 3600 * 1000;   // [outbox] default_ttl_ms
  // [outbox] stream_threshold_bytes: a folder whose attachments together exceed it is sent as a
  // streamed envelope (docs/large-messages.md); [outbox] max_message_bytes caps those, and what
  // this integration point accepts streamed.
  int64_t stream_threshold_bytes = 8ll << 20;
  int64_t max_message_bytes = 5ll << 30;
  // [incoming] delivery: "folder" writes received messages to paths.inbox; "api" keeps them in
  // the store for the HTTP API's peek/pop/delete.
  std::string delivery = "folder";
  // [http]: the Next Move API, status page, /metrics and /healthz (docs/http-api.md): listen
  // ("" = no HTTP server), port_file, token_file, tls_cert, tls_key, threads, and
  // max_upload_bytes (one request's body, as http.max_body_bytes).
  HttpOptions http;
  int64_t peek_lock_ms = 300000;     // [http] peek_lock_ms: how long a peek locks a message
  // [webhooks]: pushes to the subscribers of /api/subscriptions (webhooks/webhook_options.h).
  webhooks::WebhookOptions webhooks;
  std::string log_level = "info";    // [log] level
  std::string log_file;              // [log] file

  Orgnr me() const { return *Orgnr::Parse(orgnr); }  // valid after Load
  DeliveryMode delivery_mode() const {  // `delivery` checked by Load
    return ParseDeliveryMode(delivery).value_or(DeliveryMode::kFolder);
  }
  static Result<Config> Load(const std::string& path);
};

// `--check-config`: what Load cannot see. The keys and certificates pass LoadIdentity
// (identity.h), the CURVE key file is private and well-formed, the store can be opened or
// created, the outbox and inbox can be used or created, the log file can be written. Connects to
// nothing and creates nothing. The report starts "config OK: ".
Result<std::string> CheckConfig(const Config& config, const std::string& config_path);

}  // namespace bud::ip
