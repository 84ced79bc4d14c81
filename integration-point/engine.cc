// The integration point's engine: the loop and the parts it owns. See engine.h.
#include "integration-point/engine.h"

#include <fmt/ranges.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/crypto/certs.h"
#include "common/crypto/envelope.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/registry_client.h"
#include "common/runtime.h"
#include "common/wire/zmq.h"
#include "integration-point/engine/broker_link.h"
#include "integration-point/engine/broker_transport.h"
#include "integration-point/engine/clock.h"
#include "integration-point/engine/defer_gate.h"
#include "integration-point/engine/expiry_sweep.h"
#include "integration-point/engine/hand_over.h"
#include "integration-point/engine/outbox_intake.h"
#include "integration-point/engine/receipts.h"
#include "integration-point/engine/receiver.h"
#include "integration-point/engine/registry_lookup.h"
#include "integration-point/engine/report_queue.h"
#include "integration-point/engine/sender.h"
#include "integration-point/engine/spool_recovery.h"
#include "integration-point/engine/stream_receiver.h"
#include "integration-point/engine/turn.h"
#include "integration-point/identity.h"
#include "integration-point/inbox.h"

namespace bud::ip {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("ip"); }
const SystemClock kSystemClock;
}  // namespace

// The point's own keys, loaded at start, borrowed by the parts.
struct Engine::Keys {
  Identity id;
  std::vector<crypto::DecryptionKey> decryption;    // borrow id's keys
  std::unique_ptr<crypto::TrustedCertCache> certs;  // registry certificates, verified
  std::optional<wire::CurveKeyPair> curve;
};

// The parts, in the order they depend on each other (each only on those above it).
struct Engine::Parts {
  std::unique_ptr<RegistryClient> registry_client;
  std::unique_ptr<RegistryClientLookup> registry;
  std::unique_ptr<PointStore> store;
  std::unique_ptr<InboxBatch> inbox;
  std::unique_ptr<DealerTransport> transport;
  std::unique_ptr<BrokerLink> link;
  std::unique_ptr<Turn> turn;
  std::unique_ptr<ReportQueue> reports;
  std::unique_ptr<DeferGate> defer;
  std::unique_ptr<OutboxIntake> intake;
  std::unique_ptr<Sender> sender;
  std::unique_ptr<Receipts> receipts;
  std::unique_ptr<ExpirySweep> expiry;
  std::unique_ptr<Receiver> receiver;
  std::unique_ptr<StreamReceiver> streams;  // members go in reverse: dependants first
};

Engine::Engine(const Config& config, zmq::context_t& ctx, const Clock* clock)
    : config_(config),
      ctx_(ctx),
      clock_(clock ? *clock : kSystemClock),
      hand_over_(std::make_unique<HandOverQueue>([this] { Wake(); })),
      wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

Engine::~Engine() {
  parts_.reset();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Engine::Wake() {
  uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof one);
}

Status Engine::TakeIn(MessageRow row, int64_t timeout_ms) {
  return hand_over_->TakeIn(std::move(row), timeout_ms);
}

Status Engine::LoadKeys() {
  keys_ = std::make_unique<Keys>();
  BUD_ASSIGN_OR_RETURN(keys_->id, LoadIdentity(config_));
  Identity& id = keys_->id;
  keys_->certs = std::make_unique<crypto::TrustedCertCache>(*id.trust);
  keys_->decryption.push_back({id.encryption_key.get(), id.encryption_cert.get()});
  if (id.next_encryption_key) {
    keys_->decryption.push_back({id.next_encryption_key.get(), id.next_encryption_cert.get()});
  }
  for (X509* c : {id.signing_cert.get(), id.encryption_cert.get()}) {
    int days = crypto::DaysToExpiry(c);
    if (days < 30) Log()->warn("certificate '{}' expires in {} day(s)", crypto::SubjectOf(c), days);
  }
  for (const auto& w : id.warnings) Log()->warn("{}", w);
  if (config_.keys.crl_dir.empty()) {
    Log()->warn("no keys.crl_dir: certificate revocation is NOT checked");
  } else {
    Log()->info("revocation checked against {} CRL(s) in '{}'", id.trust->CrlCount(),
                config_.keys.crl_dir);
    for (const auto& p : id.trust->CrlProblems()) Log()->warn("keys.crl_dir: {}", p);
  }
  if (config_.keys.curve_key_file.empty()) {
    Log()->warn(
        "no keys.curve_key_file: talking to broker and registry WITHOUT CURVE "
        "(development only)");
  } else {
    BUD_ASSIGN_OR_RETURN(keys_->curve, wire::LoadCurveKeyFile(config_.keys.curve_key_file));
  }
  return Status::Ok();
}

