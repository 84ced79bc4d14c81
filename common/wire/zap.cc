// The cached, threaded ZAP handler. See zap.h.
#include "common/wire/zap.h"

#include <fmt/format.h>

#include <map>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "common/wire/curve.h"

namespace bud::wire {

namespace {

std::atomic<int> next_pipe{0};

// Keeps a cache under its bound: expired entries go first, then the one that expires soonest
// (the oldest, as entries of one cache share a TTL), until one slot is free. A linear scan, only
// when the cache is full.
template <typename Map, typename UntilOf>
void MakeRoom(Map& m, size_t max, int64_t now, UntilOf until_of) {
  if (m.size() < max) return;
  for (auto it = m.begin(); it != m.end();) {
    it = until_of(it->second) <= now ? m.erase(it) : std::next(it);
  }
  while (!m.empty() && m.size() >= max) {
    auto soonest = m.begin();
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (until_of(it->second) < until_of(soonest->second)) soonest = it;
    }
    m.erase(soonest);
  }
}

}  // namespace

CachedZapHandler::CachedZapHandler(zmq::context_t& ctx, Resolver resolver, Options options,
                                   std::string server_name)
    : ctx_(ctx),
      resolver_(std::move(resolver)),
      options_(options),
      server_name_(std::move(server_name)) {
  const std::string pipe = fmt::format("inproc://bud.zap.lookup.{}", next_pipe.fetch_add(1));
  std::promise<Status> bound;
  auto bound_future = bound.get_future();
  zap_thread_ = std::thread([this, pipe, &bound] { ZapThread(pipe, &bound); });
  started_ = bound_future.get();
  if (started_.ok()) {
    lookup_thread_ = std::thread([this, pipe] { LookupThread(pipe); });
  }
}

CachedZapHandler::~CachedZapHandler() {
  stop_.store(true);
  if (zap_thread_.joinable()) zap_thread_.join();
  if (lookup_thread_.joinable()) lookup_thread_.join();
}

