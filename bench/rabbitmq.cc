// RabbitMQ workloads with rabbitmq-c (Debian's librabbitmq-dev). See peers.h.
//
// A quorum queue (x-queue-type=quorum, durable), persistent messages (delivery_mode 2), publisher
// confirms (confirm.select; basic.ack with `multiple`), at most `window` unconfirmed. Pass-through
// adds a consumer on its own connection and thread with basic.qos prefetch = window that acks
// every message (basic.ack).
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <stdexcept>
#include <thread>

#include "bench/peers.h"

#ifdef BUD_BENCH_RABBITMQ
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif

namespace bud::bench {

#ifndef BUD_BENCH_RABBITMQ

bool RabbitMqAvailable() { return false; }
Figures RunRabbitMq(const Peer& peer, const std::string& scenario, const LoadSpec&, int) {
  Figures f;
  f.scenario = scenario;
  f.system = peer.system;
  f.skipped = true;
  f.note = "bud-bench was built without rabbitmq-c (install librabbitmq-dev and rebuild)";
  return f;
}

#else

bool RabbitMqAvailable() { return true; }

namespace {

void Check(amqp_rpc_reply_t r, const char* what) {
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return;
  std::string why;
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    why = amqp_error_string2(r.library_error);
  } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
             r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    auto* c = static_cast<amqp_channel_close_t*>(r.reply.decoded);
    why = std::string(static_cast<char*>(c->reply_text.bytes), c->reply_text.len);
  } else {
    why = "server exception";
  }
  throw std::runtime_error(fmt::format("RabbitMQ {}: {}", what, why));
}

