// Reliability of a whole exchange under failure, with real processes (see harness.h): SIGKILLed
// brokers and integration points, receivers that are down or never come, expired messages,
// envelopes the receiver cannot verify, a full broker store, and envelopes submitted twice.
// Every test checks what an archive system and an operator see: inbox folders byte for byte,
// `bud-ip status --json` on both sides, and the SQLite files' integrity.
//
// The crash test is seeded (std::mt19937, seed printed) and scales with the environment:
//   BUD_CRASH_MESSAGES  messages per sender (4 senders, 1 receiver; default 500)
//   BUD_CRASH_KILLS     SIGKILLs of the broker (default 5); the receiver is killed
//                       max(2, kills / 2) times
//   BUD_CRASH_SEED      the seed (default 20260522)
// A longer run is one command (10000 messages, 20 + 10 kills; about 4 minutes on 2 cores):
//   BUD_CRASH_MESSAGES=2500 BUD_CRASH_KILLS=20 build-rel/bin/integration_tests "[crash]"
// The default (2000 messages, 5 + 2 kills) takes about 75 s there, ~40 messages/s end to end.
// What is random is the schedule (burst sizes, pauses, kill moments, down times); what the
// processes do between those moments depends on the machine, so a failure names the seed and
// the exchange's directory (set BUD_KEEP_TEST_DIRS=1 to keep it).
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/crypto/envelope.h"
#include "common/crypto/openssl.h"
#include "common/orgnr.h"
#include "common/storage/sqlite.h"
#include "common/uuid.h"
#include "common/wire/curve.h"
#include "common/wire/zmq.h"
#include "proto/broker.pb.h"
#include "tests/integration/harness.h"
#include "tests/support/postgres.h"

namespace bud::test {
namespace {

namespace fs = std::filesystem;
using Strings = std::vector<std::string>;
using SteadyClock = std::chrono::steady_clock;

// Five organisation numbers with valid mod-11 check digits (checked by CheckedAgencies).
constexpr const char* kFiveAgencies[] = {"910076787", "910075918", "974760673", "991825827",
                                         "889640782"};

// ---------------------------------------------------------------------------------------------
// Helpers

// The five agencies, each verified with Orgnr::Parse before use.
Strings CheckedAgencies() {
  Strings out;
  for (const char* org : kFiveAgencies) {
    auto parsed = Orgnr::Parse(org);
    INFO("orgnr " << org << ": " << (parsed.ok() ? "ok" : parsed.status().ToString()));
    REQUIRE(parsed.ok());
    REQUIRE(parsed->digits() == org);
    out.push_back(org);
  }
  return out;
}

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  try {
    return std::stoi(v);
  } catch (const std::exception&) {
    throw HarnessError(std::string(name) + "='" + v + "' is not a number");
  }
}

// lo..hi inclusive. Not std::uniform_int_distribution: its output is not fixed by the standard,
// mt19937's is, so a seed gives the same schedule with every standard library.
uint32_t Uniform(std::mt19937& rng, uint32_t lo, uint32_t hi) {
  return lo + static_cast<uint32_t>(rng() % (static_cast<uint64_t>(hi) - lo + 1));
}

// A version 4 UUID (lower case) drawn from `rng`, so message ids are reproducible too.
std::string SeededUuid(std::mt19937& rng) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (int i = 0; i < 32; ++i) hex += kHex[rng() & 0xf];
  hex[12] = '4';
  hex[16] = kHex[8 + (rng() & 3)];
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

// messageId -> every entry listed with it (more than one would be a duplicate).
std::map<std::string, std::vector<nlohmann::json>> ByMessageId(const nlohmann::json& status) {
  std::map<std::string, std::vector<nlohmann::json>> out;
  for (const auto& m : status) out[m.value("messageId", "")].push_back(m);
  return out;
}

// The history line of `entry` with `status`, or null when there is none.
nlohmann::json HistoryLine(const nlohmann::json& entry, const std::string& status) {
  for (const auto& h : entry.value("history", nlohmann::json::array())) {
    if (h.value("status", "") == status) return h;
  }
  return nullptr;
}

bool HasInHistory(const nlohmann::json& entry, const std::string& status) {
  return !HistoryLine(entry, status).is_null();
}

// Waits until every message in `ids` is listed by `org` with `status` in its history (one
// `bud-ip status` per round). Fails at once when one of them ends in FEIL or LEVETID_UTLOPT
// (unless that is awaited). Returns the last listing.
nlohmann::json WaitForAll(Exchange& ex, const std::string& org, const Strings& ids,
                          const std::string& status, Millis timeout) {
  nlohmann::json listing;
  size_t missing = ids.size();
  std::string example;
  WaitUntil(
      std::to_string(ids.size()) + " message(s) to reach " + status + " at " + org, timeout,
      [&] {
        ex.CheckAlive();
        listing = ex.Status(org);
        auto by_id = ByMessageId(listing);
        missing = 0;
        example.clear();
        for (const auto& id : ids) {
          auto it = by_id.find(id);
          if (it != by_id.end() && HasInHistory(it->second.front(), status)) continue;
          ++missing;
          if (it == by_id.end()) {
            if (example.empty()) example = id + ": not listed";
            continue;
          }
          const std::string now = it->second.front().value("status", "");
          if (now != status && (now == "FEIL" || now == "LEVETID_UTLOPT")) {
            throw HarnessError("message " + id + " at " + org + " ended in " + now +
                               " while waiting for " + status + ":\n" + it->second.front().dump(2) +
                               "\n" + ex.Diagnostics());
          }
          if (example.empty()) example = it->second.front().dump();
        }
        return missing == 0;
      },
      [&] {
        return std::to_string(missing) + " not there yet, e.g. " + example + "\n" +
               ex.Diagnostics();
      },
      Millis(500));
  return listing;
}

// Compares `org`'s inbox with `want` (message id -> attachments): exactly these folders, no
// leftovers in inbox/.tmp, each folder holding its attachments byte for byte plus message.json
// naming the message. Returns a description of every difference (empty when equal).
Strings InboxDifferences(Exchange& ex, const std::string& org,
                         const std::map<std::string, Files>& want) {
  Strings problems;
  const std::string inbox = ex.Inbox(org);
  std::set<std::string> listed;
  for (const auto& name : ListDir(inbox)) listed.insert(name);
  for (const auto& name : listed) {
    if (!want.contains(name)) problems.push_back("unexpected inbox folder " + name);
  }
  for (const auto& name : ListDir(inbox + "/.tmp", /*include_hidden=*/true)) {
    problems.push_back("leftover inbox/.tmp/" + name);
  }
  for (const auto& name : ListDir(inbox, /*include_hidden=*/true)) {
    if (!name.empty() && name.front() == '.' && name != ".tmp") {
      problems.push_back("unexpected hidden inbox entry " + name);
    }
  }
  for (const auto& [id, files] : want) {
    if (!listed.contains(id)) {
      problems.push_back("message " + id + " is not in the inbox");
      continue;
    }
    const std::string folder = inbox + "/" + id;
    Strings names;
    for (const auto& [name, bytes] : files) names.push_back(name);
    names.push_back("message.json");
    std::sort(names.begin(), names.end());
    if (ListDir(folder, /*include_hidden=*/true) != names) {
      problems.push_back("message " + id + ": the folder holds other files than sent");
    }
    for (const auto& [name, bytes] : files) {
      if (ReadFileOrEmpty(folder + "/" + name) != bytes) {
        problems.push_back("message " + id + ": attachment " + name +
                           " differs from what was sent");
      }
    }
    try {
      auto mj = nlohmann::json::parse(ReadFileOrEmpty(folder + "/message.json"));
      if (mj.value("messageId", "") != id) {
        problems.push_back("message " + id + ": message.json names " + mj.value("messageId", ""));
      }
    } catch (const nlohmann::json::exception& e) {
      problems.push_back("message " + id + ": message.json is not JSON: " + e.what());
    }
  }
  return problems;
}

std::string FirstLines(const Strings& lines, size_t n = 20) {
  std::string out;
  for (size_t i = 0; i < lines.size() && i < n; ++i) out += lines[i] + "\n";
  if (lines.size() > n) out += "... and " + std::to_string(lines.size() - n) + " more\n";
  return out;
}

// PRAGMA integrity_check of one SQLite file: "" when ok, else what is wrong. `read_only` for a
// file whose process is down and must find its own WAL when it restarts.
std::string IntegrityProblem(const std::string& path, bool read_only = false) {
  if (!PathExists(path)) return path + " does not exist";
  storage::Db::Options options;
  options.read_only = read_only;
  auto db = storage::Db::Open(path, options);
  if (!db.ok()) return db.status().ToString();
  Status s = (*db)->Check(/*full=*/true);
  return s.ok() ? "" : s.ToString();
}

// Every SQLite file of the exchange: registry, broker (unless its store is on PostgreSQL) and
// each agency's store.
Strings SqliteFiles(Exchange& ex, bool broker_on_pg = false) {
  Strings out = {ex.root() + "/registry/registry.db"};
  if (!broker_on_pg) out.push_back(ex.root() + "/broker/broker.db");
  for (const auto& org : ListDir(ex.root() + "/agencies")) {
    out.push_back(ex.AgencyDir(org) + "/ip.db");
  }
  return out;
}

// Runs one query that yields one integer against a store (the process may be running: WAL lets
// a second connection read).
int64_t QueryInt(const std::string& path, const std::string& sql, const std::string& bind) {
  auto db = storage::Db::Open(path);
  if (!db.ok()) throw HarnessError(db.status().ToString());
  auto st = (*db)->Prepare(sql);
  if (!st.ok()) throw HarnessError(st.status().ToString());
  (*st)->Bind(1, bind);
  auto row = (*st)->Step();
  if (!row.ok()) throw HarnessError(row.status().ToString());
  const int64_t v = *row ? (*st)->Int(0) : -1;
  (*st)->Reset();
  return v;
}

// A small message to `receiver`: message.json with an explicit id and title, one text file
// and `binary_bytes` seeded bytes.
struct Outgoing {
  std::string id;
  std::string folder;
  std::string message_json;
  Files files;
};

Outgoing SmallMessage(const std::string& receiver, const std::string& id, const std::string& title,
                      size_t binary_bytes, uint32_t seed) {
  Outgoing m;
  m.id = id;
  m.folder = "melding-" + id;
  nlohmann::json meta = Exchange::Metadata(receiver);
  meta["messageId"] = id;
  meta["title"] = title;
  m.message_json = meta.dump(2);
  m.files = {{"data.bin", SeededBytes(binary_bytes, seed)},
             {"notat.txt", "Notat for " + title + "\nÆØÅ æøå " + std::to_string(seed) + "\n"}};
  return m;
}

// ---------------------------------------------------------------------------------------------
// A raw broker client: one CURVE DEALER speaking broker.proto as an agency, every wait a poll
// with a deadline. For submitting hand-made envelopes.
class RawBrokerClient {
 public:
  RawBrokerClient(zmq::context_t& ctx, Exchange& ex, const std::string& org)
      : socket_(ctx, zmq::socket_type::dealer), org_(org) {
    wire::ConfigureSocket(socket_, /*router=*/false, /*linger_ms=*/0);
    auto keys = wire::LoadCurveKeyFile(ex.CurveKeyFile(org));
    if (!keys.ok()) throw HarnessError("curve key of " + org + ": " + keys.status().ToString());
    wire::MakeCurveClient(socket_, *keys, ex.broker_public_key());
    socket_.connect(ex.broker_endpoint());
  }

