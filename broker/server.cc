// Broker event loop. See server.h and docs/protocol.md.
#include "broker/server.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <optional>

#include "broker/store_factory.h"
#include "common/clock.h"
#include "common/crypto/envelope.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/message_channel.h"
#include "common/orgnr.h"
#include "common/runtime.h"
#include "common/uuid.h"
#include "common/wire/zmq.h"

namespace bud::broker {

namespace {
std::shared_ptr<spdlog::logger> Log() { return Logger("broker"); }
// Pause after a Defer: doubling from the first to the last value per round of Defers, or the
// receiver's own retry_after_ms when that is longer (itself capped).
constexpr int64_t kDeferFirstMs = 250;
constexpr int64_t kDeferMaxMs = 30000;
// Status notices a session holds sent and not acknowledged, at most (PumpNotices).
constexpr size_t kMaxUnackedNotices = 4096;
std::string Short(const std::string& rid) { return crypto::Hex(rid).substr(0, 10); }

// The answers to a batch's submits leave at most one a microsecond (the batch's hundreds of
// answers take a few hundred µs more). Sent in one burst, ZeroMQ's I/O thread wakes after the last
// and hands the submitter its whole window at once, which then submits its whole window at once:
// the loop's turn and the submitter work one after the other. Spaced, the first answers leave
// while the last are made, and the submitter's next submits overlap this turn (docs/benchmarks.md,
// thirteenth round: ingest +10 to 15 % on 2 cores). Not in a batch with reports: there the
// deliveries that follow the answers would wait for the spacing (fourteenth round: pass-through
// 33.0-34.5k vs 29.2-32.8k msgs/s without it).
void PaceAnswer() {
  const int64_t next = MonoUs() + 1;
  while (MonoUs() < next) {
  }
}

// "<host>/<pid>/<8 hex>": which machine and process holds a lease, for people; the random part
// makes it new at each start, so a restarted broker never passes for its former self.
std::string NewBrokerId() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) std::snprintf(host, sizeof(host), "?");
  return fmt::format("{}/{}/{}", host, ::getpid(), NewUuid().substr(0, 8));
}
}  // namespace

Server::Server(const Config& config, zmq::context_t& ctx) : config_(config), ctx_(ctx) {
  metrics_.broker_id = NewBrokerId();
}

Server::Server(const Config& config, zmq::context_t& ctx, std::unique_ptr<QueueStore> store)
    : config_(config), ctx_(ctx), store_(std::move(store)) {
  metrics_.broker_id = NewBrokerId();
}