// One connection with channel 1 open.
class Conn {
 public:
  Conn(const Peer& peer) : c_(amqp_new_connection()) {
    amqp_socket_t* s = amqp_tcp_socket_new(c_);
    if (s == nullptr || amqp_socket_open(s, peer.host.c_str(), peer.port) != AMQP_STATUS_OK) {
      amqp_destroy_connection(c_);
      throw std::runtime_error(fmt::format("cannot connect to RabbitMQ at {}:{}", peer.host, peer.port));
    }
    Check(amqp_login(c_, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login");
    amqp_channel_open(c_, 1);
    Check(amqp_get_rpc_reply(c_), "channel.open");
  }
  ~Conn() {
    amqp_channel_close(c_, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  amqp_connection_state_t get() { return c_; }

 private:
  amqp_connection_state_t c_;
};

std::string Body(size_t bytes) {
  std::string b(bytes, 'x');
  const int64_t t = NowNs();
  std::memcpy(b.data(), &t, sizeof t);
  return b;
}

}  // namespace

Figures RunRabbitMq(const Peer& peer, const std::string& scenario, const LoadSpec& spec, int run) {
  const bool consume = scenario == "pass-through";
  const std::string queue = fmt::format("bench-{}-{}-{}", scenario, run, ::getpid());
  Conn pub(peer);
  {
    amqp_table_entry_t type;
    type.key = amqp_cstring_bytes("x-queue-type");
    type.value.kind = AMQP_FIELD_KIND_UTF8;
    type.value.value.bytes = amqp_cstring_bytes("quorum");
    amqp_table_t args{1, &type};
    amqp_queue_declare(pub.get(), 1, amqp_cstring_bytes(queue.c_str()), 0, 1, 0, 0, args);
    Check(amqp_get_rpc_reply(pub.get()), "queue.declare (quorum)");
    amqp_confirm_select(pub.get(), 1);
    Check(amqp_get_rpc_reply(pub.get()), "confirm.select");
  }

  // The consumer: its own connection and thread.
  std::atomic<int64_t> completed{0}, last_complete{0};
  std::atomic<bool> stop_consumer{false};
  Latencies deliver_latency;  // written by the consumer thread only, read after join
  std::string consumer_error;
  std::thread consumer;
  if (consume) {
    consumer = std::thread([&] {
      try {
        Conn c(peer);
        amqp_basic_qos(c.get(), 1, 0, static_cast<uint16_t>(spec.window), 0);
        Check(amqp_get_rpc_reply(c.get()), "basic.qos");
        amqp_basic_consume(c.get(), 1, amqp_cstring_bytes(queue.c_str()), amqp_empty_bytes, 0, 0,
                           0, amqp_empty_table);
        Check(amqp_get_rpc_reply(c.get()), "basic.consume");
        while (!stop_consumer) {
          amqp_envelope_t env;
          timeval tv{0, 100000};
          amqp_maybe_release_buffers(c.get());
          amqp_rpc_reply_t r = amqp_consume_message(c.get(), &env, &tv, 0);
          if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
              r.library_error == AMQP_STATUS_TIMEOUT) {
            continue;
          }
          Check(r, "consume");
          int64_t sent = 0;
          if (env.message.body.len >= 8) std::memcpy(&sent, env.message.body.bytes, 8);
          deliver_latency.Add(NowNs() - sent);
          if (amqp_basic_ack(c.get(), 1, env.delivery_tag, 0) != AMQP_STATUS_OK) {
            amqp_destroy_envelope(&env);
            throw std::runtime_error("RabbitMQ basic.ack failed");
          }
          amqp_destroy_envelope(&env);
          ++completed;
          last_complete = NowNs();
        }
      } catch (const std::exception& e) {
        consumer_error = e.what();
      }
    });
  }

  Latencies confirm_latency;
  std::map<uint64_t, int64_t> pending;  // delivery tag -> send time
  uint64_t next_tag = 1;
  int64_t accepted = 0, nacked = 0, last_accept = 0;
  bool saturated = false;
  amqp_basic_properties_t props;
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.delivery_mode = 2;  // persistent
  const int64_t start = NowNs();
  const int64_t stop_at = start + static_cast<int64_t>(spec.seconds * 1e9);
  const int64_t deadline = stop_at + 120'000'000'000;
  const double gap = spec.rate > 0 ? 1e9 / spec.rate : 0;
  double next_due = static_cast<double>(start);
  auto publish = [&] {
    const std::string body = Body(spec.envelope_bytes);
    amqp_bytes_t b{body.size(), const_cast<char*>(body.data())};
    pending.emplace(next_tag++, NowNs());
    if (amqp_basic_publish(pub.get(), 1, amqp_empty_bytes, amqp_cstring_bytes(queue.c_str()), 0,
                           0, &props, b) != AMQP_STATUS_OK) {
      throw std::runtime_error("RabbitMQ basic.publish failed");
    }
  };
  for (;;) {
    const int64_t now = NowNs();
    const bool publishing = now < stop_at;
    if (publishing) {
      if (spec.rate > 0) {
        while (next_due <= static_cast<double>(now)) {
          if (pending.size() >= 20000) {
            saturated = true;
            break;
          }
          publish();
          next_due += gap;
        }
      } else {
        while (pending.size() < static_cast<size_t>(spec.window)) publish();
      }
    } else if (pending.empty()) {
      break;
    }
    if (now > deadline) throw std::runtime_error("RabbitMQ load did not finish in time");
    int64_t wait_us = 10000;
    if (spec.rate > 0 && publishing) {
      wait_us = static_cast<int64_t>(std::clamp((next_due - static_cast<double>(NowNs())) / 1e3, 0.0, 10000.0));
    }
    amqp_frame_t frame;
    timeval tv{0, static_cast<suseconds_t>(wait_us)};
    int rc = amqp_simple_wait_frame_noblock(pub.get(), &frame, &tv);
    while (rc == AMQP_STATUS_OK) {
      if (frame.frame_type == AMQP_FRAME_METHOD) {
        const int64_t t = NowNs();
        uint64_t tag = 0;
        bool multiple = false, ack = false;
        if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
          auto* a = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
          tag = a->delivery_tag;
          multiple = a->multiple;
          ack = true;
        } else if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
          auto* n = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
          tag = n->delivery_tag;
          multiple = n->multiple;
        } else if (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
          throw std::runtime_error("RabbitMQ closed the channel");
        }
        auto end = multiple ? pending.upper_bound(tag) : pending.find(tag);
        auto begin = multiple ? pending.begin() : end;
        if (!multiple && end != pending.end()) end = std::next(end);
        for (auto it = begin; it != end;) {
          if (ack) {
            ++accepted;
            last_accept = t;
            confirm_latency.Add(t - it->second);
          } else {
            ++nacked;
          }
          it = pending.erase(it);
        }
      }
      tv = {0, 0};
      rc = amqp_simple_wait_frame_noblock(pub.get(), &frame, &tv);
    }
    if (rc != AMQP_STATUS_TIMEOUT) {
      throw std::runtime_error(std::string("RabbitMQ: ") + amqp_error_string2(rc));
    }
    amqp_maybe_release_buffers(pub.get());
  }
  if (consume) {
    const int64_t wait_until = NowNs() + 120'000'000'000;
    while (completed < accepted && consumer_error.empty() && NowNs() < wait_until) {
      std::this_thread::sleep_for(Millis(5));
    }
    stop_consumer = true;
    consumer.join();
    if (!consumer_error.empty()) throw std::runtime_error(consumer_error);
    if (completed < accepted) throw std::runtime_error("RabbitMQ consumer did not get every message");
  }
  amqp_queue_delete(pub.get(), 1, amqp_cstring_bytes(queue.c_str()), 0, 0);
  (void)amqp_get_rpc_reply(pub.get());

  PeerOutcome o{start, accepted, last_accept, completed, last_complete,
                std::move(confirm_latency),
                std::move(deliver_latency), saturated};
  Figures f = PeerFigures(peer, scenario, spec, consume, o, "publisher confirm", "rabbitmq");
  if (nacked > 0) f.note += fmt::format("; {} nacked", nacked);
  return f;
}

#endif

}  // namespace bud::bench
