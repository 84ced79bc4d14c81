// NATS JetStream workloads over the NATS text protocol. See peers.h.
//
// Protocol used (NATS client protocol): INFO from the server, CONNECT + PING/PONG; PUB <subject>
// [reply] <n>; SUB <subject> <sid>; MSG <subject> <sid> [reply] <n>. JetStream is reached through
// its API subjects ($JS.API.STREAM.CREATE.<name>, $JS.API.CONSUMER.DURABLE.CREATE.<stream>.<name>),
// a publish to a stream subject with a reply subject is answered with {"stream":..,"seq":..},
// and a consumer's delivery is acknowledged by publishing an empty message to its reply subject.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <functional>
#include <stdexcept>
#include <unordered_map>

#include "bench/peers.h"

namespace bud::bench {

namespace {

// poll(2) with a wait in microseconds.
int PollFor(pollfd* fds, nfds_t n, int64_t us) {
  const timespec wait{static_cast<time_t>(us / 1'000'000),
                      static_cast<long>(us % 1'000'000) * 1000};
  return ::ppoll(fds, n, &wait, nullptr);
}

struct NatsMsg {
  std::string subject;
  std::string reply;
  std::string payload;
};

// One connection. Reads are buffered and parsed into messages; PINGs are answered.
class NatsConn {
 public:
  NatsConn(const std::string& host, int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error(fmt::format("cannot connect to NATS at {}:{}: {}", host, port,
                                           std::strerror(errno)));
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{30, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    Write("CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false}\r\nPING\r\n");
    Flush();
    const int64_t deadline = NowNs() + 10'000'000'000;
    while (!pong_) {
      if (NowNs() > deadline) throw std::runtime_error("no PONG from NATS within 10 s");
      Pump(100'000);
    }
  }
  ~NatsConn() { ::close(fd_); }
  NatsConn(const NatsConn&) = delete;
  NatsConn& operator=(const NatsConn&) = delete;

  int fd() const { return fd_; }
  void Write(std::string_view s) { out_.append(s); }
  void Pub(std::string_view subject, std::string_view reply, std::string_view payload) {
    out_ += fmt::format("PUB {} {} {}\r\n", subject, reply, payload.size());
    out_.append(payload);
    out_ += "\r\n";
  }
  void Flush() {
    size_t done = 0;
    while (done < out_.size()) {
      ssize_t n = ::send(fd_, out_.data() + done, out_.size() - done, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(std::string("write to NATS: ") + std::strerror(errno));
      }
      done += static_cast<size_t>(n);
    }
    out_.clear();
  }
  // Waits up to `us` microseconds for input, reads what is there and hands every complete
  // message to on_msg_. Returns whether anything was read.
  bool Pump(int64_t us) {
    pollfd p{fd_, POLLIN, 0};
    if (PollFor(&p, 1, us) <= 0) return false;
    char buf[1 << 16];
    ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) throw std::runtime_error("NATS closed the connection");
    if (n < 0) return false;
    in_.append(buf, static_cast<size_t>(n));
    Parse();
    if (!out_.empty()) Flush();
    return true;
  }
  std::function<void(NatsMsg&)> on_msg;

  // A JetStream API call: the JSON answer. Throws when it carries an error.
  std::string Request(const std::string& subject, const std::string& json) {
    const std::string inbox = fmt::format("_REQ.{}", ++requests_);
    std::string answer;
    bool got = false;
    auto saved = on_msg;
    on_msg = [&](NatsMsg& m) {
      if (m.subject == inbox) {
        answer = m.payload;
        got = true;
      } else if (saved) {
        saved(m);
      }
    };
    Write(fmt::format("SUB {} 99{}\r\n", inbox, requests_));
    Pub(subject, inbox, json);
    Flush();
    const int64_t deadline = NowNs() + 15'000'000'000;
    while (!got) {
      if (NowNs() > deadline) throw std::runtime_error("NATS did not answer " + subject);
      Pump(100'000);
    }
    on_msg = saved;
    Write(fmt::format("UNSUB 99{}\r\n", requests_));
    if (answer.find("\"error\"") != std::string::npos) {
      throw std::runtime_error("NATS " + subject + ": " + answer);
    }
    return answer;
  }

 private:
  void Parse() {
    size_t at = 0;
    for (;;) {
      size_t eol = in_.find("\r\n", at);
      if (eol == std::string::npos) break;
      std::string_view line(in_.data() + at, eol - at);
      if (line.rfind("MSG ", 0) == 0) {
        // MSG <subject> <sid> [reply] <#bytes>
        std::vector<std::string_view> f;
        size_t p = 4;
        while (p < line.size()) {
          size_t sp = line.find(' ', p);
          if (sp == std::string_view::npos) sp = line.size();
          if (sp > p) f.push_back(line.substr(p, sp - p));
          p = sp + 1;
        }
        if (f.size() < 3) throw std::runtime_error("bad MSG line from NATS: " + std::string(line));
        const size_t len = std::stoul(std::string(f.back()));
        if (in_.size() < eol + 2 + len + 2) break;  // payload not complete yet
        NatsMsg m;
        m.subject = f[0];
        if (f.size() == 4) m.reply = f[2];
        m.payload = in_.substr(eol + 2, len);
        at = eol + 2 + len + 2;
        if (on_msg) on_msg(m);
        continue;
      }
      if (line == "PING") {
        out_ += "PONG\r\n";
      } else if (line == "PONG") {
        pong_ = true;
      } else if (line.rfind("-ERR", 0) == 0) {
        throw std::runtime_error("NATS: " + std::string(line));
      }  // INFO, +OK: nothing to do
      at = eol + 2;
    }
    in_.erase(0, at);
  }

  int fd_ = -1;
  std::string in_, out_;
  bool pong_ = false;
  int requests_ = 0;
};

std::string Body(size_t bytes, int64_t seq) {
  std::string b(bytes, 'x');
  const int64_t t = NowNs();
  std::memcpy(b.data(), &t, sizeof t);
  std::memcpy(b.data() + 8, &seq, sizeof seq);
  return b;
}

int64_t SentAt(const std::string& body) {
  int64_t t = 0;
  if (body.size() >= 8) std::memcpy(&t, body.data(), sizeof t);
  return t;
}

}  // namespace

Figures RunNats(const Peer& peer, const std::string& scenario, const LoadSpec& spec, int run) {
  const bool consume = scenario == "pass-through";
  NatsConn pub(peer.host, peer.port);
  std::unique_ptr<NatsConn> sub;
  const std::string stream = fmt::format("BENCH_{}_{}", run, ::getpid());
  const std::string subject = fmt::format("bench.{}.in", stream);
  pub.Request("$JS.API.STREAM.CREATE." + stream,
              fmt::format(R"({{"name":"{}","subjects":["{}"],"storage":"file","num_replicas":1}})",
                          stream, subject));

  Latencies ack_latency, deliver_latency;
  std::unordered_map<int64_t, int64_t> pending;  // seq -> send time
  int64_t submitted = 0, accepted = 0, completed = 0, problems = 0;
  int64_t last_accept = 0, last_complete = 0;
  std::string problem;
  pub.Write("SUB _ACK.> 2\r\n");
  pub.on_msg = [&](NatsMsg& m) {
    if (m.subject.rfind("_ACK.", 0) != 0) return;
    const int64_t seq = std::stoll(m.subject.substr(5));
    auto it = pending.find(seq);
    if (it == pending.end()) return;
    const int64_t now = NowNs();
    if (m.payload.find("\"error\"") != std::string::npos) {
      if (++problems == 1) problem = m.payload;
    } else {
      ++accepted;
      last_accept = now;
      ack_latency.Add(now - it->second);
    }
    pending.erase(it);
  };
  if (consume) {
    sub = std::make_unique<NatsConn>(peer.host, peer.port);
    const std::string deliver = "dlv." + stream;
    sub->Write(fmt::format("SUB {} 3\r\n", deliver));
    sub->Flush();
    sub->Request(
        fmt::format("$JS.API.CONSUMER.DURABLE.CREATE.{}.C", stream),
        fmt::format(R"({{"stream_name":"{}","config":{{"durable_name":"C","deliver_subject":"{}",)"
                    R"("ack_policy":"explicit","max_ack_pending":{},"deliver_policy":"all"}}}})",
                    stream, deliver, spec.window));
    sub->on_msg = [&](NatsMsg& m) {
      if (m.reply.empty()) return;
      deliver_latency.Add(NowNs() - SentAt(m.payload));
      sub->Pub(m.reply, "", "");  // +ACK
      ++completed;
      last_complete = NowNs();
    };
  }

  const int64_t start = NowNs();
  const int64_t stop_at = start + static_cast<int64_t>(spec.seconds * 1e9);
  const int64_t deadline = stop_at + 120'000'000'000;
  const double gap = spec.rate > 0 ? 1e9 / spec.rate : 0;
  double next_due = static_cast<double>(start);
  bool saturated = false;
  for (;;) {
    const int64_t now = NowNs();
    const bool submitting = now < stop_at;
    if (submitting) {
      auto send_one = [&] {
        ++submitted;
        pending.emplace(submitted, NowNs());
        pub.Pub(subject, fmt::format("_ACK.{}", submitted), Body(spec.envelope_bytes, submitted));
      };
      if (spec.rate > 0) {
        while (next_due <= static_cast<double>(now)) {
          if (pending.size() >= 20000) {
            saturated = true;
            break;
          }
          send_one();
          next_due += gap;
        }
      } else {
        while (pending.size() < static_cast<size_t>(spec.window)) send_one();
      }
      pub.Flush();
    } else if (pending.empty() && (!consume || completed >= accepted)) {
      break;
    }
    if (now > deadline) throw std::runtime_error("NATS load did not finish in time");
    // In microseconds: at a fixed rate of thousands a second, a wait in milliseconds would be
    // 0, and this client would spin a core the server needs.
    int64_t wait = 10'000;
    if (spec.rate > 0 && submitting) {
      wait = static_cast<int64_t>(
          std::clamp((next_due - static_cast<double>(NowNs())) / 1e3, 20.0, 10000.0));
    }
    if (consume) {
      // Both connections: read whatever is there, waiting on neither for long.
      pollfd p[2] = {{pub.fd(), POLLIN, 0}, {sub->fd(), POLLIN, 0}};
      PollFor(p, 2, wait);
      if (p[0].revents) pub.Pump(0);
      if (p[1].revents) sub->Pump(0);
      sub->Flush();
    } else {
      pub.Pump(wait);
    }
  }
  try {
    pub.Request("$JS.API.STREAM.DELETE." + stream, "");
  } catch (const std::exception&) {
    // Its data stays in the bench work folder, which is removed with it.
  }

  PeerOutcome o{start, accepted, last_accept, completed, last_complete, std::move(ack_latency),
                std::move(deliver_latency), saturated};
  Figures f = PeerFigures(peer, scenario, spec, consume, o, "JetStream ack", "nats-server");
  if (problems > 0) f.note += fmt::format("; {} publish(es) refused, first: {}", problems, problem);
  return f;
}

}  // namespace bud::bench
