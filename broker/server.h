// The broker: a ZeroMQ ROUTER that stores envelopes durably and hands them to their receivers
// (docs/protocol.md, "Broker").
//
// Operation: one thread owns the socket, the store and every session. Each poll drains up to
// max_batch frames; their submits, reports and status acks are committed in one transaction
// (group commit), and only then are ACCEPTED / ReportReply sent. When the store cannot tell
// whether a commit happened (CommitOutcome::kUnknown, a database server's connection lost
// mid-commit) nothing is answered to that batch: the integration points submit and report again
// after their timeout, and the dedup makes that exact. Deliveries are credit-based: at most
// min(hello.credit, max_credit) unacknowledged per receiver; unacknowledged ones are redelivered
// after ack_timeout_ms or when the receiver reconnects (each such redelivery counts an attempt;
// max_attempts of them make FEIL). A receiver that answers Defer (disk full, I/O error) gets the
// delivery taken back with no attempt counted and nothing more for a back-off; the message stays
// queued until it expires. Status notices stay in the store until
// the sender acknowledges them.
// Sessions: one per mailbox (organisation, message channel; queue_store.h), the organisation
// being the ZAP User-Id with CURVE and the channel the Hello's (several points of one
// organisation share its key, each on its own channel); never keyed by routing id. A session
// remembers the routing id of the connection it lives on, and a frame is served only when it
// comes on that connection and (with CURVE) its User-Id is the session's organisation. It gets
// the deliveries whose receiver and receiver_channel are its mailbox, and the notices of the
// messages whose sender and sender_channel are; a submit whose sender_channel is not the
// session's is REJECTED. A new Hello for the same mailbox replaces the old session. A session
// silent for 3 heartbeat intervals is dropped. Several brokers on one store (PostgreSQL): a Hello
// takes the organisation's session lease (QueueStore::TakeSession), taking it over from another
// broker; the loop renews its leases every third of session_lease_ms and drops a session whose
// lease was taken over, or every session when it could not renew for a whole lease. Deliveries are
// handed out only through the store's lease-checked claims, so a broker that lost a lease delivers
// nothing more for it; there is no per-session cursor (the claims leave out what is in flight), so
// a message committed late by another broker with a lower seq is still found. Other brokers'
// commits wake the loop through the store's WakeFd (LISTEN/NOTIFY), and every wake_poll_ms every
// session is looked at anyway. Connections (wire::ConnectionWatch): a connection that has not said
// Hello within hello_timeout_ms (or again, after its session was dropped or replaced) is closed.
// Peers that chose their own routing id (ZMQ_ROUTING_ID) are refused and their connection closed:
// only libzmq's own ids, drawn from a counter seeded at start (wire::SeedRoutingIds), are served.
// ZMTP heartbeats on the ROUTER let libzmq drop dead connections.
// Authentication: with CURVE on, ZAP admits only keys the registry knows and binds each
// connection to that organisation (User-Id). ZAP runs on its own threads with a cache
// (wire::CachedZapHandler): a slow or absent registry never stalls this loop; Hello must name the
// same organisation, and an envelope's sender must be it. Without CURVE (development only) Hello
// names the organisation.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "broker/batch_lines.h"
#include "broker/config.h"
#include "broker/metrics.h"
#include "broker/queue_store.h"
#include "broker/streams.h"
#include "common/registry_client.h"
#include "common/wire/connections.h"
#include "common/wire/curve.h"
#include "common/wire/zap.h"
#include "proto/broker.pb.h"

namespace bud::broker {

class Server {
 public:
  // Items (submits, reports, status acks) one Batch frame may carry; the Welcome says so.
  static constexpr int kMaxBatchItems = 256;
  Server(const Config& config, zmq::context_t& ctx);
  // With a store already open (the seam tests inject faults through): Run uses it instead of
  // opening the one the config names.
  Server(const Config& config, zmq::context_t& ctx, std::unique_ptr<QueueStore> store);
  Status Run();
  // Run returns at its next turn (any thread may call this), as on SIGTERM.
  void Stop() { stop_.store(true); }
  const BrokerMetrics& metrics() const { return metrics_; }
  // This process's id in the session leases: host, pid and a random part, fresh at each start.
  const std::string& broker_id() const { return metrics_.broker_id; }

 private:
  struct Inflight {
    int64_t seq;
    int64_t sent_mono;
    uint32_t attempt;
  };
  struct Session {
    std::string rid;  // routing id of the connection the session lives on
    std::string org;  // "0192:<orgnr>"
    std::string channel;  // its message channel ("" = none)
    std::string key;      // MailboxKey(org, channel): what it is found by
    wire::ConnRef conn;  // that connection (wire::ConnectionWatch), for the Hello deadline
    uint32_t credit = 1;
    int64_t last_seen_mono = 0;
    int64_t epoch = 0;               // of the session's lease (QueueStore::TakeSession)
    std::set<int64_t> notices_sent;  // sent in this session and not acknowledged yet
    // With a store of one process (not Shared), notice ids are committed in increasing order:
    // every notice up to this id was sent in this session, so the next read starts after it.
    int64_t notices_read_to = 0;
    std::map<std::string, Inflight> inflight;
    // The receiver said Defer (its disk is full): nothing is delivered before defer_until_mono.
    // defer_backoff_ms doubles with each round of Defers, back to 0 at its next MOTTATT/FEIL.
    int64_t defer_until_mono = 0;
    int64_t defer_backoff_ms = 0;
  };
  struct PendingReply {
    std::string rid;
    size_t index;
  };

