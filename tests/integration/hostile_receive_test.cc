// Poison messages at the receiving integration point (issue: a hostile member knocks no one
// over, point 1). A registered agency (A, driven by this test with its real keys: the signing
// key, B's encryption certificate and A's CURVE key) seals a message whose metadata nests
// 100,000 '[' and submits it through the real broker. Before the fix the receiving point B
// overflowed its stack copying and printing that JSON (inbox.cc; sbd.cc on every peek in API
// delivery mode), died, and died again on every redelivery. Now B refuses it as FEIL with a
// reason (told to A), keeps running, and the message A sends after it arrives.
//
// Every wait has a deadline (zmq polls with timeouts, the harness's WaitUntil).
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <httplib.h>
#include <map>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/crypto/envelope.h"
#include "common/crypto/openssl.h"
#include "common/uuid.h"
#include "common/wire/curve.h"
#include "common/wire/zmq.h"
#include "proto/broker.pb.h"
#include "proto/envelope.pb.h"
#include "tests/integration/harness.h"

namespace bud::test {
namespace {

using SteadyClock = std::chrono::steady_clock;

template <typename T>
T Must(Result<T> r, const std::string& what) {
  if (!r.ok()) throw HarnessError(what + ": " + r.status().ToString());
  return std::move(r).value();
}

std::string Wire(const std::string& org) { return "0192:" + org; }

zmq::context_t& Context() {
  static zmq::context_t ctx(1);
  return ctx;
}

// An integration point driven by hand over CURVE with an agency's real key: Hello, Submit,
// heartbeats while it waits, StatusNotices collected and acknowledged. Owns its socket.
class Sender {
 public:
  Sender(Exchange& ex, const wire::CurveKeyPair& keys)
      : ex_(ex), sock_(Context(), zmq::socket_type::dealer) {
    sock_.set(zmq::sockopt::linger, 0);
    wire::MakeCurveClient(sock_, keys, ex.broker_public_key());
    sock_.connect(ex.broker_endpoint());
  }

  void Join(const std::string& org) {
    wire::ClientMessage m;
    m.set_protocol_version(wire::kProtocolVersion);
    m.mutable_hello()->set_orgnr(Wire(org));
    m.mutable_hello()->set_credit(8);
    Send(m);
    if (!Pump(kDefaultWait, [&] { return welcomed_; })) {
      throw HarnessError("no Welcome for " + org + "\n" + ex_.Diagnostics());
    }
  }

  wire::SubmitReply Submit(const std::string& envelope) {
    const size_t before = replies_.size();
    wire::ClientMessage m;
    m.set_protocol_version(wire::kProtocolVersion);
    m.mutable_submit()->set_envelope(envelope);
    Send(m);
    if (!Pump(kDefaultWait, [&] { return replies_.size() > before; })) {
      throw HarnessError("no answer to a Submit\n" + ex_.Diagnostics());
    }
    return replies_[before];
  }

  // Waits for the notice about `message_id` with `status`.
  wire::StatusNotice WaitForNotice(const std::string& message_id, wire::MessageStatus status,
                                   Millis timeout = kDefaultWait) {
    const std::string key = message_id + "/" + std::to_string(status);
    if (!Pump(timeout, [&] { return notices_.contains(key); })) {
      throw HarnessError("no StatusNotice " + std::to_string(status) + " for message " +
                         message_id + "\n" + ex_.Diagnostics());
    }
    return notices_.at(key);
  }

 private:
  void Send(const wire::ClientMessage& m) {
    const std::string bytes = m.SerializeAsString();
    if (!sock_.send(zmq::buffer(bytes), zmq::send_flags::dontwait)) {
      throw HarnessError("sender: send would block");
    }
  }

