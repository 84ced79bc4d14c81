// CURVE key files and the ZAP handler (RFC 27). See curve.h.
#include "common/wire/curve.h"

#include <fmt/format.h>

#include <cstdio>

#include "common/config.h"
#include "common/fs.h"
#include "common/log.h"

namespace bud::wire {

bool IsZ85Key(const std::string& key) {
  static constexpr std::string_view kZ85 =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  return key.size() == 40 && key.find_first_not_of(kZ85) == std::string::npos;
}

Result<CurveKeyPair> WriteNewCurveKeyFile(const std::string& path) {
  if (Exists(path)) {
    return Status(Code::kAlreadyExists,
                  fmt::format("'{}' exists; a key file is never overwritten", path));
  }
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return Status(Code::kUnsupported, "this libzmq has no CURVE support");
  }
  CurveKeyPair kp{pub, sec};
  // O_EXCL|O_NOFOLLOW: never overwrites, never writes through a link planted there.
  BUD_RETURN_IF_ERROR(WriteNewFile(
      path,
      fmt::format("# CURVE key pair (ZeroMQ, Z85). Keep secret; give only public_key away.\n"
                  "public_key = \"{}\"\nsecret_key = \"{}\"\n",
                  kp.public_key, kp.secret_key),
      0600));
  return kp;
}

int KeygenCommand(const std::string& path, const std::string& tool) {
  auto kp = WriteNewCurveKeyFile(path);
  if (!kp.ok()) {
    std::fprintf(stderr, "%s keygen: %s\n", tool.c_str(), kp.status().ToString().c_str());
    return 1;
  }
  std::printf("wrote %s (mode 0600)\npublic key: %s\n", path.c_str(), kp->public_key.c_str());
  return 0;
}

Result<CurveKeyPair> LoadCurveKeyFile(const std::string& path) {
  BUD_RETURN_IF_ERROR(CheckPrivateFileMode(path, "CURVE key file"));
  BUD_ASSIGN_OR_RETURN(ConfigFile f, ConfigFile::Load(path));
  CurveKeyPair kp;
  BUD_ASSIGN_OR_RETURN(kp.public_key, f.String("public_key"));
  BUD_ASSIGN_OR_RETURN(kp.secret_key, f.String("secret_key"));
  if (!IsZ85Key(kp.public_key) || !IsZ85Key(kp.secret_key)) {
    return Status(Code::kBadKey, fmt::format("CURVE key file '{}': keys must be 40 Z85 characters",
                                             path));
  }
  return kp;
}

void MakeCurveServer(zmq::socket_t& socket, const CurveKeyPair& keys) {
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, keys.secret_key);
  socket.set(zmq::sockopt::zap_domain, kZapDomain);
  // ZMQ_ZAP_ENFORCE_DOMAIN (93) is a draft option in libzmq 4.3; Debian builds it in. Without it
  // ZAP still decides every CURVE connection, because the handler is bound before the server.
  int one = 1;
  if (zmq_setsockopt(socket.handle(), 93 /* ZMQ_ZAP_ENFORCE_DOMAIN */, &one, sizeof one) != 0) {
    Logger("zap")->warn("ZMQ_ZAP_ENFORCE_DOMAIN unavailable in this libzmq: {}",
                        zmq_strerror(zmq_errno()));
  }
  socket.set(zmq::sockopt::handshake_ivl, kHandshakeTimeoutMs);
}

void MakeCurveClient(zmq::socket_t& socket, const CurveKeyPair& keys,
                     const std::string& server_key) {
  socket.set(zmq::sockopt::curve_serverkey, server_key);
  socket.set(zmq::sockopt::curve_publickey, keys.public_key);
  socket.set(zmq::sockopt::curve_secretkey, keys.secret_key);
  socket.set(zmq::sockopt::handshake_ivl, kHandshakeTimeoutMs);
}

std::string UserIdOf(const zmq::message_t& frame) {
  const char* v = zmq_msg_gets(const_cast<zmq_msg_t*>(frame.handle()), "User-Id");
  return v ? std::string(v) : std::string();
}

ZapHandler::ZapHandler(zmq::context_t& ctx, Authorizer authorizer, std::string server_name)
    : sock_(ctx, zmq::socket_type::rep),
      authorizer_(std::move(authorizer)),
      server_name_(std::move(server_name)) {
  sock_.set(zmq::sockopt::linger, 0);
  sock_.bind("inproc://zeromq.zap.01");
}

void ZapHandler::HandlePending() {
  auto log = Logger("zap");
  for (int n = 0; n < 1000; ++n) {
    std::vector<zmq::message_t> req;
    zmq::message_t m;
    if (!sock_.recv(m, zmq::recv_flags::dontwait)) return;
    bool more = m.more();
    req.push_back(std::move(m));
    while (more && req.size() < 16) {
      zmq::message_t part;
      (void)sock_.recv(part, zmq::recv_flags::none);
      more = part.more();
      req.push_back(std::move(part));
    }
    std::string version = req.size() > 0 ? req[0].to_string() : "";
    std::string request_id = req.size() > 1 ? req[1].to_string() : "";
    std::string code = "400", text = "refused", user;
    if (req.size() >= 7 && version == "1.0" && req[2].to_string() == kZapDomain &&
        req[5].to_string() == "CURVE" && req[6].size() == 32) {
      char z85[41];
      zmq_z85_encode(z85, static_cast<const uint8_t*>(req[6].data()), 32);
      std::string address = req[3].to_string();
      const Result<std::optional<std::string>> who = authorizer_(z85);
      if (!who.ok()) {
        log->warn("{}: refused a connection from {}: cannot look up CURVE key {}: {}", server_name_,
                  address, z85, who.status().ToString());
      } else if (*who) {
        code = "200";
        text = "OK";
        user = **who;
        log->debug("{}: admitted {} from {}", server_name_, user, address);
      } else {
        log->warn("{}: refused a connection from {}: CURVE key {} is not registered",
                  server_name_, address, z85);
      }
    } else {
      log->warn("{}: refused a connection without a valid CURVE handshake", server_name_);
    }
    std::array<zmq::const_buffer, 6> reply = {
        zmq::str_buffer("1.0"), zmq::buffer(request_id), zmq::buffer(code),
        zmq::buffer(text),      zmq::buffer(user),       zmq::str_buffer("")};
    for (size_t i = 0; i < reply.size(); ++i) {
      sock_.send(reply[i], i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
}

}  // namespace bud::wire