Status Server::Run() {
  if (!store_) {
    BUD_ASSIGN_OR_RETURN(store_, OpenQueueStore(config_));
  }
  store_->SetQueueCaps({config_.max_queued_per_receiver, config_.max_queued_per_sender});
  const std::string spool_dir = SpoolDir(config_);
  StreamLimits limits;
  limits.max_payload = static_cast<uint64_t>(config_.max_payload_bytes);
  limits.window = static_cast<uint32_t>(config_.stream_window);
  limits.store_max_bytes = config_.store_max_bytes;
  limits.max_uploads = config_.max_uploads;
  limits.max_uploads_per_org = config_.max_uploads_per_org;
  limits.max_upload_bytes_per_org = config_.max_upload_bytes_per_org;
  limits.upload_idle_ms = config_.upload_idle_ms;
  limits.routing = {config_.default_ttl_ms, config_.max_ttl_ms};
  streams_ = std::make_unique<Streams>(*store_, spool_dir, limits);
  BUD_RETURN_IF_ERROR(streams_->Init());
  quota_ = config_.store_max_bytes;
  if (quota_ == 0 && config_.storage.sqlite()) {
    // Spool reservations count even without a configured cap (docs/operating.md, "Limits").
    BUD_ASSIGN_OR_RETURN(int64_t db_bytes, store_->BytesUsed());
    BUD_ASSIGN_OR_RETURN(quota_, AutoQuota(ParentDir(AbsolutePath(config_.store)),
                                           db_bytes + static_cast<int64_t>(streams_->spool_bytes()),
                                           kAutoQuotaReservePercent));
    streams_->set_store_max_bytes(quota_);
    Log()->info("store quota {} bytes (store_max_bytes = 0: what the store holds plus the free "
                "space, less {} % of the file system)", quota_, kAutoQuotaReservePercent);
  } else if (quota_ == 0) {
    Log()->warn("store_max_bytes = 0 on PostgreSQL: the broker sets no quota of its own; a full "
                "database server answers DISK_FULL (set store_max_bytes to cap the database and "
                "the spool files together)");
  }
  LimitDbToQuota();
  BUD_RETURN_IF_ERROR(wire::SeedRoutingIds());  // before the ROUTER draws its first id
  sock_ = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::router);
  wire::ConfigureSocket(*sock_, /*router=*/true);
  connections_ = std::make_unique<wire::ConnectionWatch>(ctx_, *sock_, "broker",
                                                         config_.hello_timeout_ms);
  // Frames no larger than a small envelope or a chunk; few waiting per connection: what one
  // peer can make the broker hold before it reads (docs/operating.md, "Limits").
  sock_->set(zmq::sockopt::maxmsgsize, config_.MaxFrameBytes());
  sock_->set(zmq::sockopt::rcvhwm, static_cast<int>(config_.receive_hwm));
  BUD_RETURN_IF_ERROR(SetUpCurve());
  try {
    sock_->bind(config_.listen);
  } catch (const zmq::error_t& e) {
    return Status(Code::kUnavailable, fmt::format("cannot bind '{}': {}", config_.listen, e.what()));
  }
  std::string endpoint = sock_->get(zmq::sockopt::last_endpoint);
  BUD_RETURN_IF_ERROR(PublishEndpoint(config_.endpoint_file, endpoint));
  auto queued = store_->QueuedCount();
  Log()->info("broker listening on {} as {} (store {}, {} message(s) queued)", endpoint,
              broker_id(), store_->Describe(), queued.ok() ? *queued : -1);

  leases_renewed_mono_ = MonoMs();
  heard_until_mono_ = MonoMs();
  int64_t last_renew = MonoMs();
  int64_t last_wake_poll = MonoMs();
  int64_t last_timer = MonoMs();
  int64_t last_sweep = 0;
  int64_t last_checkpoint = MonoMs();
  while (!StopRequested() && !stop_.load(std::memory_order_relaxed)) {
    metrics_.loop_alive_mono_ms.store(MonoMs(), std::memory_order_relaxed);
    if (static_cast<int64_t>(sessions_.size()) != metrics_.sessions.load() ||
        sessions_changed_) {
      metrics_.sessions.store(static_cast<int64_t>(sessions_.size()), std::memory_order_relaxed);
      std::vector<std::string> orgs;
      for (const auto& [org, session] : sessions_) orgs.push_back(org);
      metrics_.SetSessionOrgs(std::move(orgs));
      sessions_changed_ = false;
    }
    const int wake_fd = store_->WakeFd();
    zmq::pollitem_t items[] = {{sock_->handle(), 0, ZMQ_POLLIN, 0},
                               {connections_->socket().handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, wake_fd, ZMQ_POLLIN, 0}};
    try {
      // A mailbox left to pump (a pump stopped at its cap) does not wait for the next frame.
      zmq::poll(items, wake_fd >= 0 ? 3 : 2,
                std::chrono::milliseconds(dirty_orgs_.empty() ? 100 : 0));
      connections_->HandleEvents();
      if (wake_fd >= 0 && (items[2].revents & ZMQ_POLLIN) != 0) TakeWakeups();
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      return Status(Code::kInternal, fmt::format("poll: {}", e.what()));
    }
    int64_t batch_bytes = 0;  // what this turn holds: at most max_batch_bytes and one frame
    for (int64_t i = 0; i < config_.max_batch && batch_bytes < config_.max_batch_bytes; ++i) {
      std::optional<std::vector<zmq::message_t>> parts;
      try {
        parts = wire::RecvMultipart(*sock_);
      } catch (const zmq::error_t& e) {
        Log()->warn("receive failed: {}", e.what());
        break;
      }
      if (!parts) {
        heard_until_mono_ = MonoMs();
        break;
      }
      if (parts->size() != 2) {
        Log()->warn("dropped a message from a peer that is not routing id + one frame");
        continue;
      }
      std::string rid((*parts)[0].to_string());
      batch_bytes += static_cast<int64_t>((*parts)[1].size());
      // A Batch frame counts as the items it carries toward max_batch.
      i += std::max(HandleFrame(rid, (*parts)[1]), 1) - 1;
    }
    FlushStreams();
    FlushBatch();
    LimitDbToQuota();
    if (MonoMs() - last_renew >= config_.session_lease_ms / 3) {
      RenewLeases();
      last_renew = MonoMs();
    }
    if (store_->Shared() && MonoMs() - last_wake_poll >= config_.wake_poll_ms) {
      // A lost notification (or a listener reconnecting) only delays: look at every session.
      TakeWakeups();
      for (const auto& [org, session] : sessions_) dirty_orgs_.insert(org);
      last_wake_poll = MonoMs();
    }
    streams_->Pump([this](const std::string& rid, const wire::BrokerMessage& m) {
      if (!SessionByRid(rid)) return false;
      Send(rid, m);
      return SessionByRid(rid) != nullptr;
    });
    // Taken out first: a pump that stops at its cap names its mailbox again for the next turn.
    std::set<std::string> pumping;
    pumping.swap(dirty_orgs_);
    for (const auto& org : pumping) {
      if (Session* s = SessionByOrg(org)) {
        const std::string rid = s->rid;
        PumpDeliveries(*s);
        // A failed send in PumpDeliveries drops the session: *s may be gone.
        if (Session* still = SessionByRid(rid)) PumpNotices(*still);
      }
    }
    if (MonoMs() - last_timer >= 100) {
      CheckTimers();
      PublishIdIndex();
      last_timer = MonoMs();
    }
    if (MonoMs() - last_sweep >= config_.sweep_ms) {
      SweepExpired();
      last_sweep = MonoMs();
    }
    if (MonoMs() - last_checkpoint >= config_.checkpoint_ms) {
      Status c = store_->Maintain();
      if (!c.ok()) Log()->warn("store maintenance (WAL checkpoint): {}", c.ToString());
      last_checkpoint = MonoMs();
    }
    FlushLogs();  // this turn's lines, one write (LogFlush::kWhenAsked)
  }
  FlushBatch();
  // Another broker may take these organisations at once, without waiting for the leases to end.
  for (const auto& [org, session] : sessions_) {
    if (Status r = store_->ReleaseSession(LeaseOf(session)); !r.ok()) {
      Log()->warn("releasing the session lease of {}: {}", org, r.ToString());
    }
  }
  Log()->info("broker stopping ({})", broker_id());
  return Status::Ok();
}

void Server::RenewLeases() {
  auto held = store_->RenewSessions(broker_id(), config_.session_lease_ms);
  if (!held.ok() && sessions_.empty()) {
    leases_renewed_mono_ = MonoMs();  // nothing held that could be lost
    return;
  }
  if (!held.ok()) {
    const int64_t since = MonoMs() - leases_renewed_mono_;
    Log()->error("renewing the session leases of {} session(s): {} ({} ms since the last renewal)",
                 sessions_.size(), held.status().ToString(), since);
    if (since >= config_.session_lease_ms) {
      // Another broker may take them now: this one must not go on as if it held them.
      std::vector<std::string> rids;
      for (const auto& [org, session] : sessions_) rids.push_back(session.rid);
      for (const auto& rid : rids) {
        metrics_.sessions_lost.fetch_add(1, std::memory_order_relaxed);
        DropSession(rid, "its lease could not be renewed for session_lease_ms (store unreachable)");
      }
    }
    return;
  }
  leases_renewed_mono_ = MonoMs();
  std::map<std::string, int64_t> epochs(held->begin(), held->end());
  std::vector<std::string> lost;
  for (const auto& [org, session] : sessions_) {
    auto it = epochs.find(org);
    if (it == epochs.end() || it->second != session.epoch) lost.push_back(session.rid);
  }
  // A lease this broker holds without a session (its release failed): given up now, so that it
  // does not live on renewed.
  for (const auto& [org, epoch] : epochs) {
    auto s = sessions_.find(org);
    if (s != sessions_.end() && s->second.epoch == epoch) continue;
    if (Status r = store_->ReleaseSession({org, broker_id(), epoch}); !r.ok()) {
      Log()->warn("releasing the session lease of {}: {}", org, r.ToString());
    }
  }
  for (const auto& rid : lost) {
    LeaseLost(rid, Status(Code::kConflict, "the lease was taken over by another broker"));
  }
}

void Server::LeaseLost(const std::string& rid, const Status& why) {
  Session* s = SessionByRid(rid);
  if (s == nullptr) return;
  Log()->warn("session {} of {}: lease epoch {} lost ({}); the session is dropped here", Short(rid),
              s->key, s->epoch, why.message());
  metrics_.sessions_lost.fetch_add(1, std::memory_order_relaxed);
  s->epoch = 0;  // not released: it is another broker's now
  DropSession(rid, "its session lease went to another broker");
}

