// See parts_rig.h.
#include "tests/ip/support/parts_rig.h"

#include <atomic>
#include <fstream>

#include "common/crypto/envelope.h"
#include "common/crypto/stream.h"
#include "common/fs.h"
#include "common/uuid.h"
#include "common/wire/zmq.h"

namespace bud::ip::rig {

namespace {
std::string NewEndpoint() {
  static std::atomic<int> n{0};
  return "inproc://parts-rig-" + std::to_string(n++);
}

wire::RegistryEntry EntryFor(const std::string& orgnr, const Keys& k) {
  wire::RegistryEntry e;
  e.set_orgnr(orgnr);
  e.set_name("Agency " + orgnr);
  e.set_signing_cert_pem(k.sign.cert_pem);
  e.set_encryption_cert_pem(k.enc.cert_pem);
  e.add_processes("urn:test:process");
  return e;
}

Keys IssueKeys(const test::TestCa& ca, const std::string& orgnr) {
  return Keys{ca.IssueSigning(test::KeyType::kEcP256, orgnr),
              ca.IssueEncryption(test::KeyType::kEcP256, orgnr)};
}
}  // namespace

Result<wire::RegistryEntry> TableRegistry::Lookup(const Orgnr& org) {
  if (unavailable) return Status(Code::kUnavailable, "the registry does not answer (test)");
  auto it = entries.find(org.digits());
  if (it == entries.end()) return Status(Code::kNotFound, "no such organisation " + org.wire());
  return it->second;
}

BrokerEnd::BrokerEnd(zmq::context_t& ctx, const std::string& endpoint)
    : router_(ctx, zmq::socket_type::router) {
  router_.set(zmq::sockopt::linger, 0);
  router_.bind(endpoint);
}

std::optional<wire::ClientMessage> BrokerEnd::Next(int timeout_ms) {
  const int64_t until = MonoMs() + timeout_ms;
  while (true) {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    const int64_t left = std::max<int64_t>(until - MonoMs(), 0);
    zmq::poll(&item, 1, std::chrono::milliseconds(left));
    if (!(item.revents & ZMQ_POLLIN)) return std::nullopt;
    zmq::message_t id, body;
    (void)router_.recv(id);
    (void)router_.recv(body);
    peer_ = id.to_string();
    wire::ClientMessage msg;
    if (!msg.ParseFromArray(body.data(), static_cast<int>(body.size()))) continue;
    if (msg.body_case() == wire::ClientMessage::kHeartbeat) {
      ++heartbeats;
      continue;
    }
    return msg;
  }
}

std::optional<wire::ClientMessage> BrokerEnd::NextOf(wire::ClientMessage::BodyCase body,
                                                     int timeout_ms) {
  const int64_t until = MonoMs() + timeout_ms;
  while (MonoMs() <= until) {
    auto m = Next(static_cast<int>(std::max<int64_t>(until - MonoMs(), 0)));
    if (!m) return std::nullopt;
    if (m->body_case() == body) return m;
  }
  return std::nullopt;
}

int BrokerEnd::Drain(int ms) {
  int n = 0;
  while (Next(ms)) ++n;
  return n;
}

void BrokerEnd::Send(const wire::BrokerMessage& msg) {
  wire::BrokerMessage m = msg;
  m.set_protocol_version(wire::kProtocolVersion);
  std::string bytes;
  m.SerializeToString(&bytes);
  router_.send(zmq::buffer(peer_), zmq::send_flags::sndmore);
  router_.send(zmq::buffer(bytes), zmq::send_flags::none);
}

Rig::Rig(const std::string& delivery)
    : me(IssueKeys(ca, kMe)),
      peer(IssueKeys(ca, kPeer)),
      third(IssueKeys(ca, kThird)),
      clock(NowMs(), 1'000'000) {
  config.orgnr = kMe;
  config.outbox = dir / "outbox";
  config.inbox = dir / "inbox";
  config.store = dir / "ip.db";
  config.delivery = delivery;
  config.broker.heartbeat_ms = 1000;
  config.broker.submit_timeout_ms = 5000;
  config.broker.max_in_flight = 4;
  (void)MakeDirs(config.outbox);
  (void)MakeDirs(config.inbox);
  ca.WriteCertFile(dir / "ca.pem");
  trust = std::make_unique<crypto::TrustStore>(crypto::TrustStore::Load(dir / "ca.pem").value());
  certs = std::make_unique<crypto::TrustedCertCache>(*trust);
  decryption.push_back({me.enc.key.get(), me.enc.cert.get()});
  registry.entries[kMe] = EntryFor(kMe, me);
  registry.entries[kPeer] = EntryFor(kPeer, peer);
  registry.entries[kThird] = EntryFor(kThird, third);

  endpoint = NewEndpoint();
  broker = std::make_unique<BrokerEnd>(ctx, endpoint);
  transport = std::make_unique<DealerTransport>(ctx, DealerOptions{std::nullopt, ""});
  store = PointStore::Open(config.store).value();
  inbox = std::make_unique<InboxBatch>(config.inbox);
  const Orgnr org = config.me();
  link = std::make_unique<BrokerLink>(
      *transport, clock, org, LinkOptions{{endpoint}, 8, config.broker.heartbeat_ms, 200, 5000},
      metrics);
  turn = std::make_unique<Turn>(*store->point, *inbox);
  reports =
      std::make_unique<ReportQueue>(store->incoming, *turn, *link, clock, config.broker.submit_timeout_ms);
  defer = std::make_unique<DeferGate>(*link, clock, metrics);
  sender = std::make_unique<Sender>(Sender::Deps{config,
                                                 store->outgoing,
                                                 *link,
                                                 *turn,
                                                 registry,
                                                 *certs,
                                                 {me.sign.key.get(), me.sign.cert.get()},
                                                 clock,
                                                 metrics});
  receiver = std::make_unique<Receiver>(Receiver::Deps{config, org, store->incoming, *turn, *inbox,
                                                       *reports, *defer, registry, *certs,
                                                       decryption, clock, metrics});
  streams = std::make_unique<StreamReceiver>(*receiver, *link, org, *trust, decryption);
  link->SetListener(BrokerLink::Listener{[this] {
                                           sender->Reset();
                                           streams->Reset();
                                         },
                                         [this] {
                                           sender->Reset();
                                           reports->Forget();
                                           streams->Reset();
                                           sender->MarkDirty();
                                           reports->SendPending(true);
                                         }});
}

Rig::~Rig() {
  streams.reset();
  receiver.reset();
  sender.reset();
  link.reset();
  transport.reset();
  broker.reset();
}

void Rig::Connect() {
  link->Start();
  link->Tick();  // Hello
  auto hello = broker->NextOf(wire::ClientMessage::kHello);
  if (!hello) throw std::runtime_error("the link sent no Hello");
}

void Rig::Welcome(uint32_t max_batch_items) {
  Connect();
  wire::BrokerMessage w;
  w.mutable_welcome()->set_orgnr(config.me().wire());
  w.mutable_welcome()->set_max_batch_items(max_batch_items);
  broker->Send(w);
  RunTurn();
  if (!link->ready()) throw std::runtime_error("the link is not ready after a Welcome");
}

void Rig::RunTurn(int wait_ms) {
  (void)turn->Begin();
  zmq::pollitem_t item{transport->PollHandle(), 0, ZMQ_POLLIN, 0};
  zmq::poll(&item, 1, std::chrono::milliseconds(wait_ms));
  while (auto frame = transport->TryReceive()) {
    auto msg = link->OnFrame(*frame);
    if (!msg) continue;
    switch (msg->body_case()) {
      case wire::BrokerMessage::kSubmitReply:
        sender->OnSubmitReply(msg->submit_reply());
        break;
      case wire::BrokerMessage::kDeliver:
        receiver->OnDeliver(msg->deliver());
        break;
      case wire::BrokerMessage::kStatusNotice:
        sender->OnStatusNotice(msg->status_notice());
        break;
      case wire::BrokerMessage::kReportReply:
        reports->OnReply(msg->report_reply());
        break;
      case wire::BrokerMessage::kStreamStart:
        sender->OnStreamStart(msg->stream_start());
        break;
      case wire::BrokerMessage::kChunkAck:
        sender->OnUploadAck(msg->chunk_ack());
        break;
      case wire::BrokerMessage::kDeliverStream:
        streams->OnDeliverStream(msg->deliver_stream());
        break;
      case wire::BrokerMessage::kChunk:
        streams->OnChunk(msg->chunk());
        break;
      default:
        break;
    }
  }
  sender->Pump();
  streams->Pump();
  (void)turn->Finish();
  link->Flush();
}

wire::Header Rig::Header() const {
  wire::Header h;
  h.set_message_id(NewUuid());
  h.set_conversation_id(NewUuid());
  h.set_sender(std::string("0192:") + kPeer);
  h.set_receiver(std::string("0192:") + kMe);
  h.set_process("urn:test:process");
  h.set_document_type("urn:test:doc");
  h.set_created_unix_ms(clock.NowMs());
  h.set_expires_unix_ms(clock.NowMs() + 3600'000);
  return h;
}

wire::Payload Rig::PayloadFor(const wire::Header& h) const {
  wire::Payload p;
  p.set_message_id(h.message_id());
  p.set_sender(h.sender());
  p.set_receiver(h.receiver());
  p.set_conversation_id(h.conversation_id());
  p.set_title("Vedtak");
  auto* a = p.add_attachments();
  a->set_name("vedtak.txt");
  a->set_media_type("text/plain");
  a->set_data("Innvilget.");
  return p;
}

std::string Rig::Small(const wire::Header& h, const test::Leaf* signer) const {
  const test::Leaf& s = signer ? *signer : peer.sign;
  auto env = crypto::Seal(h, PayloadFor(h), {s.key.get(), s.cert.get()}, me.enc.cert.get());
  if (!env.ok()) throw std::runtime_error("Seal: " + env.status().ToString());
  return *env;
}

Rig::Stream Rig::Streamed(const wire::Header& h, size_t bytes, const test::Leaf* signer) const {
  const test::Leaf& s = signer ? *signer : peer.sign;
  const std::string path = dir / ("src-" + h.message_id());
  std::ofstream(path) << std::string(bytes, 'x');
  wire::Payload manifest = PayloadFor(h);
  manifest.clear_attachments();
  std::vector<crypto::StreamSource> sources{{"stor.bin", "application/octet-stream", path}};
  Stream out;
  crypto::StreamOptions options;
  options.chunk_size = crypto::kMinChunkSize;
  auto head = crypto::SealStream(
      h, manifest, sources, {s.key.get(), s.cert.get()}, me.enc.cert.get(),
      [&out](uint64_t, std::string_view record) {
        out.records.emplace_back(record);
        return Status::Ok();
      },
      options);
  if (!head.ok()) throw std::runtime_error("SealStream: " + head.status().ToString());
  out.head = *head;
  return out;
}

std::optional<wire::ClientMessage> Rig::DeliverSmall(const std::string& envelope) {
  wire::BrokerMessage m;
  m.mutable_deliver()->set_envelope(envelope);
  m.mutable_deliver()->set_attempt(1);
  broker->Send(m);
  RunTurn();
  while (auto answer = broker->Next(500)) {
    if (answer->has_report() || answer->has_defer()) return answer;
  }
  return std::nullopt;
}

std::optional<wire::ClientMessage> Rig::DeliverStream(const Stream& s, int bad) {
  wire::BrokerMessage m;
  m.mutable_deliver_stream()->set_head(s.head);
  broker->Send(m);
  RunTurn();
  for (int rounds = 0; rounds < 1000; ++rounds) {
    auto answer = broker->Next(500);
    if (!answer) return std::nullopt;
    if (answer->has_report() || answer->has_defer()) return answer;
    if (!answer->has_stream_resume()) continue;
    // Send from the asked-for chunk to the end (or until the bad one).
    for (uint64_t i = answer->stream_resume().next_chunk(); i < s.records.size(); ++i) {
      wire::BrokerMessage c;
      c.mutable_chunk()->set_message_id(answer->stream_resume().message_id());
      c.mutable_chunk()->set_index(i);
      std::string record = s.records[i];
      if (static_cast<int>(i) == bad) record[record.size() / 2] ^= 0x01;
      c.mutable_chunk()->set_record(record);
      broker->Send(c);
      if (static_cast<int>(i) == bad) break;
    }
    RunTurn();
    clock.Advance(2500);  // a second request for the same chunk is not held back
  }
  return std::nullopt;
}

std::string CodeOf(const std::string& reason) { return reason.substr(0, reason.find(':')); }

}  // namespace bud::ip::rig
