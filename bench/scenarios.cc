// Scenarios against Budstikke's own processes. See scenarios.h.
#include "bench/scenarios.h"

#include <fmt/format.h>
#include <httplib.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <zmq.hpp>

#include "bench/broker_link.h"
#include "common/clock.h"
#include "common/crypto/envelope.h"
#include "common/uuid.h"
#include "integration-point/store/point_store.h"

namespace bud::bench {

namespace fs = std::filesystem;
using test::kAgencyA;
using test::kAgencyB;

namespace {

// One process-wide ZeroMQ context (STYLE.md: one per process).
zmq::context_t& Context() {
  static zmq::context_t ctx(1);
  return ctx;
}

constexpr int kReceiverCredit = 100;
// At a fixed rate, submits wait for company in one Batch (at most kLingerItems, kLingerNs) while
// at least kLingerAbove earlier ones await their answer.
constexpr int kLingerAbove = 16;
constexpr int kLingerItems = 64;
constexpr int64_t kLingerNs = 1'000'000;
constexpr size_t kOpenLoopCap = 20000;  // open loop: submits awaiting ACCEPTED at most

struct LoadOutcome {
  int64_t submitted = 0;
  int64_t accepted = 0;
  int64_t completed = 0;  // pass-through: reported MOTTATT and answered ok
  int64_t start_ns = 0;
  int64_t last_accept_ns = 0;
  int64_t last_complete_ns = 0;
  Latencies accept_latency;   // submit -> ACCEPTED
  Latencies deliver_latency;  // submit -> Deliver at the receiver
  std::string problem;        // the first answer that was not ACCEPTED / ok
  int64_t problems = 0;
  bool saturated = false;
};

std::string Wire(const char* org) { return std::string("0192:") + org; }

// Submits from `sender` as `spec` says and, with a `receiver`, takes every delivery and reports
// it MOTTATT. Returns when everything submitted is answered (and, with a receiver, delivered and
// reported). Throws when that takes far longer than it should.
LoadOutcome RunLoad(BrokerLink& sender, EnvelopeMaker& maker, const LoadSpec& spec,
                    BrokerLink* receiver) {
  LoadOutcome out;
  std::unordered_map<std::string, int64_t> pending;      // id -> submit time, until ACCEPTED
  std::unordered_map<std::string, int64_t> undelivered;  // id -> submit time, until delivered
  // Delivered before this client read its ACCEPTED: the broker sends both after the same commit,
  // on two connections, and either may be read first.
  std::unordered_set<std::string> delivered_early;
  out.start_ns = NowNs();
  const int64_t stop_at = out.start_ns + static_cast<int64_t>(spec.seconds * 1e9);
  const double planned_s = spec.count > 0 ? static_cast<double>(spec.count) / 500.0 : spec.seconds;
  // A receiver slower than the sender drains the queue after the load (pass-through on
  // PostgreSQL: minutes); the deadline leaves it that time, bounded.
  const int64_t deadline =
      out.start_ns + static_cast<int64_t>((planned_s + (receiver ? 600 : 120)) * 1e9);
  const double gap_ns = spec.rate > 0 ? 1e9 / spec.rate : 0;
  double next_due = static_cast<double>(out.start_ns);
  int64_t last_flush_ns = out.start_ns;
  std::string id;
  for (;;) {
    int64_t now = NowNs();
    const auto submitting = [&] {
      return spec.count > 0 ? out.submitted < spec.count : now < stop_at;
    };
    if (submitting()) {
      if (spec.rate > 0) {
        while (submitting() && next_due <= static_cast<double>(now)) {
          if (pending.size() >= kOpenLoopCap) {
            out.saturated = true;
            break;
          }
          sender.Submit(maker.Next(&id));
          pending.emplace(id, NowNs());
          ++out.submitted;
          next_due += gap_ns;
        }
      } else {
        while (submitting() && pending.size() < static_cast<size_t>(spec.window)) {
          sender.Submit(maker.Next(&id));
          pending.emplace(id, NowNs());
          ++out.submitted;
        }
      }
      // What this turn made ready goes in one frame where the broker takes batches. At a fixed
      // rate a turn makes one or two: while the broker has many unanswered, they wait up to a
      // millisecond for company (the broker reads at most receive_hwm frames of a connection
      // per turn); while it has few, they go at once.
      const bool behind = static_cast<int>(pending.size()) - sender.batched() >= kLingerAbove;
      if (spec.rate <= 0 || !behind || sender.batched() >= kLingerItems ||
          now - last_flush_ns >= kLingerNs) {
        sender.Flush();
        last_flush_ns = now;
      }
    } else if (pending.empty() && (receiver == nullptr || undelivered.empty())) {
      if (receiver == nullptr || out.completed >= out.accepted) break;
    }
    if (now > deadline) {
      throw std::runtime_error(fmt::format(
          "load did not finish in time: {} submitted, {} accepted, {} awaiting ACCEPTED, {} "
          "undelivered, {} completed",
          out.submitted, out.accepted, pending.size(), undelivered.size(), out.completed));
    }
    bool got = false;
    while (auto m = sender.TryReceive()) {
      got = true;
      if (m->has_submit_reply()) {
        const auto& r = m->submit_reply();
        auto it = pending.find(r.message_id());
        if (it == pending.end()) continue;  // not ours (or answered twice)
        const int64_t t = NowNs();
        if (r.code() == wire::ACCEPTED) {
          ++out.accepted;
          out.last_accept_ns = t;
          out.accept_latency.Add(t - it->second);
          if (receiver != nullptr && delivered_early.erase(it->first) == 0) {
            undelivered.emplace(it->first, it->second);
          }
        } else if (++out.problems == 1) {
          out.problem = fmt::format("{}: {}", wire::SubmitCode_Name(r.code()), r.reason());
        }
        pending.erase(it);
      } else if (m->has_status_notice()) {
        sender.AckNotice(m->status_notice().notice_id());
      }
    }
    if (receiver != nullptr) {
      while (auto m = receiver->TryReceive()) {
        got = true;
        if (m->has_deliver()) {
          auto env = crypto::ParseEnvelope(m->deliver().envelope());
          if (!env.ok()) throw std::runtime_error("delivery: " + env.status().ToString());
          auto h = crypto::ParseHeaderUnverified(*env);
          if (!h.ok()) throw std::runtime_error("delivery: " + h.status().ToString());
          if (auto it = undelivered.find(h->message_id()); it != undelivered.end()) {
            out.deliver_latency.Add(NowNs() - it->second);
            undelivered.erase(it);
          } else if (auto p = pending.find(h->message_id()); p != pending.end()) {
            out.deliver_latency.Add(NowNs() - p->second);
            delivered_early.insert(p->first);
          }
          receiver->Report(h->message_id(), wire::MOTTATT);
        } else if (m->has_report_reply()) {
          if (m->report_reply().ok()) {
            ++out.completed;
            out.last_complete_ns = NowNs();
          } else if (++out.problems == 1) {
            out.problem = "report refused: " + m->report_reply().reason();
          }
        }
      }
      receiver->Flush();  // this turn's reports in one frame
      receiver->KeepAlive();
    }
    if (!submitting()) sender.Flush();  // status acks; while submitting they go with the submits
    sender.KeepAlive();
    if (!got) {
      if (spec.rate > 0 && submitting()) {
        // Until the next submit is due (at least a few microseconds: saturated, none is sent).
        WaitLinks(&sender, receiver,
                  static_cast<int64_t>(
                      std::clamp((next_due - static_cast<double>(NowNs())) / 1e3, 20.0, 10000.0)));
      } else {
        PollLinks(&sender, receiver, 10);
      }
    }
  }
  return out;
}

void NoteProblems(Figures& f, const LoadOutcome& o) {
  if (o.problems > 0) {
    f.note += fmt::format("{} answer(s) not ACCEPTED/ok, first: {}", o.problems, o.problem);
  }
  if (o.saturated)
    f.note += (f.note.empty() ? "" : "; ") + std::string("SATURATED (open-loop cap)");
}

}  // namespace

OwnBench::OwnBench(const std::string& keys, BrokerStore store) : store_(std::move(store)) {
  test::ExchangeOptions options;
  if (store_.pg) {
    options.broker_pg_url = store_.pg->ConnString();
    options.broker_pg_password_file = store_.pg->PasswordFile();
  }
  options.start_ips = false;
  options.sign_key = options.enc_key = keys;
  // The bench receiver asks for credit 100 (as RabbitMQ's consumer gets prefetch 100). The
  // queue caps that protect the broker from one hostile member (20,000 per sender, 100,000 per
  // receiver by default) are lifted: the bench measures throughput, and `queued` fills 1,000,000.
  options.broker_settings = {{"max_credit", "256"},
                             {"max_queued_per_sender", "100000000"},
                             {"max_queued_per_receiver", "100000000"}};
  ex_ = std::make_unique<test::Exchange>(options);
}

OwnBench::~OwnBench() = default;

void OwnBench::FreshBroker() {
  ex_->broker().Stop();
  if (store_.pg) {
    // An empty database; the broker creates its schema when it opens it. (Two statements: DROP
    // DATABASE cannot run inside the transaction a multi-statement script is.)
    const std::string db = store_.pg->Database();
    store_.pg->AdminExec("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
    store_.pg->AdminExec("CREATE DATABASE " + db + " OWNER " + store_.pg->User());
  } else {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      fs::remove(ex_->root() + "/broker/broker.db" + suffix);
    }
  }
  ex_->StartBroker();
}

void OwnBench::Label(Figures& f) const {
  f.system = store_.system;
  if (!store_.note.empty()) f.note += (f.note.empty() ? "" : "; ") + store_.note;
}

void OwnBench::AddRss(Figures& f, bool ips) {
  auto add = [&](const std::string& name, test::Process& p) {
    if (!p.Running()) return;
    if (auto v = PeakRssMib(p.pid())) f.peak_rss_mib[name] = *v;
  };
  add("broker", ex_->broker());
  add("registry", ex_->registry());
  if (ips) {
    add("ip-sender", ex_->ip(kAgencyA));
    add("ip-receiver", ex_->ip(kAgencyB));
  }
}

namespace {
// CPU seconds (user + system) the sending and the receiving point have used so far.
struct IpCpu {
  std::optional<double> sender, receiver, sender_user, receiver_user;
};
IpCpu IpCpuNow(test::Exchange& ex) {
  return {CpuSeconds(ex.ip(kAgencyA).pid()), CpuSeconds(ex.ip(kAgencyB).pid()),
          UserCpuSeconds(ex.ip(kAgencyA).pid()), UserCpuSeconds(ex.ip(kAgencyB).pid())};
}
// Each point's CPU per message between `before` and now: on a busy machine this moves less
// than msgs/s does (other processes take idle time, not the points' own work).
void AddIpCpu(Figures& f, test::Exchange& ex, const IpCpu& before, size_t messages) {
  if (messages == 0) return;
  const IpCpu after = IpCpuNow(ex);
  const auto per_msg = [&](const std::optional<double>& a, const std::optional<double>& b) {
    return (*b - *a) * 1e6 / static_cast<double>(messages);
  };
  if (before.sender && after.sender) {
    f.extra["ip_sender_cpu_us_per_msg"] = per_msg(before.sender, after.sender);
  }
  if (before.receiver && after.receiver) {
    f.extra["ip_receiver_cpu_us_per_msg"] = per_msg(before.receiver, after.receiver);
  }
  if (before.sender_user && after.sender_user) {
    f.extra["ip_sender_user_us_per_msg"] = per_msg(before.sender_user, after.sender_user);
  }
  if (before.receiver_user && after.receiver_user) {
    f.extra["ip_receiver_user_us_per_msg"] = per_msg(before.receiver_user, after.receiver_user);
  }
}
}  // namespace

OwnBench::CpuUse OwnBench::Cpu() const {
  CpuUse u;
  u.broker = CpuSeconds(ex_->broker().pid());
  if (store_.pg) {
    // Every server process (backends, WAL writer, checkpointer): the commits' cost on the
    // database's side, which the broker's own CPU time does not show.
    double sum = 0;
    bool any = false;
    for (int pid : store_.pg->ServerPids()) {
      if (auto c = CpuSeconds(pid)) {
        sum += *c;
        any = true;
      }
    }
    if (any) u.store = sum;
  }
  return u;
}

void OwnBench::AddCpuPerMessage(Figures& f, const CpuUse& before, const CpuUse& after,
                                int64_t messages) {
  if (messages <= 0) return;
  const auto n = static_cast<double>(messages);
  if (before.broker && after.broker) {
    f.extra["broker_cpu_us_per_msg"] = (*after.broker - *before.broker) * 1e6 / n;
  }
  if (before.store && after.store) {
    f.extra["store_cpu_us_per_msg"] = (*after.store - *before.store) * 1e6 / n;
  }
}

Figures OwnBench::Ingest(const LoadSpec& spec) {
  FreshBroker();
  BrokerLink a(Context(), ex_->broker_endpoint(), ex_->broker_public_key(),
               ex_->CurveKeyFile(kAgencyA), kAgencyA, 1);
  a.Connect(Millis(15000));
  EnvelopeMaker maker(Wire(kAgencyA), Wire(kAgencyB), spec.envelope_bytes);
  const CpuUse cpu0 = Cpu();
  LoadOutcome o = RunLoad(a, maker, spec, nullptr);
  Figures f;
  AddCpuPerMessage(f, cpu0, Cpu(), o.accepted);
  f.scenario = "ingest";
  f.msgs_per_s = PerSecond(o.accepted, o.start_ns, o.last_accept_ns);
  SetLatency(f, o.accept_latency, "submit -> ACCEPTED");
  f.extra["messages"] = static_cast<double>(o.accepted);
  NoteProblems(f, o);
  Label(f);
  AddRss(f, false);
  return f;
}

Figures OwnBench::PassThrough(const LoadSpec& spec) {
  FreshBroker();
  BrokerLink a(Context(), ex_->broker_endpoint(), ex_->broker_public_key(),
               ex_->CurveKeyFile(kAgencyA), kAgencyA, 1);
  BrokerLink b(Context(), ex_->broker_endpoint(), ex_->broker_public_key(),
               ex_->CurveKeyFile(kAgencyB), kAgencyB, kReceiverCredit);
  a.Connect(Millis(15000));
  b.Connect(Millis(15000));
  EnvelopeMaker maker(Wire(kAgencyA), Wire(kAgencyB), spec.envelope_bytes);
  const CpuUse cpu0 = Cpu();
  LoadOutcome o = RunLoad(a, maker, spec, &b);
  Figures f;
  AddCpuPerMessage(f, cpu0, Cpu(), o.completed);
  f.scenario = "pass-through";
  f.msgs_per_s = PerSecond(o.completed, o.start_ns, o.last_complete_ns);
  SetLatency(f, o.deliver_latency, "submit -> delivered to the receiver");
  f.extra["messages"] = static_cast<double>(o.completed);
  f.extra["accept_p99_ms"] = o.accept_latency.QuantileMs(0.99).value_or(0);
  NoteProblems(f, o);
  Label(f);
  AddRss(f, false);
  return f;
}

Figures OwnBench::HalfLoad(const LoadSpec& spec) {
  Figures f = Ingest(spec);
  f.scenario = "half-load";
  f.extra["rate"] = spec.rate;
  return f;
}

std::vector<Figures> OwnBench::Queued(int64_t queued, int restarts) {
  FreshBroker();
  Figures fill;
  fill.scenario = "queued";
  fill.system = "budstikke";
  {
    BrokerLink a(Context(), ex_->broker_endpoint(), ex_->broker_public_key(),
                 ex_->CurveKeyFile(kAgencyA), kAgencyA, 1);
    a.Connect(Millis(15000));
    EnvelopeMaker maker(Wire(kAgencyA), Wire(kAgencyB), 1024);
    LoadSpec spec;
    spec.count = queued;
    LoadOutcome o = RunLoad(a, maker, spec, nullptr);
    fill.msgs_per_s = PerSecond(o.accepted, o.start_ns, o.last_accept_ns);
    SetLatency(fill, o.accept_latency, "submit -> ACCEPTED while filling");
    fill.extra["queued"] = static_cast<double>(o.accepted);
    NoteProblems(fill, o);
  }
  const pid_t pid = ex_->broker().pid();
  if (auto v = RssMib(pid)) fill.extra["broker_rss_now_mib"] = *v;
  std::error_code ec;
  const auto db_bytes = fs::file_size(ex_->root() + "/broker/broker.db", ec);
  const auto wal_bytes = fs::file_size(ex_->root() + "/broker/broker.db-wal", ec);
  fill.extra["store_mib"] = static_cast<double>(db_bytes + (ec ? 0 : wal_bytes)) / (1 << 20);
  AddRss(fill, false);
  std::vector<Figures> out = {fill};

  for (int r = 0; r < restarts; ++r) {
    ex_->broker().Kill();  // a crash: the worst case for a restart
    const int64_t t0 = NowNs();
    ex_->broker().Start();
    BrokerLink b(Context(), ex_->broker_endpoint(), ex_->broker_public_key(),
                 ex_->CurveKeyFile(kAgencyB), kAgencyB, kReceiverCredit);
    const int64_t welcome = b.Connect(Millis(120000));
    int64_t delivered = 0;
    const int64_t deadline = NowNs() + 60'000'000'000;
    while (delivered == 0) {
      if (NowNs() > deadline) throw std::runtime_error("no delivery within 60 s of the restart");
      while (auto m = b.TryReceive()) {
        if (m->has_deliver()) {
          delivered = NowNs();
          break;
        }
      }
      if (delivered == 0) PollLinks(&b, nullptr, 5);
    }
    Figures f;
    f.scenario = "restart";
    f.system = "budstikke";
    f.extra["queued"] = fill.extra["queued"];
    f.extra["welcome_ms"] = static_cast<double>(welcome - t0) / 1e6;
    f.extra["first_delivery_ms"] = static_cast<double>(delivered - t0) / 1e6;
    f.latency_of = "SIGKILL, start -> Hello answered / first delivery";
    AddRss(f, false);
    out.push_back(f);
  }
  return out;
}

namespace {

// Arrival times of inbox folders (renamed in from inbox/.tmp), by message id.
class InboxWatch {
 public:
  explicit InboxWatch(const std::string& inbox) : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    if (fd_ < 0 || ::inotify_add_watch(fd_, inbox.c_str(), IN_MOVED_TO | IN_CREATE) < 0) {
      throw std::runtime_error("inotify on " + inbox + " failed");
    }
  }
  ~InboxWatch() { ::close(fd_); }
  // Waits until every id in `ids` has arrived or `deadline_ns` passes; returns arrival times.
  void WaitFor(std::unordered_map<std::string, int64_t>& waiting, int64_t deadline_ns,
               std::unordered_map<std::string, int64_t>& arrived) {
    alignas(inotify_event) char buf[65536];
    while (!waiting.empty() && NowNs() < deadline_ns) {
      pollfd p{fd_, POLLIN, 0};
      ::poll(&p, 1, 20);
      const int64_t now = NowNs();
      ssize_t n;
      while ((n = ::read(fd_, buf, sizeof buf)) > 0) {
        for (char* at = buf; at < buf + n;) {
          auto* e = reinterpret_cast<inotify_event*>(at);
          if (e->len > 0) {
            auto it = waiting.find(e->name);
            if (it != waiting.end()) {
              arrived[it->first] = now;
              waiting.erase(it);
            }
          }
          at += sizeof(inotify_event) + e->len;
        }
      }
    }
  }