void Server::TakeWakeups() {
  auto orgs = store_->TakeWakeups();
  if (!orgs.ok()) {
    // Once a minute at most: the store's own errors say the rest.
    if (wake_warned_mono_ == 0 || MonoMs() - wake_warned_mono_ >= 60000) {
      Log()->warn("wake-ups from other brokers: {} (polling every {} ms meanwhile)",
                  orgs.status().ToString(), config_.wake_poll_ms);
      wake_warned_mono_ = MonoMs();
    }
    return;
  }
  for (auto& org : *orgs) {
    if (sessions_.contains(org)) {
      metrics_.wakeups.fetch_add(1, std::memory_order_relaxed);
      dirty_orgs_.insert(std::move(org));
    }
  }
}

Status Server::SetUpCurve() {
  if (config_.curve_key_file.empty()) {
    Log()->warn("no broker.curve_key_file: serving WITHOUT CURVE authentication (development "
                "only); organisations are taken from Hello");
    return Status::Ok();
  }
  BUD_ASSIGN_OR_RETURN(auto keys, wire::LoadCurveKeyFile(config_.curve_key_file));
  // The registry client lives in the ZAP handler's lookup thread. Its fresh cache time is 0 (the
  // handler's cache is the one that counts), but it keeps what it was told: when no registry
  // answers, a key admitted before is still admitted for key_cache_ms + stale_ms after the last
  // answer, so a registry outage does not block reconnections of known organisations.
  auto registry = std::make_shared<RegistryClient>(
      ctx_,
      RegistryClientOptions{.endpoints = config_.registry_endpoints,
                            .timeout_ms = config_.registry_timeout_ms,
                            .cache_ms = 0,
                            .stale_ms = config_.registry_key_cache_ms + config_.registry_stale_ms,
                            .curve = keys,
                            .server_key = config_.registry_server_key});
  wire::CachedZapHandler::Options zap_options;
  zap_options.positive_ttl_ms = config_.registry_key_cache_ms;
  zap_ = std::make_unique<wire::CachedZapHandler>(
      ctx_,
      [registry, stale_count = metrics_.registry_served_stale](const std::string& key) {
        using V = wire::CachedZapHandler::Verdict;
        bool stale = false;
        auto e = registry->LookupByKey(key, &stale);
        if (stale) stale_count->fetch_add(1, std::memory_order_relaxed);
        if (e.ok()) return V{V::kAdmit, "0192:" + e->orgnr(), ""};
        if (e.status().code() == Code::kNotFound) return V{V::kUnknown, "", ""};
        return V{V::kUnavailable, "", e.status().message()};
      },
      zap_options, "broker");
  BUD_RETURN_IF_ERROR(zap_->started());
  wire::MakeCurveServer(*sock_, keys);
  curve_ = true;
  Log()->info("CURVE on; server public key {}", keys.public_key);
  return Status::Ok();
}

Server::Session* Server::SessionByRid(const std::string& rid) {
  auto o = rid_org_.find(rid);
  if (o == rid_org_.end()) return nullptr;
  Session* s = SessionByOrg(o->second);
  return s != nullptr && s->rid == rid ? s : nullptr;
}

Server::Session* Server::SessionByOrg(const std::string& org) {
  auto it = sessions_.find(org);
  return it == sessions_.end() ? nullptr : &it->second;
}

void Server::Send(const std::string& rid, const wire::BrokerMessage& msg) {
  Status s = wire::SendProto(*sock_, msg, rid);
  if (!s.ok()) DropSession(rid, fmt::format("send failed: {}", s.message()));
}

void Server::Refuse(const std::string& rid, const std::string& reason) {
  Log()->warn("peer {} refused: {}", Short(rid), reason);
  wire::BrokerMessage m;
  m.set_protocol_version(wire::kProtocolVersion);
  m.mutable_refused()->set_reason(reason);
  (void)wire::SendProto(*sock_, m, rid);  // the peer may already be gone; nothing to keep
}

void Server::DropSession(const std::string& rid, const std::string& why) {
  auto o = rid_org_.find(rid);
  if (o == rid_org_.end()) return;
  auto it = sessions_.find(o->second);
  rid_org_.erase(o);
  if (it == sessions_.end() || it->second.rid != rid) return;
  Log()->info("session {} of {} closed: {} ({} unacknowledged deliveries will be redelivered)",
              Short(rid), it->second.org, why, it->second.inflight.size());
  std::vector<std::string> unacked;
  for (const auto& [id, f] : it->second.inflight) unacked.push_back(id);
  if (auto n = store_->AddAttempts(unacked); !n.ok()) {
    Log()->error("counting delivery attempts: {}", n.status().ToString());
  }
  if (it->second.epoch != 0) {
    if (Status r = store_->ReleaseSession(LeaseOf(it->second)); !r.ok()) {
      Log()->warn("releasing the session lease of {}: {} (it runs out by itself)", it->second.org,
                  r.ToString());
    }
  }
  // The connection stays open for a new Hello, but only for hello_timeout_ms.
  connections_->Expect(it->second.conn);
  streams_->DropRid(rid);
  sessions_.erase(it);
  sessions_changed_ = true;
}

void Server::RefuseChosenRid(const std::string& rid, int fd) {
  // Logged once per id (a bounded set): a peer cannot flood the log by repeating itself.
  if (refused_rids_.size() < 10000 && refused_rids_.insert(rid).second) {
    Log()->warn("peer {} refused: it chose its own routing id (only the broker's own ids are "
                "served); its connection is closed",
                Short(rid));
  }
  (void)connections_->Close(fd, "chose its own routing id");
}

