// Writes the binary seed files of tests/fuzz/corpus/ (the text seeds, message.json and TOML, are
// kept by hand). Built with BUD_FUZZ only; run it when a wire format or the fixed identities
// change, and commit what it writes:
//
//   build-fuzz/bin/fuzz_make_seeds tests/fuzz/corpus
//
// Envelopes are sealed with the fixed identities of fuzz_identity.h, so fuzz_envelope can open
// them. CMS encryption is randomised, so the envelope seeds differ from run to run; everything
// else is the same bytes every time.
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>

#include "common/crypto/certs.h"
#include "common/crypto/envelope.h"
#include "common/crypto/stream.h"
#include "common/fs.h"
#include "common/wire/zmq.h"
#include "proto/broker.pb.h"
#include "proto/registry.pb.h"
#include "tests/fuzz/fuzz_identity.h"

namespace {

using namespace bud;

std::string g_root;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  std::string dir = g_root + "/" + target;
  std::filesystem::create_directories(dir);
  Status s = WriteFileSynced(dir + "/" + name, bytes, 0644);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::exit(1);
  }
  std::printf("%s/%s (%zu bytes)\n", target.c_str(), name.c_str(), bytes.size());
}

template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, r.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*r);
}

constexpr const char* kMessageId = "6f1c2a4e-8b3d-4f5a-9c7e-1d2b3a4c5e6f";
constexpr const char* kConversationId = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d";
constexpr int64_t kCreated = 1767225600000;  // 2026-01-01T00:00:00Z
constexpr int64_t kExpires = 2208988800000;  // 2040-01-01T00:00:00Z

wire::Header MakeHeader(const std::string& receiver) {
  const auto& id = fuzz::FixedIdentity();
  wire::Header h;
  h.set_message_id(kMessageId);
  h.set_conversation_id(kConversationId);
  h.set_sender(id.sender.org.wire());
  h.set_receiver(receiver);
  h.set_process("urn:no:difi:profile:arkivmelding:administrasjon:ver1.0");
  h.set_document_type("urn:no:difi:arkivmelding:xsd::arkivmelding");
  h.set_created_unix_ms(kCreated);
  h.set_expires_unix_ms(kExpires);
  return h;
}

wire::Payload MakePayload(const wire::Header& h) {
  wire::Payload p;
  p.set_message_id(h.message_id());
  p.set_sender(h.sender());
  p.set_receiver(h.receiver());
  p.set_conversation_id(h.conversation_id());
  p.set_title("Vedtak i sak 2026/42");
  p.set_metadata_json(
      R"({"receiver":"0192:910075918","process":"urn:no:difi:profile:arkivmelding:administrasjon:ver1.0","documentType":"urn:no:difi:arkivmelding:xsd::arkivmelding","title":"Vedtak i sak 2026/42"})");
  auto* a = p.add_attachments();
  a->set_name("vedtak.pdf");
  a->set_media_type("application/pdf");
  a->set_data("%PDF-1.4\n%fuzz seed\n");
  a = p.add_attachments();
  a->set_name("Vedlegg \xc3\xa6\xc3\xb8\xc3\xa5.txt");  // "Vedlegg æøå.txt"
  a->set_media_type("text/plain");
  a->set_data("hei\n");
  return p;
}

// Sealed by the sender; `receiver` is the header's receiver, `to` the certificate encrypted to.
std::string Seal(const std::string& receiver, X509* to) {
  const auto& id = fuzz::FixedIdentity();
  wire::Header h = MakeHeader(receiver);
  return Must(crypto::Seal(h, MakePayload(h),
                           {id.sender.signing_key.get(), id.sender.signing_cert.get()}, to),
              "seal");
}