  // Hello until Welcome (the first Hello may be lost while CURVE and ZAP are still deciding).
  void Connect(Millis timeout = kDefaultWait) {
    const auto deadline = SteadyClock::now() + timeout;
    while (SteadyClock::now() < deadline) {
      wire::ClientMessage hello;
      hello.set_protocol_version(wire::kProtocolVersion);
      hello.mutable_hello()->set_orgnr("0192:" + org_);
      hello.mutable_hello()->set_credit(8);
      Send(hello);
      const auto round = std::min(deadline, SteadyClock::now() + Millis(1000));
      while (auto m = Receive(round)) {
        if (m->has_welcome()) {
          if (m->welcome().orgnr() != "0192:" + org_) {
            throw HarnessError("broker welcomed us as " + m->welcome().orgnr());
          }
          return;
        }
        if (m->has_refused()) throw HarnessError("broker refused Hello: " + m->refused().reason());
      }
    }
    throw HarnessError("no Welcome from the broker for " + org_ + " within " +
                       std::to_string(timeout.count()) + " ms");
  }

  // Submits `envelope` and returns the broker's answer for `message_id`, acknowledging status
  // notices and skipping heartbeats meanwhile.
  wire::SubmitReply Submit(const std::string& envelope, const std::string& message_id,
                           Millis timeout = kDefaultWait) {
    wire::ClientMessage submit;
    submit.set_protocol_version(wire::kProtocolVersion);
    submit.mutable_submit()->set_envelope(envelope);
    Send(submit);
    const auto deadline = SteadyClock::now() + timeout;
    while (auto m = Receive(deadline)) {
      if (m->has_submit_reply() && m->submit_reply().message_id() == message_id) {
        return m->submit_reply();
      }
      if (m->has_refused()) throw HarnessError("broker refused: " + m->refused().reason());
      if (m->has_status_notice()) {
        wire::ClientMessage ack;
        ack.set_protocol_version(wire::kProtocolVersion);
        ack.mutable_status_ack()->set_notice_id(m->status_notice().notice_id());
        Send(ack);
      }
    }
    throw HarnessError("no SubmitReply for " + message_id + " within " +
                       std::to_string(timeout.count()) + " ms");
  }

 private:
  void Send(const wire::ClientMessage& msg) {
    Status s = wire::SendProto(socket_, msg);
    if (!s.ok()) throw HarnessError("send to broker: " + s.ToString());
  }

  // The next message from the broker, or nullopt when `deadline` passes first.
  std::optional<wire::BrokerMessage> Receive(SteadyClock::time_point deadline) {
    for (;;) {
      zmq::message_t frame;
      if (socket_.recv(frame, zmq::recv_flags::dontwait)) {
        wire::BrokerMessage m;
        Status parsed = wire::ParseProto(frame, m, "BrokerMessage");
        if (!parsed.ok()) throw HarnessError(parsed.ToString());
        return m;
      }
      const auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
      if (left.count() <= 0) return std::nullopt;
      zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::min(left, Millis(200)));
    }
  }

 public:
  // Sends a Submit without waiting for its answer (see Next).
  void SubmitAsync(const std::string& envelope) {
    wire::ClientMessage submit;
    submit.set_protocol_version(wire::kProtocolVersion);
    submit.mutable_submit()->set_envelope(envelope);
    Send(submit);
  }

  // The next message from the broker, or nullopt when `deadline` passes first.
  std::optional<wire::BrokerMessage> Next(SteadyClock::time_point deadline) {
    return Receive(deadline);
  }

 private:
  zmq::socket_t socket_;
  std::string org_;
};