int Server::HandleFrame(const std::string& rid, const zmq::message_t& frame) {
  if (!wire::IsAutoRoutingId(rid)) {
    RefuseChosenRid(rid, wire::SourceFd(frame));
    return 1;
  }
  wire::ClientMessage msg;
  Status parsed = wire::ParseProto(frame, msg, "ClientMessage");
  if (!parsed.ok()) {
    Refuse(rid, parsed.message());
    return 1;
  }
  if (msg.protocol_version() != wire::kProtocolVersion) {
    Refuse(rid, fmt::format("protocol version {} is not supported (this broker speaks {})",
                            msg.protocol_version(), wire::kProtocolVersion));
    return 1;
  }
  const std::string user_id = wire::UserIdOf(frame);
  if (msg.has_hello()) {
    OnHello(rid, wire::SourceFd(frame), msg.hello(), user_id);
    return 1;
  }
  // With CURVE the session is the authenticated organisation's; it must live on this connection.
  Session* s = SessionByRid(rid);
  if (s != nullptr && curve_ && s->org != user_id) s = nullptr;
  if (s == nullptr || s->rid != rid) {
    Refuse(rid, "no session: send Hello first");
    return 1;
  }
  s->last_seen_mono = MonoMs();
  if (msg.has_batch()) return OnBatch(*s, *msg.mutable_batch());
  switch (msg.body_case()) {
    case wire::ClientMessage::kSubmit: OnSubmit(*s, *msg.mutable_submit()); break;
    case wire::ClientMessage::kReport: OnReport(*s, msg.report()); break;
    case wire::ClientMessage::kStatusAck: OnStatusAck(*s, msg.status_ack()); break;
    case wire::ClientMessage::kDefer: OnDefer(*s, msg.defer()); break;
    case wire::ClientMessage::kHeartbeat: {
      wire::BrokerMessage hb;
      hb.set_protocol_version(wire::kProtocolVersion);
      hb.mutable_heartbeat()->set_at_unix_ms(NowMs());
      Send(rid, hb);
      break;
    }
    case wire::ClientMessage::kSubmitStream:
    case wire::ClientMessage::kChunk:
    case wire::ClientMessage::kChunkAck:
    case wire::ClientMessage::kStreamResume: OnStreamMessage(*s, msg); break;
    default: Refuse(rid, "message has no known body"); break;
  }
  return 1;
}

int Server::OnBatch(Session& s, wire::Batch& batch) {
  const int items = batch.submits_size() + batch.reports_size() + batch.status_acks_size();
  if (items > kMaxBatchItems) {
    // The whole frame, not a part of it: the client sent more than its Welcome allowed.
    const std::string rid = s.rid;
    Refuse(rid, fmt::format("a batch of {} items is more than this broker takes in one frame ({})",
                            items, kMaxBatchItems));
    return items;
  }
  // An answer that cannot be sent (the peer's pipe is full, or it is gone) drops the session:
  // then `s` is gone, and the rest of the frame with it.
  const std::string rid = s.rid;
  const auto alive = [&] { return SessionByRid(rid) == &s; };
  for (auto& submit : *batch.mutable_submits()) {
    if (!alive()) return items;
    OnSubmit(s, submit);
  }
  for (const auto& report : batch.reports()) {
    if (!alive()) return items;
    OnReport(s, report);
  }
  for (const auto& ack : batch.status_acks()) {
    if (!alive()) return items;
    OnStatusAck(s, ack);
  }
  return items;
}

void Server::OnHello(const std::string& rid, int fd, const wire::Hello& hello,
                     const std::string& user_id) {
  auto org = Orgnr::Parse(hello.orgnr());
  if (!org.ok()) {
    Refuse(rid, org.status().message());
    return;
  }
  const std::string org_wire = org->wire();
  if (curve_ && org_wire != user_id) {
    Log()->warn("peer {} authenticated as {} said Hello as {}: refused", Short(rid), user_id,
                org_wire);
    Refuse(rid, fmt::format("your CURVE key belongs to {}, not {}", user_id, org_wire));
    return;
  }
  // One session per mailbox (organisation, channel): several points of one organisation share
  // its CURVE key, each on its own channel.
  if (Status ch = CheckChannel(hello.channel(), "the Hello's channel"); !ch.ok()) {
    Log()->warn("peer {} ({}) refused: {}", Short(rid), org_wire, ch.message());
    Refuse(rid, ch.message());
    return;
  }
  const std::string who = MailboxKey(org_wire, hello.channel());
  // The lease first: without it there is no session (the peer says Hello again).
  auto lease = store_->TakeSession(who, broker_id(), config_.session_lease_ms);
  if (!lease.ok()) {
    Log()->error("session of {} not opened: cannot take its lease: {}", who,
                 lease.status().ToString());
    Refuse(rid, "no session: the broker cannot reach its store now; say Hello again later");
    return;
  }
  if (!lease->previous_holder.empty() && lease->previous_holder != broker_id()) {
    metrics_.session_takeovers.fetch_add(1, std::memory_order_relaxed);
    Log()->info("session of {} taken over from broker {} (lease epoch {})", who,
                lease->previous_holder, lease->epoch);
  }
  if (Session* old = SessionByOrg(who); old != nullptr) {
    old->epoch = 0;  // superseded by the new lease: nothing to release
    if (old->rid != rid) DropSession(old->rid, "replaced by a new connection");
  }
  // A connection carries one mailbox's session: a Hello for another one ends the session this
  // connection had.
  if (auto o = rid_org_.find(rid); o != rid_org_.end() && o->second != who) {
    DropSession(rid, "the connection said Hello for another mailbox");
  }
  Session& s = sessions_[who];
  sessions_changed_ = true;
  s = Session{};
  s.rid = rid;
  s.org = org_wire;
  s.channel = hello.channel();
  s.key = who;
  s.conn = connections_->Greeted(fd);
  s.credit = static_cast<uint32_t>(
      std::clamp<int64_t>(hello.credit() == 0 ? 1 : hello.credit(), 1, config_.max_credit));
  s.last_seen_mono = MonoMs();
  s.epoch = lease->epoch;
  rid_org_[rid] = who;
  Log()->info("session {} opened by {} (credit {}) with lease epoch {}", Short(rid), who, s.credit,
              s.epoch);
  wire::BrokerMessage w;
  w.set_protocol_version(wire::kProtocolVersion);
  w.mutable_welcome()->set_orgnr(org_wire);
  w.mutable_welcome()->set_channel(s.channel);
  w.mutable_welcome()->set_heartbeat_ms(static_cast<uint32_t>(config_.heartbeat_ms));
  w.mutable_welcome()->set_max_batch_items(kMaxBatchItems);
  Send(rid, w);
  dirty_orgs_.insert(who);
}