  bool Pump(Millis timeout, const std::function<bool()>& done) {
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
      if (done()) return true;
      const auto now = SteadyClock::now();
      if (now >= deadline) return false;
      if (welcomed_ && now - last_heartbeat_ >= Millis(300)) {
        wire::ClientMessage hb;
        hb.set_protocol_version(wire::kProtocolVersion);
        hb.mutable_heartbeat()->set_at_unix_ms(NowMs());
        Send(hb);
        last_heartbeat_ = now;
      }
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, Millis(100));
      zmq::message_t frame;
      if ((item.revents & ZMQ_POLLIN) == 0 || !sock_.recv(frame, zmq::recv_flags::dontwait)) {
        continue;
      }
      wire::BrokerMessage m;
      if (!m.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
        throw HarnessError("broker sent an unparseable frame");
      }
      switch (m.body_case()) {
        case wire::BrokerMessage::kWelcome:
          welcomed_ = true;
          last_heartbeat_ = SteadyClock::now();
          break;
        case wire::BrokerMessage::kSubmitReply: replies_.push_back(m.submit_reply()); break;
        case wire::BrokerMessage::kStatusNotice: {
          const auto& n = m.status_notice();
          notices_[n.message_id() + "/" + std::to_string(n.status())] = n;
          wire::ClientMessage ack;
          ack.set_protocol_version(wire::kProtocolVersion);
          ack.mutable_status_ack()->set_notice_id(n.notice_id());
          Send(ack);
          break;
        }
        default: break;
      }
    }
  }

  Exchange& ex_;
  zmq::socket_t sock_;
  bool welcomed_ = false;
  SteadyClock::time_point last_heartbeat_{};
  std::vector<wire::SubmitReply> replies_;
  std::map<std::string, wire::StatusNotice> notices_;  // "id/status"
};

struct Keys {
  crypto::PKey signing_key;
  crypto::Cert signing_cert;
  crypto::Cert receiver_encryption_cert;
  wire::CurveKeyPair curve;
};

Keys LoadKeys(const Exchange& ex, const std::string& from, const std::string& to) {
  const std::string dir = ex.AgencyDir(from) + "/keys/";
  Keys k;
  k.signing_key = Must(crypto::LoadPrivateKeyFile(dir + "signing.key"), "signing key");
  k.signing_cert = Must(crypto::LoadCertFile(dir + "signing.pem"), "signing cert");
  k.receiver_encryption_cert =
      Must(crypto::LoadCertFile(ex.AgencyDir(to) + "/keys/encryption.pem"), "encryption cert");
  k.curve = Must(wire::LoadCurveKeyFile(ex.CurveKeyFile(from)), "CURVE key");
  return k;
}

// A message from A to B with the given metadata text, sealed and signed with A's real keys.
std::pair<std::string, std::string> Sealed(const Keys& k, const std::string& metadata_json,
                                           const std::string& title,
                                           const std::string& conversation_id = NewUuid(),
                                           const std::string& attachment = "brev.txt") {
  const std::string id = NewUuid();
  wire::Header h;
  h.set_message_id(id);
  h.set_conversation_id(conversation_id);
  h.set_sender(Wire(kAgencyA));
  h.set_receiver(Wire(kAgencyB));
  h.set_process(kProcess);
  h.set_document_type(kDocumentType);
  h.set_created_unix_ms(NowMs());
  h.set_expires_unix_ms(NowMs() + 3600 * 1000);
  wire::Payload p;
  p.set_message_id(id);
  p.set_sender(Wire(kAgencyA));
  p.set_receiver(Wire(kAgencyB));
  p.set_conversation_id(h.conversation_id());
  p.set_title(title);
  p.set_metadata_json(metadata_json);
  auto* a = p.add_attachments();
  a->set_name(attachment);
  a->set_media_type("text/plain");
  a->set_data("Hei\n");
  return {id, Must(crypto::Seal(h, p, {k.signing_key.get(), k.signing_cert.get()},
                                k.receiver_encryption_cert.get()),
                   "sealing " + id)};
}

// The poison: a message.json-like object whose one value nests 100,000 arrays.
std::string PoisonMetadata() {
  return "{\"receiver\":\"" + Wire(kAgencyB) + "\",\"x\":" + std::string(100000, '[') +
         std::string(100000, ']') + "}";
}

std::string LastDescription(const nlohmann::json& entry) {
  const auto& h = entry.value("history", nlohmann::json::array());
  return h.empty() ? "" : h.back().value("description", "");
}