// An envelope from `from` to `to` with valid routing fields but NOT sealed (a filler signature
// and random payload): enough for the broker, which routes on the header and never verifies.
std::string UnsealedEnvelope(const std::string& id, const std::string& from,
                             const std::string& to) {
  wire::Header h;
  h.set_version(crypto::kEnvelopeVersion);
  h.set_message_id(id);
  h.set_conversation_id(id);
  h.set_sender("0192:" + from);
  h.set_receiver("0192:" + to);
  h.set_process(kProcess);
  h.set_document_type(kDocumentType);
  h.set_created_unix_ms(NowMs());
  h.set_expires_unix_ms(NowMs() + 3600 * 1000);
  wire::Envelope e;
  e.set_payload(crypto::RandomBytes(512));
  h.set_payload_size(e.payload().size());
  h.set_payload_sha256(crypto::Sha256(e.payload()));
  h.SerializeToString(e.mutable_header());
  e.set_signature(std::string(256, 'x'));
  return e.SerializeAsString();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// 1. Crash test

// The broker's store on SQLite (pg == nullptr) or on the PostgreSQL server `pg`.
static void CrashTest(const PostgresServer* pg) {
  const bool broker_on_pg = pg != nullptr;
  const uint32_t seed = static_cast<uint32_t>(EnvInt("BUD_CRASH_SEED", 20260522));
  const int per_sender = EnvInt("BUD_CRASH_MESSAGES", 500);
  const int broker_kills = EnvInt("BUD_CRASH_KILLS", 5);
  const int receiver_kills = std::max(2, broker_kills / 2);
  REQUIRE(per_sender > 0);
  REQUIRE(broker_kills >= 0);
  std::cout << "crash test: seed " << seed << " (BUD_CRASH_SEED), " << per_sender
            << " messages per sender (BUD_CRASH_MESSAGES), " << broker_kills
            << " broker kills (BUD_CRASH_KILLS), " << receiver_kills << " receiver kills"
            << std::endl;
  std::mt19937 rng(seed);

  const Strings agencies = CheckedAgencies();
  const Strings senders(agencies.begin(), agencies.begin() + 4);
  const std::string receiver = agencies[4];
  const size_t total = senders.size() * static_cast<size_t>(per_sender);

  // The truth map, in drop order: bursts of 5..40 messages, each into one sender's outbox.
  struct Truth {
    std::string sender;
    Outgoing message;
  };
  std::map<std::string, Truth> truth;
  std::map<std::string, Strings> ids_of;  // sender -> its message ids
  struct Burst {
    size_t sender;
    std::vector<std::string> ids;
    uint32_t pause_ms;  // before the next burst
  };
  std::vector<Burst> bursts;
  {
    std::vector<int> left(senders.size(), per_sender);
    int remaining = static_cast<int>(total);
    while (remaining > 0) {
      size_t s = Uniform(rng, 0, static_cast<uint32_t>(senders.size() - 1));
      while (left[s] == 0) s = (s + 1) % senders.size();
      const int n = std::min<int>(left[s], static_cast<int>(Uniform(rng, 5, 40)));
      Burst b{s, {}, Uniform(rng, 0, 150)};
      for (int i = 0; i < n; ++i) {
        const std::string id = SeededUuid(rng);
        const int number = per_sender - left[s] + i + 1;
        const std::string title = "Melding " + std::to_string(number) + " fra " + senders[s];
        const uint32_t bytes = Uniform(rng, 200, 600);  // drawn in a fixed order, not as
        const uint32_t content_seed = rng();            // arguments (unspecified order)
        Outgoing m = SmallMessage(receiver, id, title, bytes, content_seed);
        if (truth.contains(id)) FAIL("seeded message id " << id << " drawn twice");
        truth[id] = {senders[s], std::move(m)};
        ids_of[senders[s]].push_back(id);
        b.ids.push_back(id);
      }
      left[s] -= n;
      remaining -= n;
      bursts.push_back(std::move(b));
    }
  }

  // Kill moments: a seeded time (0..600 ms) after a seeded burst was dropped, when that
  // sender is taking it in, sealing and submitting it and the receiver is busy with the ones
  // before; each with a seeded down time before the restart.
  struct Kill {
    bool broker;
    size_t after_burst;
    uint32_t delay_ms;
    uint32_t down_ms;
  };
  std::vector<Kill> kills;
  for (int i = 0; i < broker_kills + receiver_kills; ++i) {
    const bool broker = i < broker_kills;
    const size_t after = Uniform(rng, 0, static_cast<uint32_t>(bursts.size() - 1));
    const uint32_t delay = Uniform(rng, 0, 600);
    const uint32_t down = Uniform(rng, 0, 1000);
    kills.push_back({broker, after, delay, down});
  }
  std::stable_sort(kills.begin(), kills.end(),
                   [](const Kill& a, const Kill& b) { return a.after_burst < b.after_burst; });

  ExchangeOptions options;
  options.agencies = agencies;
  if (broker_on_pg) {
    options.broker_pg_url = pg->ConnString();
    options.broker_pg_password_file = pg->PasswordFile();
    std::cout << "crash test: the broker's store on PostgreSQL (" << pg->ConnString() << ")"
              << std::endl;
  }
  Exchange ex(options);
  INFO("seed " << seed << "; exchange in " << ex.root());

  const std::string inbox = ex.Inbox(receiver);
  auto in_inbox = [&] { return ListDir(inbox).size(); };
  // Drops wait while this many messages are on their way, so bursts keep coming during the
  // kills instead of all landing in the first seconds.
  const size_t max_backlog = 300;

  const auto t0 = SteadyClock::now();
  size_t next_burst = 0, next_kill = 0, dropped = 0;
  auto next_drop_at = t0;
  double dropped_at = 0;
  Strings kill_log;
  Strings integrity_after_kill;
  const Millis deadline(180000 + 150 * static_cast<int64_t>(total) +
                        4000 * static_cast<int64_t>(kills.size()));
  WaitUntil(
      "all bursts dropped and all kills done", deadline,
      [&] {
        ex.CheckAlive();
        const auto now = SteadyClock::now();
        size_t delivered = in_inbox();
        if (next_burst < bursts.size() && now >= next_drop_at &&
            dropped - std::min(dropped, delivered) < max_backlog) {
          const Burst& b = bursts[next_burst++];
          for (const auto& id : b.ids) {
            const Outgoing& m = truth.at(id).message;
            ex.DropFolder(senders[b.sender], m.folder, m.message_json, m.files);
          }
          dropped += b.ids.size();
          next_drop_at = now + Millis(b.pause_ms);
          if (next_burst == bursts.size()) dropped_at = Seconds(SteadyClock::now() - t0);
        }
        if (next_kill < kills.size() && kills[next_kill].after_burst < next_burst) {
          const Kill& k = kills[next_kill++];
          std::this_thread::sleep_for(Millis(k.delay_ms));
          delivered = in_inbox();
          const double at = Seconds(SteadyClock::now() - t0);
          if (k.broker) {
            ex.broker().Kill();
            const std::string problem =
                broker_on_pg ? ""
                             : IntegrityProblem(ex.root() + "/broker/broker.db", /*read_only=*/true);
            if (!problem.empty()) integrity_after_kill.push_back("broker.db: " + problem);
            std::this_thread::sleep_for(Millis(k.down_ms));
            ex.StartBroker();
          } else {
            ex.ip(receiver).Kill();
            const std::string problem =
                IntegrityProblem(ex.AgencyDir(receiver) + "/ip.db", /*read_only=*/true);
            if (!problem.empty()) integrity_after_kill.push_back("receiver ip.db: " + problem);
            std::this_thread::sleep_for(Millis(k.down_ms));
            ex.StartIp(receiver);
          }
          char line[200];
          std::snprintf(line, sizeof line,
                        "%7.2f s: SIGKILL %-8s %3u ms after burst %3zu: %5zu/%zu dropped, %5zu in "
                        "the inbox; down %4u ms",
                        at, k.broker ? "broker" : "receiver", k.delay_ms, k.after_burst + 1,
                        dropped, total, delivered, k.down_ms);
          kill_log.push_back(line);
          std::cout << "crash test: " << line << std::endl;
        }
        return next_burst == bursts.size() && next_kill == kills.size();
      },
      [&] {
        return "seed " + std::to_string(seed) + ": " + std::to_string(next_burst) + "/" +
               std::to_string(bursts.size()) + " bursts dropped, " + std::to_string(next_kill) +
               "/" + std::to_string(kills.size()) + " kills done, " + std::to_string(in_inbox()) +
               " in the inbox\n" + ex.Diagnostics();
      },
      Millis(50));
  CHECK(next_kill == kills.size());
  INFO("kills:\n" << FirstLines(kill_log, 100));
  INFO("integrity checks right after a kill:\n" << FirstLines(integrity_after_kill));
  CHECK(integrity_after_kill.empty());

  // Everything arrives, once.
  const auto left = deadline - std::chrono::duration_cast<Millis>(SteadyClock::now() - t0);
  WaitUntil(
      std::to_string(total) + " messages in the inbox of " + receiver,
      std::max(left, Millis(60000)),
      [&] {
        ex.CheckAlive();
        return in_inbox() >= total;
      },
      [&] { return std::to_string(in_inbox()) + " there\n" + ex.Diagnostics(); }, Millis(200));
  const double inbox_at = Seconds(SteadyClock::now() - t0);
  for (const auto& s : senders) {
    WaitForAll(ex, s, ids_of[s], "MOTTATT", Millis(180000));
  }
  const double mottatt_at = Seconds(SteadyClock::now() - t0);
  std::this_thread::sleep_for(Millis(2000));  // time for a duplicate to show up
  ex.CheckAlive();

  std::map<std::string, Files> want;
  for (const auto& [id, t] : truth) want[id] = t.message.files;
  const Strings inbox_problems = InboxDifferences(ex, receiver, want);
  INFO("inbox differences:\n" << FirstLines(inbox_problems));
  CHECK(inbox_problems.empty());

  Strings status_problems;
  for (const auto& s : senders) {
    // Every folder was taken in; none refused into .failed, none left behind.
    for (const auto& name : ListDir(ex.Outbox(s), /*include_hidden=*/true)) {
      status_problems.push_back(s + ": outbox still holds " + name);
    }
    const auto by_id = ByMessageId(ex.Status(s));
    if (by_id.size() != ids_of[s].size()) {
      status_problems.push_back(s + " lists " + std::to_string(by_id.size()) + " messages, not " +
                                std::to_string(ids_of[s].size()));
    }
    for (const auto& id : ids_of[s]) {
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        status_problems.push_back(s + ": " + id + " not listed");
      } else if (it->second.size() != 1) {
        status_problems.push_back(s + ": " + id + " listed " + std::to_string(it->second.size()) +
                                  " times");
      } else if (it->second.front().value("status", "") != "MOTTATT" ||
                 it->second.front().value("direction", "") != "OUTGOING") {
        status_problems.push_back(s + ": " + it->second.front().dump());
      }
    }
  }
  const auto at_receiver = ByMessageId(ex.Status(receiver));
  if (at_receiver.size() != total) {
    status_problems.push_back("receiver lists " + std::to_string(at_receiver.size()) +
                              " messages, not " + std::to_string(total));
  }
  for (const auto& [id, t] : truth) {
    auto it = at_receiver.find(id);
    if (it == at_receiver.end()) {
      status_problems.push_back("receiver: " + id + " not listed");
    } else if (it->second.size() != 1 ||
               it->second.front().value("status", "") != "INNKOMMENDE_MOTTATT" ||
               it->second.front().value("sender", "") != "0192:" + t.sender) {
      status_problems.push_back("receiver: " + it->second.front().dump());
    }
  }
  INFO("status differences:\n" << FirstLines(status_problems));
  CHECK(status_problems.empty());

  // Every store is intact after the kills, checked with everything stopped.
  for (const auto& org : agencies) ex.ip(org).Stop();
  ex.broker().Stop();
  ex.registry().Stop();
  for (const auto& path : SqliteFiles(ex, broker_on_pg)) {
    INFO("PRAGMA integrity_check of " << path);
    CHECK(IntegrityProblem(path) == "");
  }
  CHECK(SqliteFiles(ex, broker_on_pg).size() == (broker_on_pg ? 1 : 2) + agencies.size());

  // How often the crashes made the de-duplication work (for the record, not asserted: it
  // depends on where the kills landed).
  const size_t resubmitted =
      CountOccurrences(ReadFileOrEmpty(ex.broker().log_path()), "submitted again");
  const size_t redelivered =
      CountOccurrences(ReadFileOrEmpty(ex.ip(receiver).log_path()), "delivered again");
  std::printf(
      "crash test: %zu duplicate submits answered from the broker's dedup record, %zu "
      "redeliveries answered from the receiver's store\n",
      resubmitted, redelivered);
  std::printf(
      "crash test: seed %u, %zu messages (%d per sender), %zu bursts, %d broker + %d receiver "
      "SIGKILLs\n"
      "crash test: all dropped after %.1f s, all in the inbox after %.1f s (%.1f messages/s), "
      "all MOTTATT at the senders after %.1f s (%.1f messages/s end to end)\n",
      seed, total, per_sender, bursts.size(), broker_kills, receiver_kills, dropped_at, inbox_at,
      static_cast<double>(total) / inbox_at, mottatt_at, static_cast<double>(total) / mottatt_at);
  std::fflush(stdout);
}