  // Returns the number of submits, reports and acks the frame carried (a Batch carries several).
  int HandleFrame(const std::string& rid, const zmq::message_t& frame);
  Status SetUpCurve();
  void OnHello(const std::string& rid, int fd, const wire::Hello& hello,
               const std::string& user_id);
  // A frame from a peer that chose its own routing id: logged once per id, connection closed.
  void RefuseChosenRid(const std::string& rid, int fd);
  void OnSubmit(Session& s, wire::Submit& submit);  // takes the envelope out of `submit`
  // Each item as if it came alone; refuses the frame beyond kMaxBatchItems. Returns the items.
  int OnBatch(Session& s, wire::Batch& batch);
  void OnReport(Session& s, const wire::Report& report);
  void OnStatusAck(Session& s, const wire::StatusAck& ack);
  // The receiver cannot take a delivery now: taken back without counting an attempt.
  void OnDefer(Session& s, const wire::Defer& defer);
  // Streamed envelopes (broker/streams.h).
  void OnStreamMessage(Session& s, wire::ClientMessage& msg);
  void FlushStreams();
  void LimitDbToQuota();
  void FlushBatch();
  // A batch whose commit outcome is unknown: nothing answered, the batch dropped.
  void AbandonBatch(const Status& why);
  void AnswerSubmitsRetryLater(const Status& why);
  void ClearBatch();
  void PumpDeliveries(Session& s);
  void PumpNotices(Session& s);
  void CheckTimers();
  // The store's id index figures into metrics_ (every 100 ms).
  void PublishIdIndex();
  // Renews the leases; drops the sessions whose lease is gone.
  void RenewLeases();
  // Other brokers' commits: marks the named organisations' sessions for a pump.
  void TakeWakeups();
  LeaseRef LeaseOf(const Session& s) const { return {s.key, broker_id(), s.epoch}; }
  // The store said the lease is no longer this broker's.
  void LeaseLost(const std::string& rid, const Status& why);
  void SweepExpired();
  void Send(const std::string& rid, const wire::BrokerMessage& msg);
  void Refuse(const std::string& rid, const std::string& reason);
  void DropSession(const std::string& rid, const std::string& why);
  Session* SessionByRid(const std::string& rid);
  Session* SessionByOrg(const std::string& org);

  const Config& config_;
  zmq::context_t& ctx_;
  std::unique_ptr<zmq::socket_t> sock_;
  std::unique_ptr<wire::CachedZapHandler> zap_;
  std::unique_ptr<wire::ConnectionWatch> connections_;
  std::set<std::string> refused_rids_;            // chosen routing ids already logged (bounded)
  bool curve_ = false;
  std::unique_ptr<QueueStore> store_;
  std::unique_ptr<Streams> streams_;
  std::vector<std::string> finished_uploads_;     // in this batch's submits; rows go after commit
  uint64_t db_limited_for_spool_ = UINT64_MAX;    // spool bytes the SQLite limit was set for
  int64_t quota_ = 0;                             // store_max_bytes, or the automatic one
  std::map<std::string, Session> sessions_;       // by mailbox key (queue_store.h)
  bool sessions_changed_ = false;  // since the metrics last saw the organisations
  std::map<std::string, std::string> rid_org_;  // routing id -> mailbox key of its session
  std::vector<SubmitItem> batch_submits_;
  std::vector<std::string> batch_submit_rids_;
  std::vector<ReportItem> batch_reports_;
  std::vector<std::string> batch_report_rids_;
  std::vector<NoticeAck> batch_acks_;
  std::set<std::string> dirty_orgs_;              // mailboxes with new deliveries or notices
  int64_t leases_renewed_mono_ = 0;               // last successful RenewSessions
  int64_t wake_warned_mono_ = 0;                  // last warning about wake-ups
  // When the loop last found the socket empty: every frame sent before then has been read, so
  // silence (heartbeats, acks) is measured up to here, not to now. A loop that stalls (a slow
  // commit, a checkpoint) does not blame the peers whose frames wait unread behind the stall.
  int64_t heard_until_mono_ = 0;
  std::vector<int64_t> batch_submit_us_;          // when each batched submit arrived (mono µs)
  BatchLines lines_;                              // the log lines about the batch's answers
  BrokerMetrics metrics_;
  std::atomic<bool> stop_{false};
};

}  // namespace bud::broker