// Submits the poison and then an honest message; both must be ACCEPTED by the broker.
std::pair<std::string, std::string> SubmitPoisonThenHonest(Exchange& ex, Sender& a,
                                                           const Keys& k) {
  auto [poison_id, poison] = Sealed(k, PoisonMetadata(), "Gift");
  auto [honest_id, honest] = Sealed(k, Exchange::Metadata(kAgencyB).dump(), "Ærlig brev");
  for (const auto* env : {&poison, &honest}) {
    const wire::SubmitReply r = a.Submit(*env);
    INFO("broker answered: " << r.DebugString());
    REQUIRE(r.code() == wire::ACCEPTED);
  }
  (void)ex;
  return {poison_id, honest_id};
}

// B recorded the poison as FEIL with the specific reason, and told A why.
void CheckRefused(Exchange& ex, Sender& a, const std::string& poison_id) {
  const wire::StatusNotice n = a.WaitForNotice(poison_id, wire::FEIL);
  INFO("A was told: " << n.reason());
  CHECK_THAT(n.reason(), Catch::Contains("metadata") && Catch::Contains("deep"));
  const nlohmann::json at_b = ex.WaitForStatus(kAgencyB, poison_id, "FEIL");
  CHECK(at_b.value("direction", "") == "INCOMING");
  CHECK_THAT(LastDescription(at_b), Catch::StartsWith("INVALID_ARGUMENT") &&
                                        Catch::Contains("nests arrays and objects more than"));
}

TEST_CASE("a poison message is FEIL at the receiver, which keeps running (folder delivery)",
          "[integration][hostile]") {
  ExchangeOptions options;
  options.start_ips = false;  // A is this test
  Exchange ex(options);
  ex.StartIp(kAgencyB);
  const Keys k = LoadKeys(ex, kAgencyA, kAgencyB);
  Sender a(ex, k.curve);
  a.Join(kAgencyA);

  auto [poison_id, honest_id] = SubmitPoisonThenHonest(ex, a, k);
  CheckRefused(ex, a, poison_id);
  const nlohmann::json mj = ex.WaitForInbox(kAgencyB, honest_id);
  CHECK(mj.value("title", "") == "Ærlig brev");
  a.WaitForNotice(honest_id, wire::MOTTATT);
  CHECK_FALSE(PathExists(ex.Inbox(kAgencyB) + "/" + poison_id));
  // Never died: the one process started by the test is still the one running.
  ex.CheckAlive();
  CHECK(ex.ip(kAgencyB).starts() == 1);
  CHECK(ex.ip(kAgencyB).Running());
}

TEST_CASE("a poison message is FEIL at the receiver, which keeps serving peek (API delivery)",
          "[integration][hostile]") {
  ExchangeOptions options;
  options.start_ips = false;
  options.http = true;
  options.agency_settings[kAgencyB] = {{"incoming.delivery", "\"api\""}};
  Exchange ex(options);
  ex.StartIp(kAgencyB);
  const Keys k = LoadKeys(ex, kAgencyA, kAgencyB);
  Sender a(ex, k.curve);
  a.Join(kAgencyA);

  auto [poison_id, honest_id] = SubmitPoisonThenHonest(ex, a, k);
  CheckRefused(ex, a, poison_id);
  a.WaitForNotice(honest_id, wire::MOTTATT);

  httplib::Client c(ex.HttpBase(kAgencyB));
  c.set_connection_timeout(5);
  c.set_read_timeout(20);
  auto peek = c.Get("/api/messages/in/peek");
  REQUIRE(peek);
  REQUIRE(peek->status == 200);
  const auto sbd = nlohmann::json::parse(peek->body);
  CHECK(sbd["standardBusinessDocumentHeader"]["documentIdentification"]["instanceIdentifier"] ==
        honest_id);
  auto again = c.Get("/api/messages/in/peek");  // the honest one is locked; nothing else waits
  REQUIRE(again);
  CHECK(again->status == 204);
  ex.CheckAlive();
  CHECK(ex.ip(kAgencyB).starts() == 1);
  CHECK(ex.ip(kAgencyB).Running());
}