TEST_CASE(
    "crash: messages from 4 senders survive SIGKILLs of the broker and the receiver and "
    "arrive exactly once",
    "[integration][reliability][crash]") {
  CrashTest(nullptr);
}

// The same with the broker's store on a real PostgreSQL 15 (started by the test): each SIGKILL
// of the broker drops its connection, possibly with a COMMIT in flight.
TEST_CASE(
    "crash on PostgreSQL: messages from 4 senders survive SIGKILLs of the broker and the "
    "receiver and arrive exactly once",
    "[integration][reliability][crash][pg]") {
  PostgresServer pg;
  CrashTest(&pg);
}

// ---------------------------------------------------------------------------------------------
// 2. A receiver that is down

TEST_CASE("a receiver that is down while messages are sent gets them all when it starts",
          "[integration][reliability]") {
  ExchangeOptions options;
  options.start_ips = false;
  Exchange ex(options);
  ex.StartIp(kAgencyA);  // the receiver, B, is registered but not running
  INFO("exchange in " << ex.root());

  constexpr int kMessages = 20;
  std::map<std::string, Files> want;
  Strings ids;
  for (int i = 0; i < kMessages; ++i) {
    Outgoing m = SmallMessage(kAgencyB, NewUuid(), "Mens mottakeren er nede " + std::to_string(i),
                              300 + i, 100 + i);
    ex.DropFolder(kAgencyA, m.folder, m.message_json, m.files);
    want[m.id] = m.files;
    ids.push_back(m.id);
  }
  // The broker has them all (SENDT) and nobody has received any.
  const auto sent = ByMessageId(WaitForAll(ex, kAgencyA, ids, "SENDT", kDefaultWait));
  for (const auto& id : ids) {
    CHECK(sent.at(id).front().value("status", "") == "SENDT");
  }
  CHECK(ListDir(ex.Inbox(kAgencyB)).empty());

  ex.StartIp(kAgencyB);
  const auto received = ByMessageId(WaitForAll(ex, kAgencyA, ids, "MOTTATT", kDefaultWait));
  for (const auto& id : ids) {
    CHECK(Exchange::History(received.at(id).front()) == Strings{"OPPRETTET", "SENDT", "MOTTATT"});
  }
  std::this_thread::sleep_for(Millis(1000));  // time for a duplicate to show up
  const Strings problems = InboxDifferences(ex, kAgencyB, want);
  INFO(FirstLines(problems));
  CHECK(problems.empty());
  const auto at_b = ByMessageId(ex.Status(kAgencyB));
  CHECK(at_b.size() == ids.size());
  for (const auto& id : ids) {
    REQUIRE(at_b.contains(id));
    CHECK(at_b.at(id).size() == 1);
    CHECK(at_b.at(id).front().value("status", "") == "INNKOMMENDE_MOTTATT");
  }
}

// ---------------------------------------------------------------------------------------------
// 3. The broker down

TEST_CASE("with the broker down messages wait as OPPRETTET and go when it is back",
          "[integration][reliability]") {
  Exchange ex;
  INFO("exchange in " << ex.root());
  ex.broker().Kill();

  constexpr int kMessages = 10;
  std::map<std::string, Files> want;
  Strings ids;
  for (int i = 0; i < kMessages; ++i) {
    Outgoing m = SmallMessage(kAgencyB, NewUuid(), "Mens megleren er nede " + std::to_string(i),
                              400 + i, 200 + i);
    ex.DropFolder(kAgencyA, m.folder, m.message_json, m.files);
    want[m.id] = m.files;
    ids.push_back(m.id);
  }
  WaitForAll(ex, kAgencyA, ids, "OPPRETTET", kDefaultWait);
  // Give them time to be sealed and tried; none may get further without a broker.
  std::this_thread::sleep_for(Millis(3000));
  ex.CheckAlive();
  const auto waiting = ByMessageId(ex.Status(kAgencyA));
  for (const auto& id : ids) {
    REQUIRE(waiting.contains(id));
    INFO(waiting.at(id).front().dump(2));
    CHECK(waiting.at(id).front().value("status", "") == "OPPRETTET");
    CHECK(Exchange::History(waiting.at(id).front()) == Strings{"OPPRETTET"});
  }
  CHECK(ListDir(ex.Outbox(kAgencyA)).empty());  // taken in, kept in the store
  CHECK(ListDir(ex.Inbox(kAgencyB)).empty());

  ex.StartBroker();
  const auto done = ByMessageId(WaitForAll(ex, kAgencyA, ids, "MOTTATT", kDefaultWait));
  for (const auto& id : ids) {
    CHECK(Exchange::History(done.at(id).front()) == Strings{"OPPRETTET", "SENDT", "MOTTATT"});
  }
  std::this_thread::sleep_for(Millis(1000));
  const Strings problems = InboxDifferences(ex, kAgencyB, want);
  INFO(FirstLines(problems));
  CHECK(problems.empty());
}

// ---------------------------------------------------------------------------------------------
// 4. Expiry