void Server::OnSubmit(Session& s, wire::Submit& submit) {
  metrics_.submits.fetch_add(1, std::memory_order_relaxed);
  auto reply = [&](const std::string& id, wire::SubmitCode code, const std::string& reason,
                   std::atomic<int64_t>& by_reason) {
    metrics_.rejected.fetch_add(1, std::memory_order_relaxed);
    by_reason.fetch_add(1, std::memory_order_relaxed);
    wire::BrokerMessage m;
    m.set_protocol_version(wire::kProtocolVersion);
    auto* r = m.mutable_submit_reply();
    r->set_message_id(id);
    r->set_code(code);
    r->set_reason(reason);
    Log()->warn("submit of message {} from {} rejected: {}", id.empty() ? "?" : id, s.key, reason);
    Send(s.rid, m);
  };
  auto env = crypto::ParseEnvelope(submit.envelope());
  if (!env.ok()) return reply("", wire::REJECTED, env.status().message(), metrics_.rejected_envelope);
  auto header = crypto::ParseHeaderUnverified(*env);
  if (!header.ok()) {
    return reply("", wire::REJECTED, header.status().message(), metrics_.rejected_envelope);
  }
  const auto& h = *header;
  const std::string id = IsUuid(h.message_id()) ? h.message_id() : std::string();
  if (submit.envelope().size() > static_cast<size_t>(config_.max_envelope_bytes)) {
    return reply(id, wire::REJECTED,
                 fmt::format("envelope has {} bytes, more than this broker takes in one piece "
                             "({}); send it streamed",
                             submit.envelope().size(), config_.max_envelope_bytes),
                 metrics_.rejected_too_large);
  }
  auto routing = CheckRouting(h, s.key, NowMs(), {config_.default_ttl_ms, config_.max_ttl_ms});
  if (!routing.ok()) {
    return reply(id, wire::REJECTED, routing.status().message(), metrics_.rejected_routing);
  }
  SubmitItem item;
  item.message_id = id;
  item.sender = s.org;
  item.receiver = routing->receiver;
  item.envelope = std::move(*submit.mutable_envelope());  // the frame's copy is not needed again
  item.expires_ms = routing->expires_ms;
  item.sender_channel = routing->sender_channel;
  item.receiver_channel = routing->receiver_channel;
  item.receiver_online = SessionByOrg(MailboxKey(item.receiver, item.receiver_channel)) != nullptr;
  batch_submits_.push_back(std::move(item));
  batch_submit_rids_.push_back(s.rid);
  batch_submit_us_.push_back(MonoUs());
}

void Server::OnReport(Session& s, const wire::Report& report) {
  ReportItem r;
  r.reporter = s.org;
  r.reporter_channel = s.channel;
  r.message_id = report.message_id();
  r.status = report.status();
  r.reason = report.reason().substr(0, 2000);
  r.at_ms = report.at_unix_ms();
  std::string refused;
  if (!IsUuid(r.message_id)) {
    r.message_id.clear();  // from the peer, unbounded: neither stored, logged nor echoed
    refused = "message id is not a UUID";
  } else if (r.status != wire::MOTTATT && r.status != wire::FEIL && r.status != wire::LEVERT &&
             r.status != wire::LEST) {
    refused = "a receiver can report MOTTATT, FEIL, LEVERT or LEST only";
  }
  if (!refused.empty()) {
    wire::BrokerMessage m;
    m.set_protocol_version(wire::kProtocolVersion);
    auto* rr = m.mutable_report_reply();
    rr->set_message_id(r.message_id);
    rr->set_status(r.status);
    rr->set_ok(false);
    rr->set_reason(refused);
    Send(s.rid, m);
    return;
  }
  batch_reports_.push_back(std::move(r));
  batch_report_rids_.push_back(s.rid);
  metrics_.reports.fetch_add(1, std::memory_order_relaxed);
}

// No answer goes back for a StatusAck, so it simply rides with the next group commit (a notice
// whose ack is lost in a crash is sent again, and senders take notices idempotently).
void Server::OnStatusAck(Session& s, const wire::StatusAck& ack) {
  // A session that held its most unacknowledged notices takes more again.
  if (s.notices_sent.erase(static_cast<int64_t>(ack.notice_id())) > 0 &&
      s.notices_sent.size() + 1 == kMaxUnackedNotices) {
    dirty_orgs_.insert(s.key);
  }
  batch_acks_.push_back({s.key, static_cast<int64_t>(ack.notice_id())});
}

void Server::OnDefer(Session& s, const wire::Defer& defer) {
  const int64_t now = MonoMs();
  if (now >= s.defer_until_mono) {  // a new round, not another answer of the same burst
    s.defer_backoff_ms =
        s.defer_backoff_ms == 0 ? kDeferFirstMs : std::min(2 * s.defer_backoff_ms, kDeferMaxMs);
  }
  const int64_t pause = std::max<int64_t>(
      s.defer_backoff_ms, std::min<int64_t>(defer.retry_after_ms(), kDeferMaxMs));
  s.defer_until_mono = std::max(s.defer_until_mono, now + pause);
  // Chunks of streamed deliveries stop too; the head goes again after the pause.
  streams_->DropRid(s.rid);
  auto it = s.inflight.find(defer.message_id());
  if (it == s.inflight.end()) {
    Log()->info("{} defers message {} that is not being delivered to it ({}); pausing {} ms",
                s.org, defer.message_id().substr(0, 64), defer.reason().substr(0, 500), pause);
    return;
  }
  // Taken back: no attempt counted; out of the in-flight set, it is claimed again after the pause.
  s.inflight.erase(it);
  Log()->warn("message {}: {} cannot take it now ({}); kept, no attempt counted, nothing more "
              "to {} for {} ms",
              defer.message_id().substr(0, 64), s.org, defer.reason().substr(0, 500), s.org,
              pause);
}

// The commit of this batch may or may not be durable: nothing is answered. A submitter that gets
// no answer submits again after its timeout (a stored message is then a duplicate, answered
// ACCEPTED; a lost one is stored then), a receiver reports again, and a notice whose ack was lost
// is sent again. Deliveries are pumped for every receiver of the batch, in case it was stored.
void Server::AbandonBatch(const Status& why) {
  Log()->error("commit of {} submit(s), {} report(s) and {} status ack(s) has an unknown outcome; "
               "answering nothing, the integration points will send them again: {}",
               batch_submits_.size(), batch_reports_.size(), batch_acks_.size(), why.ToString());
  metrics_.commits_unknown.fetch_add(1, std::memory_order_relaxed);
  for (const auto& item : batch_submits_) {
    dirty_orgs_.insert(MailboxKey(item.receiver, item.receiver_channel));
  }
  for (const auto& rep : batch_reports_) {
    dirty_orgs_.insert(MailboxKey(rep.reporter, rep.reporter_channel));
  }
  // Uploads handed over stay handed: their sender's new head hands them over again (or the sweep
  // settles them), as after a failed commit.
  finished_uploads_.clear();
  ClearBatch();
}

// Every submit of the batch gets RETRY_LATER (its commit failed: nothing was stored).
void Server::AnswerSubmitsRetryLater(const Status& why) {
  for (size_t i = 0; i < batch_submits_.size(); ++i) {
    wire::BrokerMessage m;
    m.set_protocol_version(wire::kProtocolVersion);
    auto* r = m.mutable_submit_reply();
    r->set_message_id(batch_submits_[i].message_id);
    metrics_.retry_later.fetch_add(1, std::memory_order_relaxed);
    r->set_code(wire::RETRY_LATER);
    r->set_reason(RetryLaterReason(why.code()));
    if (SessionByRid(batch_submit_rids_[i])) Send(batch_submit_rids_[i], m);
  }
}