Result<std::vector<std::string>> Engine::BrokerEndpoints(RegistryClient& registry) {
  if (!config_.broker.endpoints.empty()) return config_.broker.endpoints;  // the override
  auto own = registry.Lookup(config_.me());
  if (!own.ok()) {
    return own.status().Context(
        "no [broker] endpoints in the config, and our own registry entry (which would name "
        "them) cannot be read");
  }
  auto endpoints = BrokerEndpointsOf(*own);
  if (endpoints.empty()) {
    return Status(Code::kConfig,
                  fmt::format("no [broker] endpoints in the config, and our registry entry names "
                              "no broker (`bud-registry set-brokers --orgnr {}`)",
                              config_.me().digits()));
  }
  return endpoints;
}

Status Engine::BuildParts() {
  auto p = std::make_unique<Parts>();
  p->registry_client = std::make_unique<RegistryClient>(
      ctx_, RegistryClientOptions{.endpoints = config_.registry.endpoints,
                                  .timeout_ms = config_.registry.timeout_ms,
                                  .cache_ms = config_.registry.cache_ms,
                                  .stale_ms = config_.registry.stale_ms,
                                  .curve = keys_->curve,
                                  .server_key = config_.registry.server_key});
  p->registry = std::make_unique<RegistryClientLookup>(*p->registry_client, &metrics_);
  BUD_ASSIGN_OR_RETURN(broker_endpoints_, BrokerEndpoints(*p->registry_client));
  BUD_ASSIGN_OR_RETURN(p->store, PointStore::Open(config_.store));
  p->inbox = std::make_unique<InboxBatch>(config_.inbox);
  p->transport = std::make_unique<DealerTransport>(
      ctx_, DealerOptions{keys_->curve, config_.broker.server_key});
  const Orgnr me = config_.me();
  LinkOptions link_options;
  link_options.endpoints = broker_endpoints_;
  link_options.credit = static_cast<uint32_t>(config_.broker.credit);
  link_options.heartbeat_ms = config_.broker.heartbeat_ms;
  link_options.backoff_first_ms = config_.broker.failover_backoff_ms;
  link_options.backoff_max_ms = config_.broker.failover_backoff_max_ms;
  link_options.channel = config_.broker.message_channel;
  p->link = std::make_unique<BrokerLink>(*p->transport, clock_, me, link_options, metrics_);
  p->turn = std::make_unique<Turn>(*p->store->point, *p->inbox);
  p->reports = std::make_unique<ReportQueue>(p->store->incoming, *p->turn, *p->link, clock_,
                                             config_.broker.submit_timeout_ms);
  p->defer = std::make_unique<DeferGate>(*p->link, clock_, metrics_);
  // A message taken in from the outbox is for the sender (built below) to seal.
  p->intake =
      std::make_unique<OutboxIntake>(config_, me, p->store->outgoing, p->store->refusals, *p->turn,
                                     *p->registry,
                                     clock_, [parts = p.get()] { parts->sender->MarkDirty(); });
  const Identity& id = keys_->id;
  p->sender = std::make_unique<Sender>(Sender::Deps{config_,
                                                    p->store->outgoing,
                                                    *p->link,
                                                    *p->turn,
                                                    *p->registry,
                                                    *keys_->certs,
                                                    {id.signing_key.get(), id.signing_cert.get()},
                                                    clock_,
                                                    metrics_});
  p->receipts = std::make_unique<Receipts>(p->store->outgoing, clock_);
  p->expiry = std::make_unique<ExpirySweep>(p->store->outgoing, clock_);
  p->receiver = std::make_unique<Receiver>(Receiver::Deps{
      config_, me, p->store->incoming, *p->turn, *p->inbox, *p->reports, *p->defer, *p->registry,
      *keys_->certs, keys_->decryption, clock_, metrics_,
      [receipts = p->receipts.get()](const MessageRow& in, const wire::Payload& payload) {
        receipts->OnReceived(in, payload);
      }});
  p->streams =
      std::make_unique<StreamReceiver>(*p->receiver, *p->link, me, *id.trust, keys_->decryption);
  parts_ = std::move(p);
  return Status::Ok();
}

Status Engine::Start() {
  if (started_) return Status::Ok();
  BUD_RETURN_IF_ERROR(LoadKeys());
  BUD_RETURN_IF_ERROR(MakeDirs(config_.outbox));
  if (!config_.inbox.empty()) BUD_RETURN_IF_ERROR(MakeDirs(config_.inbox));
  BUD_RETURN_IF_ERROR(BuildParts());
  Parts& p = *parts_;
  RecoverSpool(config_, *p.store);
  SweepReceiveLeftovers(config_, *p.store, clock_.NowMs());
  p.intake->Watch();
  p.link->SetListener(BrokerLink::Listener{[&p] {  // a new socket
                                             p.sender->Reset();
                                             p.streams->Reset();
                                           },
                                           [&p] {  // Welcome
                                             p.sender->Reset();
                                             p.reports->Forget();
                                             p.streams->Reset();
                                             p.sender->MarkDirty();
                                             p.reports->SendPending(true);
                                           }});
  p.link->Start();
  started_ = true;
  return Status::Ok();
}

