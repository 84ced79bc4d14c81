// A sender's status notices through the broker's loop (tests/broker/server_harness.h, a real
// SQLite store): more than one pump sends (256), none acknowledged, each arrives once; after a
// reconnect exactly the unacknowledged ones come again; a session holds at most 4,096
// unacknowledged.
#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "broker/server.h"
#include "common/clock.h"
#include "common/crypto/envelope.h"
#include "common/uuid.h"
#include "tests/broker/server_harness.h"

namespace bud::broker {
namespace {

using test_server::kA;
using test_server::kB;
using test_server::Msg;
using test_server::Peer;
using test_server::RunningBroker;

constexpr int kCount = 300;  // more than a pump sends at once

// The notices `a` gets until `want` distinct ones came and 700 ms pass quietly (at most 20 s):
// message id -> how many times, and notice id by message id.
struct Got {
  std::map<std::string, int> times;
  std::map<std::string, uint64_t> notice_id;
};
Got Notices(Peer& a, size_t want) {
  Got got;
  const int64_t until = MonoMs() + 20000;
  while (MonoMs() < until) {
    auto m = a.Receive(got.times.size() < want ? 1000 : 700);
    if (!m) {
      if (got.times.size() >= want) break;
      continue;
    }
    if (!m->has_status_notice()) continue;
    ++got.times[m->status_notice().message_id()];
    got.notice_id[m->status_notice().message_id()] = m->status_notice().notice_id();
  }
  return got;
}

// `count` messages from `a` to `b`, submitted 200 at a time, each answered ACCEPTED; then `b`
// takes every delivery and reports it MOTTATT, each answered ok. Their ids.
std::set<std::string> SendAndReport(Peer& a, Peer& b, int count) {
  std::set<std::string> ids;
  while (static_cast<int>(ids.size()) < count) {
    const int window = std::min(200, count - static_cast<int>(ids.size()));
    for (int i = 0; i < window; ++i) {
      const std::string id = NewUuid();
      ids.insert(id);
      a.Submit(id);
    }
    for (int answered = 0; answered < window;) {
      auto m = a.Receive(10000);
      REQUIRE(m);
      if (!m->has_submit_reply()) continue;
      REQUIRE(m->submit_reply().code() == wire::ACCEPTED);
      ++answered;
    }
  }
  std::set<std::string> reported;
  const int64_t until = MonoMs() + 60000;
  int answered = 0;
  while (answered < count && MonoMs() < until) {
    auto m = b.Receive(1000);
    if (!m) continue;
    if (m->has_deliver()) {
      auto env = crypto::ParseEnvelope(m->deliver().envelope());
      REQUIRE(env.ok());
      auto h = crypto::ParseHeaderUnverified(*env);
      REQUIRE(h.ok());
      if (reported.insert(h->message_id()).second) b.Report(h->message_id(), wire::MOTTATT);
    } else if (m->has_report_reply()) {
      REQUIRE(m->report_reply().ok());
      ++answered;
    }
  }
  REQUIRE(answered == count);
  CHECK(reported == ids);
  return ids;
}

}  // namespace

TEST_CASE(
    "notices: more than a pump's worth, each once; the unacknowledged again after a reconnect",
    "[broker][notices]") {
  RunningBroker broker;
  Peer b(broker.ctx, broker.endpoint, kB);
  std::set<std::string> ids;
  {
    // A goes away before the reports: the notices wait for it.
    Peer a(broker.ctx, broker.endpoint, kA);
    ids = SendAndReport(a, b, kCount);
  }

  // A connects again: every notice, each once, though none is acknowledged.
  Peer a2(broker.ctx, broker.endpoint, kA);
  Got first = Notices(a2, kCount);
  REQUIRE(first.times.size() == static_cast<size_t>(kCount));
  for (const auto& [id, times] : first.times) {
    INFO(id);
    CHECK(times == 1);
    CHECK(ids.contains(id));
  }
  // Half acknowledged; a submit's answer comes after the commit that carries the acks (one
  // socket keeps its order).
  std::set<std::string> unacked;
  int i = 0;
  for (const auto& [id, notice_id] : first.notice_id) {
    if (i++ % 2 == 0) {
      auto ack = Msg();
      ack.mutable_status_ack()->set_notice_id(notice_id);
      a2.Send(ack);
    } else {
      unacked.insert(id);
    }
  }
  REQUIRE(a2.SubmitEnvelope(test_server::Envelope(NewUuid())).code() == wire::ACCEPTED);
  Got none = Notices(a2, 0);
  CHECK(none.times.empty());  // acked or already sent in this session: nothing again

  Peer a3(broker.ctx, broker.endpoint, kA);
  Got again = Notices(a3, unacked.size());
  std::set<std::string> again_ids;
  for (const auto& [id, times] : again.times) {
    CHECK(times == 1);
    again_ids.insert(id);
  }
  CHECK(again_ids == unacked);
}

TEST_CASE("notices: a sender that acknowledges none holds 4,096, and takes more as it acknowledges",
          "[broker][notices]") {
  RunningBroker broker;
  Peer a(broker.ctx, broker.endpoint, kA);
  Peer b(broker.ctx, broker.endpoint, kB);
  const std::set<std::string> ids = SendAndReport(a, b, 4200);
  Got held = Notices(a, 4096);
  CHECK(held.times.size() == 4096);
  for (const auto& [id, times] : held.times) CHECK(times == 1);
  int acked = 0;
  for (const auto& [id, notice_id] : held.notice_id) {
    auto ack = Msg();
    ack.mutable_status_ack()->set_notice_id(notice_id);
    a.Send(ack);
    if (++acked == 100) break;
  }
  Got more = Notices(a, 100);
  CHECK(more.times.size() == 100);
  for (const auto& [id, times] : more.times) {
    CHECK(times == 1);
    CHECK_FALSE(held.times.contains(id));
    CHECK(ids.contains(id));
  }
}

}  // namespace bud::broker