void Server::ClearBatch() {
  batch_submits_.clear();
  batch_submit_rids_.clear();
  batch_submit_us_.clear();
  batch_reports_.clear();
  batch_report_rids_.clear();
  batch_acks_.clear();
}

void Server::FlushBatch() {
  if (batch_submits_.empty() && batch_reports_.empty() && batch_acks_.empty()) return;
  const int64_t commit_start_us = MonoUs();
  const CommitResult result = store_->CommitBatch(batch_submits_, batch_reports_, batch_acks_);
  const int64_t committed_us = MonoUs();
  metrics_.commits.fetch_add(1, std::memory_order_relaxed);
  metrics_.commit_seconds.Observe(static_cast<double>(committed_us - commit_start_us) / 1e6);
  if (result.outcome == CommitOutcome::kUnknown) {
    AbandonBatch(result.status);
    return;
  }
  const Status& committed = result.status;
  Status reports_committed = committed;
  if (!committed.ok()) {
    Log()->error("commit of {} submit(s), {} report(s) and {} status ack(s) failed, answering "
                 "retry later: {}",
                 batch_submits_.size(), batch_reports_.size(), batch_acks_.size(),
                 committed.ToString());
    // Reports and acks delete rows: on a full disk they are what frees space, so they must not
    // wait behind submits that do not fit.
    if (!batch_submits_.empty() && (!batch_reports_.empty() || !batch_acks_.empty())) {
      std::vector<SubmitItem> none;
      const CommitResult again = store_->CommitBatch(none, batch_reports_, batch_acks_);
      if (again.outcome == CommitOutcome::kUnknown) {
        // The submits are known not stored; the reports may or may not be.
        AnswerSubmitsRetryLater(committed);
        AbandonBatch(again.status);
        return;
      }
      reports_committed = again.status;
    }
    if (!reports_committed.ok() && !batch_acks_.empty()) {
      Log()->warn("{} status ack(s) not stored ({}); those notices are sent again",
                  batch_acks_.size(), reports_committed.ToString());
    }
  }
  if (committed.ok()) {
    // A completed upload refused by a queue cap keeps its row and spool: its sender submits the
    // head again later (or the sweep drops it).
    std::set<std::string> refused;
    for (const auto& item : batch_submits_) {
      if (!item.refused.empty()) refused.insert(item.message_id);
    }
    std::erase_if(finished_uploads_, [&](const std::string& id) { return refused.contains(id); });
    streams_->FinishUploads(finished_uploads_);
  }
  finished_uploads_.clear();
  // The answers are made first and their lines noted in the same branch (grouped,
  // broker/batch_lines.h), the lines go into the log's buffer, then the answers leave; FlushLogs
  // writes the lines after.
  std::vector<wire::BrokerMessage> submit_answers(batch_submits_.size());
  for (size_t i = 0; i < batch_submits_.size(); ++i) {
    const auto& item = batch_submits_[i];
    wire::BrokerMessage& m = submit_answers[i];
    m.set_protocol_version(wire::kProtocolVersion);
    auto* r = m.mutable_submit_reply();
    r->set_message_id(item.message_id);
    if (committed.ok() && !item.refused.empty()) {
      metrics_.retry_later.fetch_add(1, std::memory_order_relaxed);
      metrics_.queue_full.fetch_add(1, std::memory_order_relaxed);
      r->set_code(wire::RETRY_LATER);
      r->set_reason(item.refused);
      Log()->warn("message {} from {} to {} not stored for now: {}", item.message_id, item.sender,
                  item.receiver, item.refused);
    } else if (committed.ok() && item.conflict) {
      metrics_.rejected.fetch_add(1, std::memory_order_relaxed);
      metrics_.rejected_id_conflict.fetch_add(1, std::memory_order_relaxed);
      r->set_code(wire::REJECTED);
      r->set_reason("message id is already used by another organisation; use a new UUID");
      Log()->warn("message {} from {} rejected: id already used by another organisation",
                  item.message_id, item.sender);
    } else if (committed.ok()) {
      r->set_code(wire::ACCEPTED);
      metrics_.accepted.fetch_add(1, std::memory_order_relaxed);
      metrics_.submit_to_accept.Observe(static_cast<double>(committed_us - batch_submit_us_[i]) /
                                        1e6);
      if (item.duplicate) {
        metrics_.duplicates.fetch_add(1, std::memory_order_relaxed);
        Log()->info("message {} from {} to {} submitted again: already stored, not stored twice",
                    item.message_id, item.sender, item.receiver);
      } else {
        lines_.Accepted(item.sender, item.receiver, item.message_id, item.envelope.size());
        dirty_orgs_.insert(MailboxKey(item.receiver, item.receiver_channel));
      }
    } else {
      metrics_.retry_later.fetch_add(1, std::memory_order_relaxed);
      r->set_code(wire::RETRY_LATER);
      r->set_reason(RetryLaterReason(committed.code()));
    }
  }
  std::vector<wire::BrokerMessage> report_answers(batch_reports_.size());
  for (size_t i = 0; i < batch_reports_.size(); ++i) {
    auto& rep = batch_reports_[i];
    Session* s = SessionByRid(batch_report_rids_[i]);
    if (reports_committed.ok() && (rep.status == wire::MOTTATT || rep.status == wire::FEIL) &&
        rep.result.ok()) {
      streams_->Forget(rep.message_id);
    }
    if (reports_committed.ok() && (rep.status == wire::MOTTATT || rep.status == wire::FEIL) && s) {
      s->inflight.erase(rep.message_id);
      s->defer_backoff_ms = 0;  // it takes deliveries again
      dirty_orgs_.insert(s->key);
    }
    wire::BrokerMessage& m = report_answers[i];
    m.set_protocol_version(wire::kProtocolVersion);
    auto* rr = m.mutable_report_reply();
    rr->set_message_id(rep.message_id);
    rr->set_status(rep.status);
    if (!reports_committed.ok()) {
      rr->set_ok(false);
      rr->set_reason("broker could not store the report; retry later");
    } else if (!rep.result.ok()) {
      rr->set_ok(true);  // permanent: retrying cannot help
      rr->set_reason(rep.result.message());
      Log()->warn("report {} for message {} from {} ignored: {}", StatusName(rep.status),
                  rep.message_id, rep.reporter, rep.result.message());
    } else {
      rr->set_ok(true);
      lines_.Reported(StatusName(rep.status), rep.reporter, rep.message_id, rep.reason);
      if (!rep.notify_mailbox.empty()) dirty_orgs_.insert(rep.notify_mailbox);
    }
  }
  lines_.Write(*Log());
  // A failed send drops its session: each answer looks its session up again.
  for (size_t i = 0; i < submit_answers.size(); ++i) {
    if (SessionByRid(batch_submit_rids_[i])) {
      Send(batch_submit_rids_[i], submit_answers[i]);
      if (batch_reports_.empty()) PaceAnswer();
    }
  }
  for (size_t i = 0; i < report_answers.size(); ++i) {
    if (SessionByRid(batch_report_rids_[i])) Send(batch_report_rids_[i], report_answers[i]);
  }
  // The lines about these answers, written right after them rather than at the end of the turn
  // (LogFlush::kWhenAsked): a SIGKILL then loses them only in that short gap.
  FlushLogs();
  ClearBatch();
}