TEST_CASE("a peer's control characters reach neither the receiver's terminal nor its log raw",
          "[integration][hostile]") {
  ExchangeOptions options;
  options.start_ips = false;
  Exchange ex(options);
  ex.StartIp(kAgencyB);
  const Keys k = LoadKeys(ex, kAgencyA, kAgencyB);
  Sender a(ex, k.curve);
  a.Join(kAgencyA);
  // An escape sequence that would retitle the terminal and clear it. In a cleartext header field
  // (the conversation id) the broker already refuses it; in an attachment name (encrypted, so
  // only the receiver sees it) it reaches the receiver, which refuses the message and shows the
  // name in its FEIL reason.
  const std::string evil = "\x1b]0;pwned\x07\x1b[2J";
  auto [header_id, in_header] = Sealed(k, Exchange::Metadata(kAgencyB).dump(), "Tittel", evil);
  const wire::SubmitReply header_reply = a.Submit(in_header);
  CHECK(header_reply.code() == wire::REJECTED);
  CHECK(header_reply.reason().find('\x1b') == std::string::npos);
  auto [stored_id, stored] = Sealed(k, Exchange::Metadata(kAgencyB).dump(), "Tittel", NewUuid());
  auto [refused_id, refused] = Sealed(k, Exchange::Metadata(kAgencyB).dump(), "Tittel",
                                      NewUuid(), evil + "x.txt");
  for (const auto* env : {&stored, &refused}) REQUIRE(a.Submit(*env).code() == wire::ACCEPTED);
  a.WaitForNotice(stored_id, wire::MOTTATT);
  const wire::StatusNotice n = a.WaitForNotice(refused_id, wire::FEIL);
  CHECK(n.reason().find('\x1b') == std::string::npos);

  const CommandResult table =
      RunCommand({BUD_IP_BIN, "status", "--config", ex.IpConfig(kAgencyB)}, Millis(20000));
  REQUIRE(table.exit_code == 0);
  INFO(table.out);
  CHECK(table.out.find(stored_id) != std::string::npos);
  CHECK(table.out.find('\x1b') == std::string::npos);
  CHECK(table.out.find('\x07') == std::string::npos);
  CHECK_THAT(table.out, Catch::Contains("\\x1b]0;pwned\\x07\\x1b[2J"));
  const std::string log = ReadFile(ex.ip(kAgencyB).log_path());
  CHECK(log.find('\x1b') == std::string::npos);
  CHECK(log.find('\x07') == std::string::npos);
}

TEST_CASE("plaintext and partial downloads left by a crash are swept when the receiver starts",
          "[integration][hostile]") {
  ExchangeOptions options;
  options.start_ips = false;
  Exchange ex(options);
  const std::string b = ex.AgencyDir(kAgencyB);
  ex.StartIp(kAgencyB);
  ex.ip(kAgencyB).Kill();
  // What a crash between writing and acknowledging leaves: a decrypted folder under inbox/.tmp,
  // and spool files of downloads that will never resume.
  const std::string tmp = ex.Inbox(kAgencyB) + "/.tmp/" + NewUuid();
  std::filesystem::create_directories(tmp);
  WriteFile(tmp + "/hemmelig.txt", "klartekst\n");
  std::filesystem::create_directories(b + "/spool");
  const std::string orphan = b + "/spool/in-" + NewUuid();  // no transfer recorded for it
  const std::string junk = b + "/spool/in-not-a-message";
  WriteFile(orphan, std::string(4096, 'c'));
  WriteFile(junk, "x");
  ex.StartIp(kAgencyB);
  CHECK_FALSE(PathExists(ex.Inbox(kAgencyB) + "/.tmp"));
  CHECK_FALSE(PathExists(orphan));
  CHECK_FALSE(PathExists(junk));
  // And it still receives.
  const Keys k = LoadKeys(ex, kAgencyA, kAgencyB);
  Sender a(ex, k.curve);
  a.Join(kAgencyA);
  auto [id, env] = Sealed(k, Exchange::Metadata(kAgencyB).dump(), "Etter krasj");
  REQUIRE(a.Submit(env).code() == wire::ACCEPTED);
  ex.WaitForInbox(kAgencyB, id);
}

}  // namespace
}  // namespace bud::test