TEST_CASE("a message to a receiver that never connects ends LEVETID_UTLOPT within one sweep",
          "[integration][reliability]") {
  constexpr int64_t kSweepMs = 500;
  // Scheduling latency on a busy machine: the broker's loop wakes at least every 100 ms.
  constexpr int64_t kSlackMs = 1500;
  ExchangeOptions options;
  options.start_ips = false;
  options.broker_settings = {{"sweep_ms", std::to_string(kSweepMs)}};
  Exchange ex(options);
  ex.StartIp(kAgencyA);  // B is registered, its integration point never runs
  INFO("exchange in " << ex.root());

  const int64_t deadline_ms = NowMs() + 3000;
  Outgoing m = SmallMessage(kAgencyB, NewUuid(), "Har kort levetid", 300, 7);
  nlohmann::json meta = nlohmann::json::parse(m.message_json);
  meta["expectedResponseDateTime"] = FormatTime(deadline_ms);
  ex.DropFolder(kAgencyA, m.folder, meta.dump(2), m.files);

  ex.WaitForStatus(kAgencyA, m.id, "SENDT");
  const nlohmann::json entry = ex.WaitForStatus(kAgencyA, m.id, "LEVETID_UTLOPT", kDefaultWait);
  INFO("sender's entry: " << entry.dump(2));
  CHECK(entry.value("status", "") == "LEVETID_UTLOPT");
  CHECK(Exchange::History(entry) == Strings{"OPPRETTET", "SENDT", "LEVETID_UTLOPT"});
  const nlohmann::json line = HistoryLine(entry, "LEVETID_UTLOPT");
  CHECK(!line.value("description", "").empty());
  const auto expired_at = ParseTime(line.value("lastUpdate", ""));
  REQUIRE(expired_at.has_value());
  INFO("deadline " << FormatTime(deadline_ms) << ", expired at " << FormatTime(*expired_at) << " ("
                   << (*expired_at - deadline_ms) << " ms after)");
  CHECK(*expired_at >= deadline_ms);
  CHECK(*expired_at <= deadline_ms + kSweepMs + kSlackMs);

  // The broker no longer holds it (only its dedup record) and said so.
  const std::string broker_db = ex.root() + "/broker/broker.db";
  CHECK(QueryInt(broker_db, "SELECT count(*) FROM messages WHERE message_id=?", m.id) == 0);
  CHECK(QueryInt(broker_db, "SELECT count(*) FROM seen WHERE message_id=?", m.id) == 1);
  CHECK_THAT(ex.broker().LogSinceStart(), Catch::Matchers::Contains("expired undelivered"));

  // When the receiver finally comes, there is nothing for it.
  ex.StartIp(kAgencyB);
  std::this_thread::sleep_for(Millis(2000));
  ex.CheckAlive();
  CHECK(ListDir(ex.Inbox(kAgencyB), /*include_hidden=*/true).empty());
  CHECK(ex.Status(kAgencyB).empty());
  CHECK(ex.Status(kAgencyA).size() == 1);
}

// ---------------------------------------------------------------------------------------------
// 5. A signature the receiver cannot verify

TEST_CASE("a message signed with a key not in the registry ends FEIL at the sender with a reason",
          "[integration][reliability]") {
  Exchange ex;
  INFO("exchange in " << ex.root());

  // A second, equally trusted signing certificate for A that the registry does not know.
  const std::string dir = ex.AgencyDir(kAgencyA);
  const CommandResult issued = RunCommand(
      {BUD_SOURCE_DIR "/scripts/dev-ca", "issue", ex.root() + "/ca", kAgencyA, dir + "/keys2"},
      Millis(60000));
  INFO(issued.out << issued.err);
  REQUIRE(issued.exit_code == 0);

  ex.ip(kAgencyA).Stop();
  std::string config = ReadFile(ex.IpConfig(kAgencyA));
  for (const std::string key : {"signing_key", "signing_cert"}) {
    const std::string file = key == "signing_key" ? "signing.key" : "signing.pem";
    const std::string old_line = key + " = \"keys/" + file + "\"";
    const auto at = config.find(old_line);
    INFO("ip.toml:\n" << config);
    REQUIRE(at != std::string::npos);
    config.replace(at, old_line.size(), key + " = \"keys2/" + file + "\"");
  }
  WriteFile(ex.IpConfig(kAgencyA), config);
  ex.StartIp(kAgencyA);

  Outgoing m = SmallMessage(kAgencyB, NewUuid(), "Signert med feil nøkkel", 300, 11);
  ex.DropFolder(kAgencyA, m.folder, m.message_json, m.files);
  const nlohmann::json out = ex.WaitForStatus(kAgencyA, m.id, "FEIL");
  INFO("sender's entry: " << out.dump(2));
  CHECK(out.value("status", "") == "FEIL");
  const std::string reason = HistoryLine(out, "FEIL").value("description", "");
  CHECK(!reason.empty());
  CHECK_THAT(reason, Catch::Matchers::Contains("ENVELOPE_REJECTED"));

  // The receiver kept the specific reason for itself and wrote nothing.
  const nlohmann::json in = ex.WaitForStatus(kAgencyB, m.id, "FEIL");
  INFO("receiver's entry: " << in.dump(2));
  CHECK(in.value("direction", "") == "INCOMING");
  CHECK_THAT(HistoryLine(in, "FEIL").value("description", ""),
             Catch::Matchers::StartsWith("BAD_SIGNATURE"));
  std::this_thread::sleep_for(Millis(1000));
  CHECK(ListDir(ex.Inbox(kAgencyB)).empty());
  CHECK(ListDir(ex.Inbox(kAgencyB) + "/.tmp", /*include_hidden=*/true).empty());
}

// ---------------------------------------------------------------------------------------------
// 6. Taken out of the inbox

TEST_CASE("removing the inbox folder makes the sender see LEVERT", "[integration][reliability]") {
  Exchange ex;
  INFO("exchange in " << ex.root());
  Outgoing m = SmallMessage(kAgencyB, NewUuid(), "Hentes av arkivet", 500, 13);
  ex.DropFolder(kAgencyA, m.folder, m.message_json, m.files);
  ex.WaitForInbox(kAgencyB, m.id);
  ex.WaitForStatus(kAgencyA, m.id, "MOTTATT");
  ex.WaitForStatus(kAgencyB, m.id, "INNKOMMENDE_MOTTATT");

  fs::remove_all(ex.Inbox(kAgencyB) + "/" + m.id);  // the archive system took it

  const nlohmann::json in = ex.WaitForStatus(kAgencyB, m.id, "INNKOMMENDE_LEVERT");
  CHECK(in.value("status", "") == "INNKOMMENDE_LEVERT");
  CHECK(Exchange::History(in) == Strings{"INNKOMMENDE_MOTTATT", "INNKOMMENDE_LEVERT"});
  const nlohmann::json out = ex.WaitForStatus(kAgencyA, m.id, "LEVERT");
  INFO("sender's entry: " << out.dump(2));
  CHECK(out.value("status", "") == "LEVERT");
  CHECK(Exchange::History(out) == Strings{"OPPRETTET", "SENDT", "MOTTATT", "LEVERT"});
  CHECK(ListDir(ex.Inbox(kAgencyB)).empty());  // not delivered again
}