 private:
  int fd_;
};

}  // namespace

Figures OwnBench::Exchange(int messages, int singles, size_t payload_bytes) {
  FreshBroker();
  ex_->StartIp(kAgencyA);
  ex_->StartIp(kAgencyB);
  const test::Files files = {{"data.bin", test::SeededBytes(payload_bytes, 7)}};
  InboxWatch watch(ex_->Inbox(kAgencyB));
  auto folder = [&](const std::string& id) {
    nlohmann::json meta = test::Exchange::Metadata(kAgencyB);
    meta["messageId"] = id;
    meta["title"] = "Benchmark";
    return meta.dump();
  };
  auto drop = [&](std::unordered_map<std::string, int64_t>& waiting) {
    const std::string id = NewUuid();
    waiting[id] = NowNs();
    ex_->DropFolder(kAgencyA, id, folder(id), files);
  };

  Figures f;
  f.scenario = "exchange";
  f.system = "budstikke";
  // Throughput: every folder dropped at once, until the last one is in the inbox. The folders
  // are written first under names the point ignores (".tmp-*", as an archive system writes
  // them) and renamed into place when the clock starts: the run measures the exchange, not the
  // bench writing 2,000 folders on the same two cores.
  const std::string outbox = ex_->Outbox(kAgencyA);
  std::vector<std::string> staged;
  for (int i = 0; i < messages; ++i) {
    const std::string id = NewUuid();
    const std::string tmp = outbox + "/.tmp-bench-" + id;
    fs::create_directories(tmp);
    for (const auto& [name, bytes] : files) test::WriteFile(tmp + "/" + name, bytes);
    test::WriteFile(tmp + "/message.json", folder(id));
    staged.push_back(id);
  }
  std::unordered_map<std::string, int64_t> waiting, arrived;
  const IpCpu cpu0 = IpCpuNow(*ex_);
  const int64_t start = NowNs();
  for (const std::string& id : staged) {
    waiting[id] = NowNs();
    fs::rename(outbox + "/.tmp-bench-" + id, outbox + "/" + id);
  }
  const auto sent = waiting;
  watch.WaitFor(waiting, start + static_cast<int64_t>((60 + messages * 0.05) * 1e9), arrived);
  AddIpCpu(f, *ex_, cpu0, arrived.size());
  int64_t last = start, first = std::numeric_limits<int64_t>::max();
  Latencies bulk;
  for (const auto& [id, t] : arrived) {
    last = std::max(last, t);
    first = std::min(first, t);
    bulk.Add(t - sent.at(id));
  }
  f.msgs_per_s = PerSecond(static_cast<int64_t>(arrived.size()), start, last);
  f.extra["messages"] = static_cast<double>(arrived.size());
  // The pipeline's fill: until the first folder is in the inbox (taken in, sealed, stored by the
  // broker, delivered, opened). A short run spends a large share of its time here.
  if (!arrived.empty()) f.extra["first_ms"] = static_cast<double>(first - start) / 1e6;
  f.extra["bulk_p50_ms"] = bulk.QuantileMs(0.5).value_or(0);
  if (!waiting.empty()) {
    f.note = fmt::format("only {} of {} arrived before the deadline", arrived.size(), messages);
  }
  // Latency: one message at a time.
  Latencies single;
  for (int i = 0; i < singles; ++i) {
    std::unordered_map<std::string, int64_t> one, got;
    drop(one);
    const auto t = one.begin()->second;
    const auto id = one.begin()->first;
    watch.WaitFor(one, NowNs() + 30'000'000'000, got);
    if (got.empty()) throw std::runtime_error("message " + id + " did not arrive within 30 s");
    single.Add(got.at(id) - t);
  }
  SetLatency(f, single, "one message at a time, outbox folder -> inbox folder");
  f.p999_ms.reset();  // too few samples to mean anything
  AddRss(f, true);
  ex_->ip(kAgencyA).Stop();
  ex_->ip(kAgencyB).Stop();
  return f;
}

namespace {

// eFormidling's arkivmelding SBD (as in tests/integration/http_api_test.cc) from A to B.
std::string BenchSbd(const std::string& message_id) {
  nlohmann::json party = {{"identifier", {{"authority", "iso6523-actorid-upis"}}}};
  nlohmann::json sender = party, receiver = party;
  sender["identifier"]["value"] = "0192:" + std::string(kAgencyA);
  receiver["identifier"]["value"] = "0192:" + std::string(kAgencyB);
  nlohmann::json sbd = {{"standardBusinessDocumentHeader",
                         {{"headerVersion", "1.0"},
                          {"sender", {sender}},
                          {"receiver", {receiver}},
                          {"documentIdentification",
                           {{"standard", "urn:no:difi:arkivmelding:xsd::arkivmelding"},
                            {"typeVersion", "1.0"},
                            {"instanceIdentifier", message_id},
                            {"type", "arkivmelding"}}},
                          {"businessScope",
                           {{"scope",
                             {{{"type", "ConversationId"},
                               {"instanceIdentifier", NewUuid()},
                               {"identifier", test::kProcess},
                               {"scopeInformation",
                                {{{"expectedResponseDateTime",
                                   FormatTime(NowMs() + 30LL * 24 * 3600 * 1000)}}}}}}}}}}},
                        {"arkivmelding", {{"hoveddokument", "test.pdf"}, {"sikkerhetsnivaa", 3}}}};
  return sbd.dump();
}

// Incoming messages in an integration point's store (a read-only connection of our own, through
// the store's read API) and when each was recorded (wall-clock ms).
std::unordered_map<std::string, int64_t> ReceivedIn(const std::string& store_path) {
  std::unordered_map<std::string, int64_t> out;
  auto store = ip::PointStore::OpenReadOnly(store_path);
  if (!store.ok()) return out;  // not created (or migrated) yet
  auto rows = (*store)->history.IncomingUpdates();
  if (!rows.ok()) return out;  // busy: asked again on the next round
  for (auto& [id, at_ms] : *rows) out[id] = at_ms;
  return out;
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Figures OwnBench::SenderApi(int messages, int clients, size_t payload_bytes,
                            const std::string& keys) {
  // Its own exchange: HTTP on, B keeps incoming messages for its API (incoming.delivery = api).
  test::ExchangeOptions options;
  options.sign_key = options.enc_key = keys;
  options.http = true;
  options.broker_settings = {{"max_credit", "256"}};
  options.agency_settings[kAgencyB] = {{"incoming.delivery", "\"api\""}};
  // At least one server thread per client connection (a keep-alive connection holds its
  // thread; http.threads is 16 by default).
  options.ip_settings = {{"http.threads", std::to_string(std::clamp(clients, 16, 64))}};
  test::Exchange ex(options);
  const std::string base = ex.HttpBase(kAgencyA);
  const std::string store = ex.AgencyDir(kAgencyB) + "/ip.db";
  const std::string pdf = "%PDF-1.7\n" + test::SeededBytes(payload_bytes, 7);

  std::vector<std::string> ids(static_cast<size_t>(messages));
  for (auto& id : ids) id = NewUuid();
  std::vector<int64_t> posted_ms(ids.size(), 0);
  std::vector<std::vector<int64_t>> post_ns(static_cast<size_t>(clients));
  std::vector<std::string> errors(static_cast<size_t>(clients));
  const IpCpu cpu0 = IpCpuNow(ex);
  const int64_t start = NowNs();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client client(base);  // one keep-alive connection per client thread
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);  // as curl and most HTTP clients do
      client.set_connection_timeout(5);
      client.set_read_timeout(30);
      client.set_write_timeout(30);
      for (size_t i = static_cast<size_t>(c); i < ids.size(); i += static_cast<size_t>(clients)) {
        httplib::MultipartFormDataItems items = {
            {"sbd", BenchSbd(ids[i]), "", "application/json"},
            {"hoveddokument", pdf, "test.pdf", "application/pdf"}};
        const int64_t t0 = NowNs();
        posted_ms[i] = WallMs();
        auto r = client.Post("/api/messages/out/multipart", items);
        if (!r || r->status != 200) {
          errors[static_cast<size_t>(c)] =
              r ? fmt::format("POST answered {}: {}", r->status, r->body.substr(0, 200))
                : "POST failed: " + httplib::to_string(r.error());
          return;
        }
        post_ns[static_cast<size_t>(c)].push_back(NowNs() - t0);
      }
    });
  }
  for (auto& t : threads) t.join();
  const int64_t posted_all = NowNs();
  for (const auto& e : errors) {
    if (!e.empty()) throw std::runtime_error("sender-api: " + e);
  }
  // Until the receiver's store has them all (bounded).
  std::unordered_map<std::string, int64_t> got;
  const int64_t deadline = NowNs() + static_cast<int64_t>((60 + messages * 0.05) * 1e9);
  int64_t last = posted_all;
  while (NowNs() < deadline) {
    got = ReceivedIn(store);
    last = NowNs();
    if (got.size() >= ids.size()) break;
    std::this_thread::sleep_for(Millis(20));
  }
  Figures f;
  f.scenario = "sender-api";
  f.system = "budstikke";
  f.msgs_per_s = PerSecond(static_cast<int64_t>(got.size()), start, last);
  f.extra["messages"] = static_cast<double>(got.size());
  f.extra["clients"] = clients;
  f.extra["post_msgs_per_s"] = messages / (static_cast<double>(posted_all - start) / 1e9);
  AddIpCpu(f, ex, cpu0, got.size());
  Latencies all_posts, end_to_end;
  for (const auto& samples : post_ns) {
    for (int64_t ns : samples) all_posts.Add(ns);
  }
  f.extra["post_p50_ms"] = all_posts.QuantileMs(0.5).value_or(0);
  f.extra["post_p99_ms"] = all_posts.QuantileMs(0.99).value_or(0);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = got.find(ids[i]);
    if (it != got.end()) end_to_end.Add((it->second - posted_ms[i]) * 1'000'000);
  }
  SetLatency(f, end_to_end, "POST to the sender's API -> in the receiver's store (ms clock)");
  if (got.size() < ids.size()) {
    f.note = fmt::format("only {} of {} arrived before the deadline", got.size(), messages);
  }
  for (const char* org : {kAgencyA, kAgencyB}) {
    if (auto rss = PeakRssMib(ex.ip(org).pid())) {
      f.peak_rss_mib[std::string("ip-") + (org == kAgencyA ? "sender" : "receiver")] = *rss;
    }
  }
  if (auto rss = PeakRssMib(ex.broker().pid())) f.peak_rss_mib["broker"] = *rss;
  return f;
}

}  // namespace bud::bench