void Server::PumpDeliveries(Session& s) {
  const std::string rid = s.rid;
  if (MonoMs() < s.defer_until_mono) return;  // CheckTimers pumps again when the pause ends
  while (s.inflight.size() < s.credit) {
    std::vector<int64_t> handed_out;
    handed_out.reserve(s.inflight.size());
    for (const auto& [id, f] : s.inflight) handed_out.push_back(f.seq);
    auto next = store_->ClaimDeliveries(LeaseOf(s), handed_out,
                                        static_cast<int>(s.credit - s.inflight.size()));
    if (!next.ok()) {
      if (next.status().code() == Code::kConflict) return LeaseLost(rid, next.status());
      Log()->error("reading the queue of {}: {}", s.key, next.status().ToString());
      return;
    }
    if (next->empty()) return;
    for (auto& q : *next) {
      if (s.inflight.contains(q.message_id)) continue;
      wire::BrokerMessage m = DeliveryMessage(q.envelope, 1);
      metrics_.deliveries.fetch_add(1, std::memory_order_relaxed);
      s.inflight[q.message_id] = {q.seq, MonoMs(), 1};
      Send(rid, m);
      if (!SessionByRid(rid)) return;  // dropped by a failed send
      Log()->debug("message {} delivered to {}", q.message_id, s.key);
    }
  }
}

// With a shared store, notices are read from the lowest pending id on each pump, leaving out those
// sent and not yet acknowledged: a notice committed late by another broker, with a lower id, is
// found too. A store of one process commits them in id order, so a pump starts after the last
// one this session sent in order (notices_read_to), not again at those awaiting their ack.
// A session holds at most kMaxUnackedNotices unacknowledged: a sender that never acknowledges
// gets no more (its acks pump again), and the broker's memory for it stays bounded.
void Server::PumpNotices(Session& s) {
  constexpr int kPage = 256;
  constexpr size_t kMaxPerPump = 256;
  const std::string rid = s.rid;
  const bool in_order = !store_->Shared();
  int64_t after = in_order ? s.notices_read_to : 0;
  size_t sent = 0;
  const auto room = [&] {
    return sent < kMaxPerPump && s.notices_sent.size() < kMaxUnackedNotices;
  };
  for (int page = 0; page < 16 && room(); ++page) {
    auto notices = store_->NoticesFor(s.key, after, kPage);
    if (!notices.ok()) {
      Log()->error("reading notices for {}: {}", s.key, notices.status().ToString());
      return;
    }
    for (const auto& n : *notices) {
      after = n.notice_id;
      if (s.notices_sent.contains(n.notice_id)) continue;
      if (!room()) break;
      if (in_order) s.notices_read_to = n.notice_id;
      wire::BrokerMessage m;
      m.set_protocol_version(wire::kProtocolVersion);
      auto* sn = m.mutable_status_notice();
      metrics_.notices.fetch_add(1, std::memory_order_relaxed);
      sn->set_notice_id(static_cast<uint64_t>(n.notice_id));
      sn->set_message_id(n.message_id);
      sn->set_status(n.status);
      sn->set_reason(n.reason);
      sn->set_at_unix_ms(n.at_ms);
      s.notices_sent.insert(n.notice_id);
      ++sent;
      Send(rid, m);
      if (!SessionByRid(rid)) return;
    }
    if (notices->size() < static_cast<size_t>(kPage)) return;
  }
  // Stopped at the pump's cap having sent some: the rest next turn. A pump that sent none (all
  // read were awaiting their ack, or the session holds its most) waits for acks or new notices.
  if (sent > 0 && s.notices_sent.size() < kMaxUnackedNotices) dirty_orgs_.insert(s.key);
}

void Server::SweepExpired() {
  const size_t dropped = streams_->SweepUploads(NowMs());
  metrics_.uploads_dropped.fetch_add(static_cast<int64_t>(dropped), std::memory_order_relaxed);
  metrics_.uploads_open.store(static_cast<int64_t>(streams_->open_uploads()),
                              std::memory_order_relaxed);
  metrics_.upload_fds.store(static_cast<int64_t>(streams_->open_upload_fds()),
                            std::memory_order_relaxed);
  metrics_.spool_bytes.store(static_cast<int64_t>(streams_->spool_bytes()),
                             std::memory_order_relaxed);
  if (auto pruned = store_->PruneHistory(NowMs() - config_.retention_ms, 1000); !pruned.ok()) {
    Log()->error("pruning seen and reports: {}", pruned.status().ToString());
  } else if (*pruned > 0) {
    metrics_.pruned.fetch_add(*pruned, std::memory_order_relaxed);
    Log()->info("forgot {} message id(s) first seen more than {} days ago (retention)", *pruned,
                config_.retention_ms / 86400000);
  }
  auto failed = store_->FailExhausted(config_.max_attempts, NowMs());
  if (!failed.ok()) {
    Log()->error("failing undeliverable messages: {}", failed.status().ToString());
  } else {
    for (const auto& e : *failed) {
      Log()->warn("message {} from {} to {}: FEIL after {} failed delivery attempts", e.message_id,
                  e.sender, e.receiver, config_.max_attempts);
      if (Session* s = SessionByOrg(e.receiver_mailbox)) s->inflight.erase(e.message_id);
      streams_->Forget(e.message_id);
      if (!e.sender_mailbox.empty()) dirty_orgs_.insert(e.sender_mailbox);
      metrics_.exhausted.fetch_add(1, std::memory_order_relaxed);
    }
  }
  auto expired = store_->ExpireDue(NowMs(), 1000);
  if (!expired.ok()) {
    Log()->error("expiry sweep: {}", expired.status().ToString());
    return;
  }
  for (const auto& e : *expired) {
    Log()->info("message {} from {} to {} expired undelivered (LEVETID_UTLOPT); payload deleted",
                e.message_id, e.sender, e.receiver);
    metrics_.expired.fetch_add(1, std::memory_order_relaxed);
    if (Session* s = SessionByOrg(e.receiver_mailbox)) s->inflight.erase(e.message_id);
    streams_->Forget(e.message_id);
    if (!e.sender_mailbox.empty()) dirty_orgs_.insert(e.sender_mailbox);
  }
}