TEST_CASE("an inbox that cannot be written acknowledges nothing; the message arrives once "
          "after the repair",
          "[integration][reliability]") {
  Exchange ex;  // the broker redelivers what is not acknowledged within 5 s
  INFO("exchange in " << ex.root());
  // inbox/.tmp is where every message is written first: a file there breaks every write.
  const std::string blocker = ex.Inbox(kAgencyB) + "/.tmp";
  fs::remove_all(blocker);
  { std::ofstream(blocker) << "not a directory\n"; }
  Outgoing m = SmallMessage(kAgencyB, NewUuid(), "Innboksen er i ustand", 500, 17);
  ex.DropFolder(kAgencyA, m.folder, m.message_json, m.files);
  ex.ip(kAgencyB).WaitForLog("cannot write the inbox");
  ex.WaitForStatus(kAgencyA, m.id, "SENDT");
  CHECK(ex.Status(kAgencyB).empty());  // nothing recorded as received
  CHECK(!fs::exists(ex.Inbox(kAgencyB) + "/" + m.id));
  const nlohmann::json waiting = ex.WaitForStatus(kAgencyA, m.id, "SENDT");
  CHECK(Exchange::History(waiting) == Strings{"OPPRETTET", "SENDT"});

  fs::remove(blocker);  // repaired
  ex.WaitForInbox(kAgencyB, m.id);
  ex.WaitForStatus(kAgencyA, m.id, "MOTTATT");
  for (const auto& [name, bytes] : m.files) {
    CHECK(ReadFile(ex.Inbox(kAgencyB) + "/" + m.id + "/" + name) == bytes);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  CHECK(ListDir(ex.Inbox(kAgencyB)) == Strings{m.id});
  CHECK(ListDir(ex.Inbox(kAgencyB) + "/.tmp", /*include_hidden=*/true).empty());
  const nlohmann::json in = ex.WaitForStatus(kAgencyB, m.id, "INNKOMMENDE_MOTTATT");
  CHECK(Exchange::History(in) == Strings{"INNKOMMENDE_MOTTATT"});
}

// ---------------------------------------------------------------------------------------------
// 7. Disk full

namespace {

// A broker store capped at 600 KB and messages with 100 KB attachments: about five fit.
constexpr const char* kSmallStoreBytes = "600000";

// What FillBrokerStore dropped.
struct FilledStore {
  std::map<std::string, Files> want;  // every message dropped: id -> attachments
  Strings accepted;                   // SENDT before the store was full
  std::string refused;                // the first one the broker answered with retry later
};

Outgoing BigMessage(const std::string& receiver, int i) {
  Outgoing m = SmallMessage(receiver, NewUuid(), "Stort vedlegg " + std::to_string(i), 0, 0);
  m.files = {{"vedlegg.bin", SeededBytes(100 * 1024, 300 + i)},
             {"notat.txt", "vedlegg " + std::to_string(i) + "\n"}};
  return m;
}

// Drops messages with 100 KB attachments from `from` (running) to `to` (not running) one at a
// time, each awaited until it is SENDT or refused with "retry later", until the first refusal.
FilledStore FillBrokerStore(Exchange& ex, const std::string& from, const std::string& to) {
  constexpr int kMaxMessages = 15;
  FilledStore out;
  for (int i = 0; i < kMaxMessages && out.refused.empty(); ++i) {
    Outgoing m = BigMessage(to, i);
    ex.DropFolder(from, m.folder, m.message_json, m.files);
    out.want[m.id] = m.files;
    bool sent = false;
    WaitUntil(
        "message " + std::to_string(i) + " to be SENDT or refused with retry later", kDefaultWait,
        [&] {
          ex.CheckAlive();
          for (const auto& e : Exchange::Find(ex.Status(from), m.id)) {
            if (HasInHistory(e, "SENDT")) sent = true;
          }
          return sent || ex.ip(from).LogSinceStart().find("retry later") != std::string::npos;
        },
        [&] { return ex.Diagnostics(); }, Millis(200));
    if (sent) {
      out.accepted.push_back(m.id);
    } else {
      out.refused = m.id;
    }
  }
  return out;
}

// Log lines of `p`'s current run that contain `text`.
Strings LogLines(Process& p, const std::string& text) {
  Strings out;
  const std::string log = p.LogSinceStart();
  size_t begin = 0;
  while (begin < log.size()) {
    size_t end = log.find('\n', begin);
    if (end == std::string::npos) end = log.size();
    const std::string line = log.substr(begin, end - begin);
    if (line.find(text) != std::string::npos) out.push_back(line);
    begin = end + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("a full broker store answers retry later, loses nothing and recovers",
          "[integration][reliability]") {
  ExchangeOptions options;
  options.start_ips = false;
  options.broker_settings = {{"store_max_bytes", kSmallStoreBytes}};
  Exchange ex(options);
  ex.StartIp(kAgencyA);  // B stays down, so nothing leaves the broker's store
  INFO("exchange in " << ex.root());

  FilledStore filled = FillBrokerStore(ex, kAgencyA, kAgencyB);
  INFO(filled.accepted.size() << " accepted before the store was full");
  REQUIRE(!filled.refused.empty());  // the store did fill up
  CHECK(!filled.accepted.empty());
  // Two more queue up behind the refused one.
  Strings waiting = {filled.refused};
  for (int i = 100; i < 102; ++i) {
    Outgoing m = BigMessage(kAgencyB, i);
    ex.DropFolder(kAgencyA, m.folder, m.message_json, m.files);
    filled.want[m.id] = m.files;
    waiting.push_back(m.id);
  }
  Strings ids;
  for (const auto& [id, files] : filled.want) ids.push_back(id);

  // They wait as OPPRETTET (never FEIL) while the sender retries, and the broker runs on.
  std::this_thread::sleep_for(Millis(3000));
  ex.CheckAlive();
  CHECK(ex.broker().Running());
  CHECK_THAT(ex.ip(kAgencyA).LogSinceStart(), Catch::Matchers::Contains("retry later"));
  CHECK_THAT(ex.broker().LogSinceStart(), Catch::Matchers::Contains("DISK_FULL"));
  const auto at_a = ByMessageId(ex.Status(kAgencyA));
  for (const auto& id : waiting) {
    REQUIRE(at_a.contains(id));
    INFO(at_a.at(id).front().dump(2));
    CHECK(at_a.at(id).front().value("status", "") == "OPPRETTET");
    CHECK(!HasInHistory(at_a.at(id).front(), "FEIL"));
  }

  // The receiver drains the queue, which frees the space for the rest.
  ex.StartIp(kAgencyB);
  WaitForAll(ex, kAgencyA, ids, "MOTTATT", Millis(120000));
  std::this_thread::sleep_for(Millis(1000));
  const Strings problems = InboxDifferences(ex, kAgencyB, filled.want);
  INFO(FirstLines(problems));
  CHECK(problems.empty());
  const auto at_b = ByMessageId(ex.Status(kAgencyB));
  CHECK(at_b.size() == ids.size());
  for (const auto& id : ids) {
    REQUIRE(at_b.contains(id));
    CHECK(at_b.at(id).size() == 1);
  }
  CHECK(ex.broker().Running());
  CHECK(IntegrityProblem(ex.root() + "/broker/broker.db") == "");
}

// Regression: Engine::OnSubmitReply doubled the submit back-off once per RETRY_LATER *reply*, so
// one round of k refused submits paused the sender 0.5 s * 2^(k-1) (capped at 30 s) instead of
// doubling once per round; messages then waited up to 30 s after the broker had room again.
TEST_CASE("after a full broker store has room again, waiting messages go within a back-off step",
          "[integration][reliability]") {
  ExchangeOptions options;
  options.start_ips = false;
  options.broker_settings = {{"store_max_bytes", kSmallStoreBytes}};
  Exchange ex(options);
  ex.StartIp(kAgencyA);
  INFO("exchange in " << ex.root());

  FilledStore filled = FillBrokerStore(ex, kAgencyA, kAgencyB);
  REQUIRE(!filled.refused.empty());
  REQUIRE(filled.accepted.size() >= 4);  // so the four waiting ones fit once it is drained
  // Three more taken in while A is down, so A submits all four waiting ones in its first round
  // after the restart (its back-off starts again at 0.5 s).
  ex.ip(kAgencyA).Stop();
  Strings waiting = {filled.refused};
  for (int i = 100; i < 103; ++i) {
    Outgoing m = BigMessage(kAgencyB, i);
    ex.DropFolder(kAgencyA, m.folder, m.message_json, m.files);
    filled.want[m.id] = m.files;
    waiting.push_back(m.id);
  }
  ex.StartIp(kAgencyA);
  const auto restarted = SteadyClock::now();

  // The store stays full for 6 s, then the receiver drains it.
  std::this_thread::sleep_for(Millis(6000));
  ex.CheckAlive();
  ex.StartIp(kAgencyB);
  WaitForAll(ex, kAgencyA, filled.accepted, "MOTTATT", kDefaultWait);
  const auto room = SteadyClock::now();  // (a little after) the broker deleted them
  WaitForAll(ex, kAgencyA, waiting, "SENDT", Millis(120000));
  const auto sent = SteadyClock::now();

  // With a back-off that doubles once per round from 0.5 s, the attempt after the store had
  // room comes at most about as long after it as the store had been full before it; 5 s slack.
  const double full_for = Seconds(room - restarted);
  const double waited = Seconds(sent - room);
  INFO("store full for " << full_for << " s after A's restart; the waiting messages were "
                         << "accepted " << waited << " s after it had room; A's back-off:\n"
                         << FirstLines(LogLines(ex.ip(kAgencyA), "pausing submits"), 40));
  CHECK(waited <= full_for + 5.0);

  WaitForAll(ex, kAgencyA, waiting, "MOTTATT", kDefaultWait);
  const Strings problems = InboxDifferences(ex, kAgencyB, filled.want);
  INFO(FirstLines(problems));
  CHECK(problems.empty());
}

// ---------------------------------------------------------------------------------------------
// 8. The same envelope submitted again

TEST_CASE("the same envelope submitted twice, also across a broker restart, is delivered once",
          "[integration][reliability]") {
  ExchangeOptions options;
  options.start_ips = false;
  Exchange ex(options);
  ex.StartIp(kAgencyB);  // A is spoken for by the raw client below
  INFO("exchange in " << ex.root());

  // A real envelope from A to B, sealed as an integration point would.
  const std::string a_keys = ex.AgencyDir(kAgencyA) + "/keys";
  auto signing_key = crypto::LoadPrivateKeyFile(a_keys + "/signing.key");
  auto signing_cert = crypto::LoadCertFile(a_keys + "/signing.pem");
  auto b_cert = crypto::LoadCertFile(ex.AgencyDir(kAgencyB) + "/keys/encryption.pem");
  REQUIRE(signing_key.ok());
  REQUIRE(signing_cert.ok());
  REQUIRE(b_cert.ok());

  const std::string id = NewUuid();
  const std::string conversation = NewUuid();
  const Files files = {{"brev.txt", "Sendt tre ganger, mottatt én gang.\n"},
                       {"data.bin", SeededBytes(4096, 17)}};
  wire::Header h;
  h.set_message_id(id);
  h.set_conversation_id(conversation);
  h.set_sender(std::string("0192:") + kAgencyA);
  h.set_receiver(std::string("0192:") + kAgencyB);
  h.set_process(kProcess);
  h.set_document_type(kDocumentType);
  h.set_created_unix_ms(NowMs());
  h.set_expires_unix_ms(NowMs() + 3600 * 1000);
  wire::Payload p;
  p.set_message_id(id);
  p.set_sender(h.sender());
  p.set_receiver(h.receiver());
  p.set_conversation_id(conversation);
  p.set_title("Innsendt tre ganger");
  nlohmann::json meta = Exchange::Metadata(kAgencyB);
  meta["messageId"] = id;
  p.set_metadata_json(meta.dump());
  for (const auto& [name, bytes] : files) {
    auto* a = p.add_attachments();
    a->set_name(name);
    a->set_media_type("application/octet-stream");
    a->set_data(bytes);
  }
  auto envelope = crypto::Seal(h, p, {signing_key->get(), signing_cert->get()}, b_cert->get());
  INFO((envelope.ok() ? "" : envelope.status().ToString()));
  REQUIRE(envelope.ok());

  zmq::context_t ctx(1);
  {
    RawBrokerClient client(ctx, ex, kAgencyA);
    client.Connect();
    for (int i = 0; i < 2; ++i) {
      const wire::SubmitReply r = client.Submit(*envelope, id);
      INFO("submit " << i + 1 << ": " << r.ShortDebugString());
      CHECK(r.code() == wire::ACCEPTED);
    }
  }
  // The broker writes its log lines after the batch's answers (docs/operating.md): a SIGKILL in
  // that gap loses them, so the kill waits for the duplicate's line.
  WaitUntil("the duplicate's log line", kDefaultWait, [&] {
    return CountOccurrences(ReadFileOrEmpty(ex.broker().log_path()),
                            "submitted again: already stored") == 1;
  });
  ex.broker().Kill();
  ex.StartBroker();
  {
    RawBrokerClient client(ctx, ex, kAgencyA);
    client.Connect();
    const wire::SubmitReply r = client.Submit(*envelope, id);
    INFO("submit after the restart: " << r.ShortDebugString());
    CHECK(r.code() == wire::ACCEPTED);
  }

  ex.WaitForInbox(kAgencyB, id);
  ex.WaitForStatus(kAgencyB, id, "INNKOMMENDE_MOTTATT");
  std::this_thread::sleep_for(Millis(2000));  // time for a second copy to show up
  ex.CheckAlive();
  const Strings problems = InboxDifferences(ex, kAgencyB, {{id, files}});
  INFO(FirstLines(problems));
  CHECK(problems.empty());
  const nlohmann::json at_b = ex.Status(kAgencyB);
  INFO("receiver's status: " << at_b.dump(2));
  CHECK(at_b.size() == 1);
  REQUIRE(Exchange::Find(at_b, id).size() == 1);
  CHECK(Exchange::History(Exchange::Find(at_b, id).front()) == Strings{"INNKOMMENDE_MOTTATT"});

  // Stored once: one dedup record, the queue empty after delivery, duplicates logged as such.
  const std::string broker_db = ex.root() + "/broker/broker.db";
  CHECK(QueryInt(broker_db, "SELECT count(*) FROM seen WHERE message_id=?", id) == 1);
  CHECK(QueryInt(broker_db, "SELECT count(*) FROM messages WHERE message_id=?", id) == 0);
  const std::string broker_log = ReadFile(ex.broker().log_path());
  // The broker's grouped lines: "<n> message(s) from <sender> to <receiver> accepted: <id> (...)".
  size_t accepted_lines = 0;
  std::istringstream lines(broker_log);
  for (std::string line; std::getline(lines, line);) {
    accepted_lines += line.find(" from 0192:" + std::string(kAgencyA) + " to 0192:" + kAgencyB +
                                " accepted: ") != std::string::npos &&
                      line.find(id + " (") != std::string::npos;
  }
  CHECK(accepted_lines == 1);
  CHECK(CountOccurrences(broker_log, "submitted again: already stored") == 2);
}


// ---------------------------------------------------------------------------------------------
// 9. ACCEPTED only after the commit

// The broker must never answer ACCEPTED before the commit holding the message: a SIGKILL right
// after any ACCEPTED must find every accepted message in the store it leaves behind. Many small
// group commits (max_batch 16) are in flight when the kill lands, at a seeded point of each of
// five rounds. (A SIGKILL keeps what reached the kernel, so this checks answer-after-commit; that
// each commit is fsynced before it returns is synchronous=FULL, checked in broker_tests.)
TEST_CASE("a broker SIGKILLed right after answering ACCEPTED has every accepted message stored",
          "[integration][reliability][durability]") {
  ExchangeOptions options;
  options.start_ips = false;
  options.broker_settings = {{"max_batch", "16"}};
  Exchange ex(options);
  INFO("exchange in " << ex.root());
  const std::string broker_db = ex.root() + "/broker/broker.db";
  zmq::context_t ctx(1);
  std::mt19937 rng(20261129);
  std::set<std::string> accepted;
  for (int round = 0; round < 5; ++round) {
    {
      RawBrokerClient client(ctx, ex, kAgencyA);
      client.Connect();
      for (int i = 0; i < 400; ++i) client.SubmitAsync(UnsealedEnvelope(NewUuid(), kAgencyA, kAgencyB));
      const uint32_t kill_after = Uniform(rng, 1, 300);
      uint32_t answered = 0;
      auto take = [&](const wire::BrokerMessage& m) {
        if (!m.has_submit_reply()) return;
        INFO(m.ShortDebugString());
        REQUIRE(m.submit_reply().code() == wire::ACCEPTED);
        accepted.insert(m.submit_reply().message_id());
        ++answered;
      };
      const auto deadline = SteadyClock::now() + kDefaultWait;
      while (answered < kill_after) {
        auto m = client.Next(deadline);
        REQUIRE(m.has_value());
        take(*m);
      }
      ex.broker().Kill();
      // Answers the broker sent before it died may still wait in our socket: they count too.
      while (auto m = client.Next(SteadyClock::now() + Millis(300))) take(*m);
      INFO("round " << round << ": killed after " << kill_after << " answers, " << answered
                    << " answers in all");
    }
    for (const auto& id : accepted) {
      INFO("message " << id << " was ACCEPTED");
      REQUIRE(QueryInt(broker_db, "SELECT count(*) FROM messages WHERE message_id=?", id) == 1);
    }
    ex.StartBroker();
  }
  CHECK(accepted.size() >= 5);
  CHECK(IntegrityProblem(broker_db).empty());
}

// ---------------------------------------------------------------------------------------------
// 10. ACCEPTED only after the fsync

namespace {

// One system call as strace -f -yy printed it: the thread, the call, its first argument (the fd
// with what it is), its result, and the lines where it began and ended (a call another thread
// interrupted is printed "<unfinished ...>" and later "<... name resumed>").
struct Traced {
  std::string tid, call, fd;
  int64_t result = 0;
  size_t begin = 0, end = 0;
};

std::vector<Traced> ParseStrace(const std::string& text) {
  std::vector<Traced> out;
  std::map<std::string, Traced> open;  // by thread
  auto result_of = [](const std::string& line) -> int64_t {
    const size_t eq = line.rfind(") = ");
    return eq == std::string::npos ? -1 : std::strtoll(line.c_str() + eq + 4, nullptr, 10);
  };
  std::istringstream in(text);
  std::string line;
  for (size_t n = 0; std::getline(in, line); ++n) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    const std::string tid = line.substr(0, space);
    // strace pads the thread id to 5 columns: "5900  fdatasync(...", "12345 fdatasync(...".
    const size_t call_at = line.find_first_not_of(' ', space);
    if (call_at == std::string::npos) continue;
    const std::string rest = line.substr(call_at);
    if (rest.rfind("<... ", 0) == 0) {  // "<... fdatasync resumed>) = 0"
      auto it = open.find(tid);
      if (it == open.end()) continue;
      it->second.result = result_of(rest);
      it->second.end = n;
      out.push_back(it->second);
      open.erase(it);
      continue;
    }
    const size_t paren = rest.find('(');
    if (paren == std::string::npos) continue;  // "+++ exited +++", signals
    Traced t;
    t.tid = tid;
    t.call = rest.substr(0, paren);
    // The first argument "6</path>" or "19<TCP:[a:1->b:2]>" ends at a '>' followed by ',', ')'
    // or ' ' (the "->" inside a connection is followed by an address).
    size_t fd_end = std::string::npos;
    for (size_t i = rest.find('>', paren); i != std::string::npos; i = rest.find('>', i + 1)) {
      if (i + 1 == rest.size() || rest[i + 1] == ',' || rest[i + 1] == ')' || rest[i + 1] == ' ') {
        fd_end = i;
        break;
      }
    }
    t.fd = fd_end == std::string::npos ? "" : rest.substr(paren + 1, fd_end - paren);
    t.begin = n;
    if (rest.find("<unfinished ...>") != std::string::npos) {
      open[tid] = t;
      continue;
    }
    t.result = result_of(rest);
    t.end = n;
    out.push_back(t);
  }
  return out;
}

// The process a tracer started: its only child (/proc/<pid>/task/<pid>/children), or -1.
pid_t TracedChild(pid_t tracer) {
  std::ifstream in("/proc/" + std::to_string(tracer) + "/task/" + std::to_string(tracer) +
                   "/children");
  long child = -1;
  return in >> child ? static_cast<pid_t>(child) : -1;
}

// strace 6.1 detaches from its tracee when it is killed, so killing the wrapper (which is what
// the harness stops) would leave the broker running. This stops the broker itself: SIGTERM (a
// clean stop, so strace writes the whole trace and exits with it) and, on the way out of a failed
// test, SIGKILL.
class TracedBroker {
 public:
  explicit TracedBroker(pid_t pid) : pid_(pid) {}
  ~TracedBroker() {
    if (pid_ > 0) ::kill(pid_, SIGKILL);
  }
  TracedBroker(const TracedBroker&) = delete;
  TracedBroker& operator=(const TracedBroker&) = delete;
  // SIGTERM, then waits (bounded) for the tracer to exit with it.
  void Stop(Process& tracer) {
    REQUIRE(pid_ > 0);
    ::kill(pid_, SIGTERM);
    const auto deadline = SteadyClock::now() + kDefaultWait;
    while (tracer.Running() && SteadyClock::now() < deadline) {
      std::this_thread::sleep_for(Millis(20));
    }
    REQUIRE_FALSE(tracer.Running());
    tracer.Stop();  // already gone: marks it as stopped on purpose
    pid_ = -1;
  }

 private:
  pid_t pid_;
};

}  // namespace

// The parser itself, on lines as strace prints them: short thread ids padded, a call another
// thread interrupted, a failed call.
TEST_CASE("the strace reader pairs interrupted calls and reads padded thread ids",
          "[integration][reliability]") {
  const std::string text =
      "5900  fdatasync(6</d/broker.db-wal> <unfinished ...>\n"
      "12345 sendto(19<TCP:[127.0.0.1:34299->127.0.0.1:55922]>, \"\"..., 53, 0, NULL, 0) = 53\n"
      "5900  <... fdatasync resumed>) = 0\n"
      "12345 recvfrom(19<TCP:[127.0.0.1:34299->127.0.0.1:55922]>, 0x7f, 2, 0, NULL, NULL) = -1 "
      "EAGAIN (Resource temporarily unavailable)\n"
      "5900  +++ exited with 0 +++\n";
  const std::vector<Traced> calls = ParseStrace(text);
  REQUIRE(calls.size() == 3);
  CHECK(calls[0].call == "sendto");
  CHECK(calls[0].tid == "12345");
  CHECK(calls[0].fd == "19<TCP:[127.0.0.1:34299->127.0.0.1:55922]>");
  CHECK(calls[0].result == 53);
  CHECK(calls[1].call == "fdatasync");
  CHECK(calls[1].fd == "6</d/broker.db-wal>");
  CHECK(calls[1].begin == 0);
  CHECK(calls[1].end == 2);
  CHECK(calls[1].result == 0);
  CHECK(calls[2].call == "recvfrom");
  CHECK(calls[2].result == -1);
}

// The broker must not answer ACCEPTED before the fsync of the commit holding the message (test 9
// shows the answer comes after the commit; this shows the commit's fdatasync of the WAL comes
// before the answer). The broker runs under strace; a client submits one message at a time, so
// for each answer the trace must show: the submit read from the client's connection, then a write
// to broker.db-wal, then an fdatasync of it that returned, then the answer written to the client's
// connection.
TEST_CASE("the broker's WAL is fdatasynced between reading each submit and sending its ACCEPTED",
          "[integration][reliability][durability]") {
  const std::string strace = "/usr/bin/strace";
  INFO("scripts/setup --test-tools installs strace");
  REQUIRE(fs::exists(strace));
  TempDir traces;
  const std::string trace_file = traces / "broker.strace";
  ExchangeOptions options;
  options.start_ips = false;
  options.broker_wrapper = {
      strace, "-f", "-qq",      "-yy", "-s",
      "0",    "-o", trace_file, "-e",  "trace=fdatasync,fsync,recvfrom,sendto,pwrite64"};
  Exchange ex(options);
  TracedBroker broker(TracedChild(ex.broker().pid()));
  INFO("exchange in " << ex.root() << ", trace " << trace_file);
  const std::string endpoint = ex.broker_endpoint();
  const std::string port = endpoint.substr(endpoint.rfind(':') + 1);
  // The client's connection as -yy prints the broker's side of it: "TCP:[127.0.0.1:<port>->".
  const std::string client_side = "TCP:[127.0.0.1:" + port + "->";

  zmq::context_t ctx(1);
  constexpr int kMessages = 20;
  {
    RawBrokerClient client(ctx, ex, kAgencyA);
    client.Connect();
    for (int i = 0; i < kMessages; ++i) {
      const std::string id = NewUuid();
      const wire::SubmitReply r = client.Submit(UnsealedEnvelope(id, kAgencyA, kAgencyB), id);
      INFO(r.ShortDebugString());
      REQUIRE(r.code() == wire::ACCEPTED);
    }
  }
  broker.Stop(ex.broker());  // strace writes out the rest of the trace when the broker is gone

  const std::string text = ReadFile(trace_file);
  const std::vector<Traced> calls = ParseStrace(text);
  std::vector<Traced> reads, sends, syncs, wal_writes;
  for (const auto& c : calls) {
    if (c.call == "pwrite64" && c.result > 0 && c.fd.find("broker.db-wal") != std::string::npos) {
      wal_writes.push_back(c);
    } else if (c.fd.find(client_side) != std::string::npos && c.call == "recvfrom" &&
               c.result > 0) {
      reads.push_back(c);
    } else if (c.fd.find(client_side) != std::string::npos && c.call == "sendto") {
      sends.push_back(c);
    } else if ((c.call == "fdatasync" || c.call == "fsync") && c.result == 0 &&
               c.fd.find("broker.db-wal") != std::string::npos) {
      syncs.push_back(c);
    }
  }
  INFO(reads.size() << " reads, " << sends.size() << " sends to the client, " << syncs.size()
                    << " WAL syncs, " << wal_writes.size() << " WAL writes; trace begins:\n"
                    << text.substr(0, 3000));
  // The last kMessages writes to the client are the answers (before them: the ZMTP and CURVE
  // handshake and the Welcome; the client sends no heartbeats).
  REQUIRE(sends.size() >= static_cast<size_t>(kMessages) + 1);
  REQUIRE(syncs.size() >= static_cast<size_t>(kMessages));
  for (size_t i = sends.size() - kMessages; i < sends.size(); ++i) {
    const Traced& answer = sends[i];
    const Traced* submit = nullptr;  // the last read from the client before the answer
    for (const auto& r : reads) {
      if (r.end < answer.begin) submit = &r;
    }
    REQUIRE(submit != nullptr);
    // The commit's frames written to the WAL (gathered into few writes, storage::GatheredWritesVfs)
    // after the submit was read, then synced, then the answer.
    const bool synced = std::any_of(syncs.begin(), syncs.end(), [&](const Traced& s) {
      return s.begin > submit->end && s.end < answer.begin &&
             std::any_of(wal_writes.begin(), wal_writes.end(),
                         [&](const Traced& w) { return w.begin > submit->end && w.end < s.begin; });
    });
    INFO("answer " << i << ": submit read at trace line " << submit->end + 1
                   << ", answer written at line " << answer.begin + 1);
    CHECK(synced);
  }
}

}  // namespace bud::test
