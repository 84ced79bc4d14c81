// CURVE keys and the ZAP handler: who may talk to a server socket, and as whom.
//
// Every server socket (registry, broker) is a CURVE server with ZMQ_ZAP_ENFORCE_DOMAIN, so no
// connection is admitted without a ZAP decision. The handler asks an Authorizer which identity a
// client key belongs to ("0192:<orgnr>" for an agency, a name for a service key) and answers
// 200 with that identity as the ZAP User-Id, or 400. Servers read the User-Id of every frame and
// never trust identities a client claims.
//
// Operation: the ZapHandler's socket is owned and polled by the server's event-loop thread,
// so its Authorizer must be quick (the registry reads its own store). The broker, whose lookups
// go over the network, uses wire::CachedZapHandler (zap.h) instead.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "common/status.h"

namespace bud::wire {

inline constexpr const char* kZapDomain = "budstikke";
inline constexpr int kHandshakeTimeoutMs = 5000;

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

bool IsZ85Key(const std::string& key);
// Writes a new key pair as TOML (public_key, secret_key), mode 0600. Refuses to overwrite.
Result<CurveKeyPair> WriteNewCurveKeyFile(const std::string& path);
// The `keygen` verb of every binary: writes the file and prints the public key. Exit code.
int KeygenCommand(const std::string& path, const std::string& tool);
// Reads a key file; refuses one that group or others can read.
Result<CurveKeyPair> LoadCurveKeyFile(const std::string& path);

// Makes `socket` a CURVE server with ZAP domain enforcement and a handshake timeout.
void MakeCurveServer(zmq::socket_t& socket, const CurveKeyPair& keys);
// Makes `socket` a CURVE client of the server with public key `server_key`.
void MakeCurveClient(zmq::socket_t& socket, const CurveKeyPair& keys,
                     const std::string& server_key);

// The User-Id ZAP gave the connection a frame arrived on ("" when none).
std::string UserIdOf(const zmq::message_t& frame);

class ZapHandler {
 public:
  // Returns the identity for a Z85 client key, nullopt for a key it does not know, or an error
  // when it cannot tell now (a store that is down). Both refuse the connection; the log says
  // which, so that an outage is not reported as an unregistered key.
  using Authorizer = std::function<Result<std::optional<std::string>>(const std::string& z85_key)>;

  ZapHandler(zmq::context_t& ctx, Authorizer authorizer, std::string server_name);
  zmq::socket_t& socket() { return sock_; }
  // Answers every ZAP request waiting, without blocking.
  void HandlePending();

 private:
  zmq::socket_t sock_;
  Authorizer authorizer_;
  std::string server_name_;
};

}  // namespace bud::wire