void Server::OnStreamMessage(Session& s, wire::ClientMessage& msg) {
  switch (msg.body_case()) {
    case wire::ClientMessage::kSubmitStream: {
      metrics_.submits.fetch_add(1, std::memory_order_relaxed);
      auto started = streams_->OnSubmitStream(
          s.key, msg.submit_stream().head(),
          [this](const SubmitItem& item) { return store_->QueueRoom(item.sender, item.receiver); });
      const std::string rid = s.rid;  // a reply that cannot be sent drops the session (and s)
      if (started.reply) Send(rid, *started.reply);
      if (started.item) {
        batch_submits_.push_back(std::move(*started.item));
        batch_submit_rids_.push_back(rid);
        batch_submit_us_.push_back(MonoUs());
      }
      break;
    }
    case wire::ClientMessage::kChunk:
      if (auto reply = streams_->OnUploadChunk(s.key, *msg.mutable_chunk())) Send(s.rid, *reply);
      break;
    case wire::ClientMessage::kChunkAck: {
      const auto& ack = msg.chunk_ack();
      if (auto it = s.inflight.find(ack.message_id()); it != s.inflight.end()) {
        it->second.sent_mono = MonoMs();  // a delivery that moves is not timed out
      }
      streams_->OnDeliveryAck(s.rid, ack);
      break;
    }
    case wire::ClientMessage::kStreamResume: {
      const auto& r = msg.stream_resume();
      auto it = s.inflight.find(r.message_id());
      if (it == s.inflight.end()) {
        Log()->warn("StreamResume from {} for message {} that is not being delivered to it",
                    s.org, r.message_id());
        break;
      }
      auto q = store_->BySeq(it->second.seq);
      if (!q.ok() || !q->has_value() || !IsStreamHead((*q)->envelope)) break;
      it->second.sent_mono = MonoMs();
      streams_->OnResume(s.rid, s.key, r, (*q)->envelope);
      break;
    }
    default: break;
  }
}

// store_max_bytes covers SQLite and the spool files: SQLite gets what the spools leave.
void Server::LimitDbToQuota() {
  if (quota_ <= 0 || streams_->spool_bytes() == db_limited_for_spool_) return;
  const int64_t spool = static_cast<int64_t>(
      std::min<uint64_t>(streams_->spool_bytes(), static_cast<uint64_t>(quota_)));
  Status st = store_->LimitBytes(quota_ - spool);
  if (!st.ok()) {
    Log()->warn("cannot set the store's size limit: {}", st.ToString());
    return;
  }
  db_limited_for_spool_ = streams_->spool_bytes();
}

void Server::FlushStreams() {
  std::vector<SubmitItem> complete;
  streams_->Flush(
      [this](const std::string& org, const wire::BrokerMessage& m) {
        if (Session* s = SessionByOrg(org)) Send(s->rid, m);
      },
      &complete);
  for (auto& item : complete) {
    Session* s = SessionByOrg(MailboxKey(item.sender, item.sender_channel));
    finished_uploads_.push_back(item.message_id);
    batch_submits_.push_back(std::move(item));
    batch_submit_rids_.push_back(s ? s->rid : std::string());
    batch_submit_us_.push_back(MonoUs());
  }
}

void Server::PublishIdIndex() {
  const std::optional<IdIndexStats> i = store_->IdIndex();
  if (!i) return;
  metrics_.id_index_in_memory.store(i->in_memory, std::memory_order_relaxed);
  metrics_.id_index_merges.store(i->merges, std::memory_order_relaxed);
  metrics_.id_index_merge_failures.store(i->merge_failures, std::memory_order_relaxed);
  metrics_.id_index_level_merges.store(i->level_merges, std::memory_order_relaxed);
  metrics_.id_index_file_reads.store(i->file_reads, std::memory_order_relaxed);
  metrics_.id_index_filter_ready.store(i->filter_ready ? 1 : 0, std::memory_order_relaxed);
}

void Server::CheckTimers() {
  const int64_t now = MonoMs();
  // Silence counts up to the last time everything sent had been read (see heard_until_mono_).
  const int64_t heard = heard_until_mono_;
  connections_->CloseOverdue();
  std::vector<std::string> dead;
  for (auto& [org, s] : sessions_) {
    if (heard - s.last_seen_mono > 3 * config_.heartbeat_ms) dead.push_back(s.rid);
  }
  for (const auto& rid : dead) DropSession(rid, "no heartbeat for 3 intervals");
  std::optional<std::pair<std::string, Status>> lost_lease;
  for (auto& [org, s] : sessions_) {
    if (lost_lease) break;
    const std::string rid = s.rid;
    if (s.defer_until_mono != 0 && now >= s.defer_until_mono) {
      s.defer_until_mono = 0;
      dirty_orgs_.insert(s.key);
    }
    for (auto it = s.inflight.begin(); it != s.inflight.end();) {
      if (heard - it->second.sent_mono < config_.ack_timeout_ms) {
        ++it;
        continue;
      }
      // The attempt is counted, and the message read, only under this broker's lease.
      auto q = store_->ClaimRedelivery(LeaseOf(s), it->second.seq);
      if (!q.ok() && q.status().code() == Code::kConflict) {
        lost_lease = {rid, q.status()};
        break;
      }
      if (!q.ok()) {
        Log()->error("redelivering message {} to {}: {}", it->first, s.org, q.status().ToString());
        it->second.sent_mono = now;  // tried again after another ack_timeout_ms
        ++it;
        continue;
      }
      if (!q->has_value()) {
        it = s.inflight.erase(it);
        continue;
      }
      it->second.attempt++;
      it->second.sent_mono = now;
      Log()->warn("message {} not acknowledged by {} within {} ms; redelivering (attempt {})",
                  it->first, s.org, config_.ack_timeout_ms, it->second.attempt);
      wire::BrokerMessage m = DeliveryMessage((*q)->envelope, it->second.attempt);
      streams_->DropRid(rid);  // the receiver answers the head again with where to resume
      metrics_.redeliveries.fetch_add(1, std::memory_order_relaxed);
      ++it;
      Send(rid, m);
      break;  // Send may drop the session; continue next tick
    }
  }
  if (lost_lease) LeaseLost(lost_lease->first, lost_lease->second);
}

}  // namespace bud::broker