// A streamed envelope from the sender to the receiver whose plaintext is `plaintext`, as a
// fuzz_stream input: mode byte, be16 head length, head, chunk records.
std::string StreamSeed(uint8_t mode, const std::string& plaintext) {
  const auto& id = fuzz::FixedIdentity();
  const fuzz::SealedStream sealed =
      fuzz::SealStreamFromSender(MakeHeader(id.receiver.org.wire()), plaintext);
  std::string out(1, static_cast<char>(mode));
  out.push_back(static_cast<char>(sealed.head.size() >> 8));
  out.push_back(static_cast<char>(sealed.head.size() & 0xff));
  return out + sealed.head + sealed.records;
}

// The plaintext stream of a streamed envelope: be32 manifest length, manifest, bodies.
std::string StreamPlaintext(const wire::Payload& manifest, const std::string& bodies) {
  std::string m = manifest.SerializeAsString(), out;
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(m.size() >> shift));
  return out + m + bodies;
}

std::string Client(const std::function<void(wire::ClientMessage&)>& fill) {
  wire::ClientMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  fill(m);
  return m.SerializeAsString();
}

std::string Broker(const std::function<void(wire::BrokerMessage&)>& fill) {
  wire::BrokerMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  fill(m);
  return m.SerializeAsString();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir>   (normally tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  const auto& id = fuzz::FixedIdentity();
  X509* ours = id.receiver.encryption_cert.get();
  const std::string sealed = Seal(id.receiver.org.wire(), ours);
  {
    // The main seed must open, or fuzz_envelope would never get past the signature check.
    X509* certs[] = {id.sender.signing_cert.get()};
    const crypto::DecryptionKey keys[] = {{id.receiver.encryption_key.get(), ours}};
    Must(crypto::Open(sealed, id.receiver.org, id.sender.org, certs, keys), "open the sealed seed");
  }

  // --- fuzz_envelope ---------------------------------------------------------------------------
  Write("fuzz_envelope", "sealed", sealed);
  Write("fuzz_envelope", "sealed-other-receiver", Seal("0192:974760673", ours));
  // To the key that fuzz_envelope treats as our next one (a rotation).
  Write("fuzz_envelope", "sealed-to-next-key",
        Seal(id.receiver.org.wire(), id.sender.encryption_cert.get()));
  {
    wire::Header h = MakeHeader(id.receiver.org.wire());
    Write("fuzz_envelope", "cms-payload",
          Must(crypto::CmsEncrypt(MakePayload(h).SerializeAsString(), ours), "cms"));
    wire::Envelope env;
    env.ParseFromString(sealed);
    env.set_payload(env.payload() + "x");  // digest no longer matches
    Write("fuzz_envelope", "sealed-payload-appended", env.SerializeAsString());
  }

  // --- fuzz_stream -----------------------------------------------------------------------------
  {
    // A manifest with the attachments of MakePayload as sizes, and a body long enough for three
    // 4 KiB chunks.
    wire::Header h = MakeHeader(id.receiver.org.wire());
    wire::Payload manifest = MakePayload(h);
    std::string bodies;
    for (auto& a : *manifest.mutable_attachments()) {
      std::string data = a.data();
      if (bodies.empty()) data += std::string(9000, 'x');
      a.clear_data();
      a.set_size(data.size());
      bodies += data;
    }
    const std::string plain = StreamPlaintext(manifest, bodies);
    Write("fuzz_stream", "stream", StreamSeed(0, plain));
    Write("fuzz_stream", "stream-resigned", StreamSeed(1, plain));
    Write("fuzz_stream", "plaintext", std::string(1, '\2') + plain);
    wire::Payload bad = manifest;
    bad.mutable_attachments(0)->set_name("../vedtak.pdf");
    Write("fuzz_stream", "plaintext-bad-name", std::string(1, '\2') + StreamPlaintext(bad, bodies));
    bad = manifest;
    bad.mutable_attachments(1)->set_size(bad.attachments(1).size() + 1);
    Write("fuzz_stream", "plaintext-bad-size", std::string(1, '\2') + StreamPlaintext(bad, bodies));
    // The stream seed must open, or fuzz_stream would never get past the tags.
    X509* certs[] = {id.sender.signing_cert.get()};
    const crypto::DecryptionKey keys[] = {{id.receiver.encryption_key.get(), ours}};
    const std::string seed = StreamSeed(0, plain);
    const size_t head_len = (static_cast<uint8_t>(seed[1]) << 8) | static_cast<uint8_t>(seed[2]);
    auto verifier = Must(
        crypto::ChunkVerifier::Create(seed.substr(3, head_len), {.me = id.receiver.org,
                                                                 .sender = id.sender.org,
                                                                 .sender_certs = certs,
                                                                 .my_keys = keys,
                                                                 .trust = fuzz::FixedTrustStore(),
                                                                 .at_unix_s = std::nullopt}),
        "verify the stream seed's head");
    const std::string records = seed.substr(3 + head_len);
    for (uint64_t i = 0, pos = 0; i < verifier.layout().chunk_count; ++i) {
      const uint64_t n = verifier.layout().RecordSize(i);
      Status st = verifier.Append(i, records.substr(pos, n));
      if (!st.ok()) {
        std::fprintf(stderr, "stream seed chunk %llu: %s\n", static_cast<unsigned long long>(i),
                     st.ToString().c_str());
        return 1;
      }
      pos += n;
    }
    if (!verifier.Finish().ok()) {
      std::fprintf(stderr, "stream seed: digest does not match\n");
      return 1;
    }
  }

  // --- fuzz_broker_frame -----------------------------------------------------------------------
  const std::string f = "fuzz_broker_frame";
  Write(f, "client-hello", Client([&](auto& m) {
          m.mutable_hello()->set_orgnr(id.sender.org.wire());
          m.mutable_hello()->set_credit(32);
        }));
  Write(f, "client-submit", Client([&](auto& m) { m.mutable_submit()->set_envelope(sealed); }));
  Write(f, "client-report", Client([&](auto& m) {
          auto* r = m.mutable_report();
          r->set_message_id(kMessageId);
          r->set_status(wire::MOTTATT);
          r->set_at_unix_ms(kCreated);
        }));
  Write(f, "client-report-unknown-status", Client([&](auto& m) {
          auto* r = m.mutable_report();
          r->set_message_id(kMessageId);
          r->set_status(static_cast<wire::MessageStatus>(42));
          r->set_reason("status from a newer peer");
        }));
  Write(f, "client-status-ack", Client([](auto& m) { m.mutable_status_ack()->set_notice_id(7); }));
  Write(f, "client-heartbeat",
        Client([](auto& m) { m.mutable_heartbeat()->set_at_unix_ms(kCreated); }));
  Write(f, "broker-welcome", Broker([&](auto& m) {
          m.mutable_welcome()->set_orgnr(id.receiver.org.wire());
          m.mutable_welcome()->set_heartbeat_ms(2000);
        }));
  Write(f, "broker-deliver", Broker([&](auto& m) {
          m.mutable_deliver()->set_envelope(sealed);
          m.mutable_deliver()->set_attempt(1);
        }));
  Write(f, "broker-status-notice", Broker([&](auto& m) {
          auto* n = m.mutable_status_notice();
          n->set_notice_id(7);
          n->set_message_id(kMessageId);
          n->set_status(wire::LEVERT);
          n->set_at_unix_ms(kCreated);
        }));
  Write(f, "broker-submit-reply", Broker([&](auto& m) {
          m.mutable_submit_reply()->set_message_id(kMessageId);
          m.mutable_submit_reply()->set_code(wire::ACCEPTED);
        }));
  Write(f, "broker-refused",
        Broker([](auto& m) { m.mutable_refused()->set_reason("no session: send Hello first"); }));

  // --- fuzz_registry_frame ---------------------------------------------------------------------
  const std::string r = "fuzz_registry_frame";
  {
    wire::RegistryRequest req;
    req.set_protocol_version(wire::kProtocolVersion);
    req.set_request_id(1);
    req.mutable_lookup()->set_orgnr(id.receiver.org.wire());
    Write(r, "request-lookup", req.SerializeAsString());
    wire::RegistryRequest by_key;
    by_key.set_protocol_version(wire::kProtocolVersion);
    by_key.set_request_id(2);
    by_key.mutable_lookup_by_key()->set_curve_public_key(
        "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    Write(r, "request-lookup-by-key", by_key.SerializeAsString());

    wire::RegistryReply reply;
    reply.set_protocol_version(wire::kProtocolVersion);
    reply.set_request_id(1);
    reply.set_code(wire::OK);
    auto* e = reply.mutable_entry();
    e->set_orgnr(id.receiver.org.digits());
    e->set_name("Mottakar kommune");
    e->set_signing_cert_pem(id.receiver.signing_cert_pem);
    e->set_encryption_cert_pem(id.receiver.encryption_cert_pem);
    e->set_curve_public_key("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    e->set_broker_endpoint("tcp://broker.example:7700");
    e->add_processes("urn:no:difi:profile:arkivmelding:administrasjon:ver1.0");
    e->add_document_types("urn:no:difi:arkivmelding:xsd::arkivmelding");
    e->set_updated_unix_ms(kCreated);
    Write(r, "reply-ok", reply.SerializeAsString());
    // The entry's certificates must pass the fixed trust store, or fuzz_registry_frame would
    // never get past the chain check.
    Must(crypto::TrustedCerts(fuzz::FixedTrustStore(), e->signing_cert_pem(), "",
                              crypto::KeyPurpose::kSigning, id.receiver.org),
         "trust the receiver's signing certificate");
    Must(crypto::TrustedCerts(fuzz::FixedTrustStore(), e->encryption_cert_pem(), "",
                              crypto::KeyPurpose::kEncryption, id.receiver.org),
         "trust the receiver's encryption certificate");

    // A rotation: the next signing certificate has the wrong usage (an encryption one), the
    // next encryption certificate is valid.
    e->set_next_signing_cert_pem(id.receiver.encryption_cert_pem);
    e->set_next_encryption_cert_pem(id.receiver.encryption_cert_pem);
    Write(r, "reply-ok-rotation", reply.SerializeAsString());
    e->clear_next_signing_cert_pem();
    e->clear_next_encryption_cert_pem();

    // The sender's certificates under the receiver's number.
    wire::RegistryReply other = reply;
    other.mutable_entry()->set_signing_cert_pem(id.sender.signing_cert_pem);
    other.mutable_entry()->set_encryption_cert_pem(id.sender.encryption_cert_pem);
    Write(r, "reply-ok-other-orgs-certs", other.SerializeAsString());

    const std::string& pem = id.receiver.signing_cert_pem;
    e->set_signing_cert_pem(pem.substr(0, pem.size() / 2));  // truncated
    e->set_encryption_cert_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    Write(r, "reply-ok-broken-pem", reply.SerializeAsString());

    wire::RegistryReply nf;
    nf.set_protocol_version(wire::kProtocolVersion);
    nf.set_request_id(2);
    nf.set_code(wire::NOT_FOUND);
    nf.set_error("organisation 974760673 is not registered");
    Write(r, "reply-not-found", nf.SerializeAsString());
  }

  // --- fuzz_payload ----------------------------------------------------------------------------
  const std::string p = "fuzz_payload";
  {
    wire::Payload ok = MakePayload(MakeHeader(id.receiver.org.wire()));
    Write(p, "payload", ok.SerializeAsString());
    wire::Payload dup = ok;
    dup.add_attachments()->set_name("vedtak.pdf");
    Write(p, "payload-duplicate-name", dup.SerializeAsString());
    const std::pair<const char*, const char*> kBad[] = {{"dotdot", "../../etc/passwd"},
                                                        {"hidden", ".hidden"},
                                                        {"reserved", "message.json"},
                                                        {"backslash", "a\\b"},
                                                        {"control", "tab\there"}};
    for (const auto& [label, bad] : kBad) {
      wire::Payload b = ok;
      b.add_attachments()->set_name(bad);
      Write(p, std::string("payload-bad-name-") + label, b.SerializeAsString());
    }
  }
  return 0;
}