Status Engine::Run() {
  BUD_RETURN_IF_ERROR(Start());
  Log()->info("integration point {} running: outbox {}, {}, broker {}, registry {}",
              config_.me().wire(), config_.outbox,
              config_.delivery_mode() == DeliveryMode::kApi
                  ? std::string("incoming kept for the HTTP API")
                  : "inbox " + config_.inbox,
              fmt::join(broker_endpoints_, ", "), fmt::join(config_.registry.endpoints, ", "));
  while (!StopRequested()) RunTurn();
  Log()->info("integration point {} stopping", config_.me().wire());
  hand_over_->Stop();
  return Status::Ok();
}

void Engine::RunTurn() {
  Parts& p = *parts_;
  const int notify_fd = p.intake->notify_fd();
  zmq::pollitem_t items[] = {{p.transport->PollHandle(), 0, ZMQ_POLLIN, 0},
                             {nullptr, wake_fd_, ZMQ_POLLIN, 0},
                             {nullptr, notify_fd, ZMQ_POLLIN, 0}};
  const int n = notify_fd >= 0 ? 3 : 2;
  try {
    zmq::poll(items, n, std::chrono::milliseconds(p.intake->dirty() || p.sender->Due() ? 0 : 100));
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) Log()->error("poll: {}", e.what());
    return;
  }
  if (Status b = p.turn->Begin(); !b.ok()) {
    Log()->warn("store: cannot open the turn's transaction ({}); writing unbatched", b.ToString());
  }
  if (items[1].revents & ZMQ_POLLIN) {
    uint64_t count;
    (void)!::read(wake_fd_, &count, sizeof count);
    p.sender->MarkDirty();
    p.reports->SendPending(false);
  }
  if (hand_over_->StoreQueued(p.store->outgoing)) p.sender->MarkDirty();
  if (n == 3 && (items[2].revents & ZMQ_POLLIN)) p.intake->DrainNotify();
  for (int i = 0; i < 1000; ++i) {
    auto frame = p.transport->TryReceive();
    if (!frame) break;
    metrics_.broker_last_frame_ms.store(clock_.NowMs(), std::memory_order_relaxed);
    if (auto msg = p.link->OnFrame(*frame)) Dispatch(*msg);
  }
  p.sender->Pump();
  p.streams->Pump();
  if (p.intake->Due()) {
    p.intake->Scan();
    p.receiver->CheckInbox();
  }
  p.expiry->RunIfDue();
  if (p.sender->Due()) {
    p.sender->SealNew();
    FinishTurn();  // sealed envelopes durable before they are submitted
    p.sender->SubmitSealed();
  }
  FinishTurn();
  Tick();
  // What the turn made ready (submits, reports, acks) goes in as few frames as the broker takes.
  p.link->Flush();
}

void Engine::Dispatch(const wire::BrokerMessage& msg) {
  Parts& p = *parts_;
  switch (msg.body_case()) {
    case wire::BrokerMessage::kSubmitReply:
      p.sender->OnSubmitReply(msg.submit_reply());
      break;
    case wire::BrokerMessage::kDeliver:
      p.receiver->OnDeliver(msg.deliver());
      break;
    case wire::BrokerMessage::kStatusNotice:
      p.sender->OnStatusNotice(msg.status_notice());
      break;
    case wire::BrokerMessage::kReportReply:
      p.reports->OnReply(msg.report_reply());
      break;
    case wire::BrokerMessage::kStreamStart:
      p.sender->OnStreamStart(msg.stream_start());
      break;
    case wire::BrokerMessage::kChunkAck:
      p.sender->OnUploadAck(msg.chunk_ack());
      break;
    case wire::BrokerMessage::kDeliverStream:
      p.streams->OnDeliverStream(msg.deliver_stream());
      break;
    case wire::BrokerMessage::kChunk:
      p.streams->OnChunk(msg.chunk());
      break;
    default:
      Log()->warn("broker sent a message with no known body");
      break;
  }
}

void Engine::FinishTurn() {
  Parts& p = *parts_;
  Turn::Outcome out = p.turn->Finish();
  hand_over_->Answer(out.status.ok() ? out.status
                                     : out.status.Context("the store's commit failed"));
  if (out.status.ok()) return;
  Log()->error(
      "store: the turn's commit failed ({}); {} report(s), ack(s) and outbox "
      "removal(s) held back, the work is redone",
      out.status.ToString(), out.held_back);
  p.intake->MarkDirty();
  p.sender->MarkDirty();
}

void Engine::Tick() {
  Parts& p = *parts_;
  metrics_.registry_served_stale.store(p.registry_client->served_stale(),
                                       std::memory_order_relaxed);
  if (!p.link->Tick()) return;
  p.sender->ExpireInFlight();
  p.reports->Tick();
}

}  // namespace bud::ip
