// The broker: a ZeroMQ ROUTER that stores envelopes durably and hands them to their receivers
// (docs/protocol.md, "Broker").
//
// Operation: one thread owns the socket, the store and every session. Each poll drains up to
// max_batch frames; their submits, reports and status acks are committed in one transaction
// (group commit), and only then are ACCEPTED / ReportReply sent. Deliveries are credit-based: at most
// min(hello.credit, max_credit) unacknowledged per receiver; unacknowledged ones are redelivered
// after ack_timeout_ms or when the receiver reconnects. Status notices stay in the store until
// the sender acknowledges them.
// Sessions: keyed by ZeroMQ routing id; one per organisation (a new Hello replaces the old one).
// A session that is silent for 3 heartbeat intervals is dropped.
// Authentication: with CURVE on, ZAP admits only keys the registry knows and binds each
// connection to that organisation (User-Id); Hello must name the same organisation, and an
// envelope's sender must be it. Without CURVE (development only) Hello names the organisation.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "broker/config.h"
#include "broker/metrics.h"
#include "broker/store.h"
#include "broker/streams.h"
#include "common/registry_client.h"
#include "common/wire/curve.h"
#include "proto/broker.pb.h"

namespace bud::broker {

class Server {
 public:
  Server(const Config& config, zmq::context_t& ctx);
  Status Run();
  const BrokerMetrics& metrics() const { return metrics_; }

 private:
  struct Inflight {
    int64_t seq;
    int64_t sent_mono;
    uint32_t attempt;
  };
  struct Session {
    std::string rid;
    std::string org;  // "0192:<orgnr>"
    uint32_t credit = 1;
    int64_t last_seen_mono = 0;
    int64_t cursor_seq = 0;       // highest seq handed out in this session
    int64_t notice_cursor = 0;    // highest notice id sent in this session
    std::map<std::string, Inflight> inflight;
  };
  struct PendingReply {
    std::string rid;
    size_t index;
  };

  void HandleFrame(const std::string& rid, const zmq::message_t& frame);
  Status SetUpCurve();
  void OnHello(const std::string& rid, const wire::Hello& hello, const std::string& user_id);
  void OnSubmit(Session& s, wire::Submit& submit);  // takes the envelope out of `submit`
  void OnReport(Session& s, const wire::Report& report);
  void OnStatusAck(Session& s, const wire::StatusAck& ack);
  // Streamed envelopes (broker/streams.h).
  void OnStreamMessage(Session& s, wire::ClientMessage& msg);
  void FlushStreams();
  void LimitDbToQuota();
  void FlushBatch();
  void PumpDeliveries(Session& s);
  void PumpNotices(Session& s);
  void CheckTimers();
  void SweepExpired();
  void Send(const std::string& rid, const wire::BrokerMessage& msg);
  void Refuse(const std::string& rid, const std::string& reason);
  void DropSession(const std::string& rid, const std::string& why);
  Session* SessionByRid(const std::string& rid);
  Session* SessionByOrg(const std::string& org);

  const Config& config_;
  zmq::context_t& ctx_;
  std::unique_ptr<zmq::socket_t> sock_;
  std::unique_ptr<wire::ZapHandler> zap_;
  std::unique_ptr<RegistryClient> registry_;
  bool curve_ = false;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Streams> streams_;
  std::vector<std::string> finished_uploads_;     // in this batch's submits; rows go after commit
  uint64_t db_limited_for_spool_ = UINT64_MAX;    // spool bytes the SQLite limit was set for
  int64_t quota_ = 0;                             // store_max_bytes, or the automatic one
  std::map<std::string, Session> sessions_;       // by routing id
  std::map<std::string, std::string> org_rid_;    // org -> routing id
  std::vector<SubmitItem> batch_submits_;
  std::vector<std::string> batch_submit_rids_;
  std::vector<ReportItem> batch_reports_;
  std::vector<std::string> batch_report_rids_;
  std::vector<NoticeAck> batch_acks_;
  std::set<std::string> dirty_orgs_;              // orgs with new deliveries or notices
  std::vector<int64_t> batch_submit_us_;          // when each batched submit arrived (mono µs)
  BrokerMetrics metrics_;
};

}  // namespace bud::broker