void CachedZapHandler::ZapThread(std::string pipe_endpoint, std::promise<Status>* bound) {
  auto log = Logger("zap");
  zmq::socket_t zap(ctx_, zmq::socket_type::router);
  zmq::socket_t pipe(ctx_, zmq::socket_type::pair);
  try {
    zap.set(zmq::sockopt::linger, 0);
    pipe.set(zmq::sockopt::linger, 0);
    zap.bind("inproc://zeromq.zap.01");
    pipe.bind(pipe_endpoint);
  } catch (const zmq::error_t& e) {
    bound->set_value(Status(Code::kUnavailable, fmt::format("ZAP handler: {}", e.what())));
    return;
  }
  bound->set_value(Status::Ok());

  struct Admitted {
    std::string identity;
    int64_t until_mono;
  };
  struct Parked {
    std::string rid;
    std::string request_id;
    std::string address;
  };
  std::map<std::string, Admitted> positive;
  std::map<std::string, int64_t> negative;  // key -> refuse without asking until (mono ms)
  std::map<std::string, std::vector<Parked>> parked;  // keys being looked up -> their requests
  size_t pending = 0;

  auto answer = [&](const std::string& rid, const std::string& request_id, bool ok,
                    const std::string& user) {
    const std::string code = ok ? "200" : "400";
    const std::string text = ok ? "OK" : "refused";
    std::array<zmq::const_buffer, 8> reply = {
        zmq::buffer(rid),  zmq::str_buffer(""), zmq::str_buffer("1.0"), zmq::buffer(request_id),
        zmq::buffer(code), zmq::buffer(text),   zmq::buffer(user),      zmq::str_buffer("")};
    try {
      for (size_t i = 0; i < reply.size(); ++i) {
        (void)zap.send(reply[i], i + 1 < reply.size()
                                     ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                     : zmq::send_flags::dontwait);
      }
    } catch (const zmq::error_t& e) {
      // The session that asked has gone (its handshake timed out): nothing to answer.
      log->debug("{}: ZAP reply not sent: {}", server_name_, e.what());
    }
  };

  auto on_request = [&](std::vector<zmq::message_t>& f) {
    // ROUTER framing: [routing id][empty][version][request id][domain][address][identity]
    // [mechanism][credentials...]
    if (f.size() < 2) return;
    const std::string rid = f[0].to_string();
    const std::string request_id = f.size() > 3 ? f[3].to_string() : "";
    if (f.size() < 9 || f[1].size() != 0 || f[2].to_string() != "1.0" ||
        f[4].to_string() != kZapDomain || f[7].to_string() != "CURVE" || f[8].size() != 32) {
      log->warn("{}: refused a connection without a valid CURVE handshake", server_name_);
      answer(rid, request_id, false, "");
      return;
    }
    char z85[41];
    zmq_z85_encode(z85, static_cast<const uint8_t*>(f[8].data()), 32);
    const std::string key(z85);
    const std::string address = f[5].to_string();
    const int64_t now = MonoMs();
    if (auto p = positive.find(key); p != positive.end()) {
      if (p->second.until_mono > now) {
        log->debug("{}: admitted {} from {} (cached)", server_name_, p->second.identity, address);
        answer(rid, request_id, true, p->second.identity);
        return;
      }
      positive.erase(p);
    }
    if (auto n = negative.find(key); n != negative.end()) {
      if (n->second > now) {
        log->debug("{}: refused a connection from {}: CURVE key {} is not registered (cached)",
                   server_name_, address, key);
        answer(rid, request_id, false, "");
        return;
      }
      negative.erase(n);
    }
    if (pending >= options_.max_pending) {
      log->warn("{}: refused a connection from {}: {} handshakes already wait for key lookups",
                server_name_, address, pending);
      answer(rid, request_id, false, "");
      return;
    }
    auto& waiting = parked[key];
    const bool first = waiting.empty();
    waiting.push_back({rid, request_id, address});
    ++pending;
    if (first) {
      bool queued = false;
      try {
        queued = pipe.send(zmq::buffer(key), zmq::send_flags::dontwait).has_value();
      } catch (const zmq::error_t&) {
      }
      if (!queued) {  // cannot happen while max_pending is below the pipe's HWM; never park forever
        parked.erase(key);
        --pending;
        answer(rid, request_id, false, "");
      }
    }
  };

  auto on_result = [&](std::vector<zmq::message_t>& f) {
    if (f.size() != 4 || f[1].size() != 1) return;
    const std::string key = f[0].to_string();
    const auto kind = static_cast<Verdict::Kind>(static_cast<const char*>(f[1].data())[0]);
    const std::string identity = f[2].to_string();
    const int64_t now = MonoMs();
    if (kind == Verdict::kAdmit) {
      MakeRoom(positive, options_.max_positive, now,
               [](const Admitted& a) { return a.until_mono; });
      positive[key] = {identity, now + options_.positive_ttl_ms};
    } else {
      MakeRoom(negative, options_.max_negative, now, [](int64_t until) { return until; });
      negative[key] =
          now + (kind == Verdict::kUnknown ? options_.negative_ttl_ms : options_.retry_ms);
    }
    auto it = parked.find(key);
    if (it == parked.end()) return;
    for (const auto& p : it->second) {
      if (kind == Verdict::kAdmit) {
        log->debug("{}: admitted {} from {}", server_name_, identity, p.address);
      } else if (kind == Verdict::kUnknown) {
        log->warn("{}: refused a connection from {}: CURVE key {} is not registered", server_name_,
                  p.address, key);
      } else {
        log->warn("{}: refused a connection from {}: cannot look up CURVE key {}: {}", server_name_,
                  p.address, key, f[3].to_string());
      }
      answer(p.rid, p.request_id, kind == Verdict::kAdmit, identity);
    }
    pending -= std::min(pending, it->second.size());
    parked.erase(it);
  };

  auto recv_all = [](zmq::socket_t& s, std::vector<zmq::message_t>& out) {
    out.clear();
    zmq::message_t m;
    if (!s.recv(m, zmq::recv_flags::dontwait)) return false;
    bool more = m.more();
    out.push_back(std::move(m));
    while (more) {
      zmq::message_t part;
      if (!s.recv(part, zmq::recv_flags::none)) break;
      more = part.more();
      if (out.size() < 16) out.push_back(std::move(part));
    }
    return true;
  };

  // Requests wait in the ZAP socket until the lookup thread has connected and said so: a key
  // sent before that would find no pipe and be refused.
  for (;;) {
    if (stop_.load()) return;
    zmq::pollitem_t item{pipe.handle(), 0, ZMQ_POLLIN, 0};
    zmq::message_t ready;
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      if (pipe.recv(ready, zmq::recv_flags::dontwait)) break;
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) return;
    }
  }

  std::vector<zmq::message_t> frames;
  while (!stop_.load()) {
    zmq::pollitem_t items[] = {{zap.handle(), 0, ZMQ_POLLIN, 0}, {pipe.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(100));
      while (recv_all(pipe, frames)) on_result(frames);
      for (int n = 0; n < 1000 && recv_all(zap, frames); ++n) on_request(frames);
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      log->error("{}: ZAP handler stopped: {}", server_name_, e.what());
      return;
    }
  }
}

void CachedZapHandler::LookupThread(std::string pipe_endpoint) {
  zmq::socket_t pipe(ctx_, zmq::socket_type::pair);
  pipe.set(zmq::sockopt::linger, 0);
  pipe.connect(pipe_endpoint);
  (void)pipe.send(zmq::str_buffer("ready"), zmq::send_flags::none);
  while (!stop_.load()) {
    zmq::pollitem_t item{pipe.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      zmq::message_t key;
      if (!pipe.recv(key, zmq::recv_flags::dontwait)) continue;
      lookups_.fetch_add(1, std::memory_order_relaxed);
      Verdict v = resolver_(key.to_string());
      const char kind = static_cast<char>(v.kind);
      std::array<zmq::const_buffer, 4> result = {zmq::buffer(key.data(), key.size()),
                                                 zmq::buffer(&kind, 1), zmq::buffer(v.identity),
                                                 zmq::buffer(v.error)};
      for (size_t i = 0; i < result.size(); ++i) {
        (void)pipe.send(result[i],
                        i + 1 < result.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      Logger("zap")->error("{}: key lookups stopped: {}", server_name_, e.what());
      break;
    }
  }
  resolver_ = nullptr;  // the Resolver's sockets close on the thread that used them
}

}  // namespace bud::wire
