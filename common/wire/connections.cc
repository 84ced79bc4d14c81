// Tracking and closing a ROUTER's TCP connections. See connections.h.
#include "common/wire/connections.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "common/clock.h"
#include "common/log.h"

namespace bud::wire {

namespace {
std::atomic<int> next_monitor{0};
}

std::string PeerAddressOf(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (fd < 0 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return fmt::format("{}:{}", host, ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return fmt::format("[{}]:{}", host, ntohs(a->sin6_port));
  }
  return "";
}

ConnectionWatch::ConnectionWatch(zmq::context_t& ctx, zmq::socket_t& router, std::string name,
                                 int64_t deadline_ms)
    : router_(router),
      monitor_(ctx, zmq::socket_type::pair),
      name_(std::move(name)),
      deadline_ms_(deadline_ms) {
  const std::string endpoint =
      fmt::format("inproc://bud.monitor.{}.{}", name_, next_monitor.fetch_add(1));
  if (zmq_socket_monitor(router_.handle(), endpoint.c_str(),
                         ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0) {
    throw zmq::error_t();
  }
  monitor_.set(zmq::sockopt::linger, 0);
  // Events that do not fit are dropped by libzmq; room for a burst of connections.
  monitor_.set(zmq::sockopt::rcvhwm, 100000);
  monitor_.connect(endpoint);
}

ConnectionWatch::~ConnectionWatch() { (void)zmq_socket_monitor(router_.handle(), nullptr, 0); }

void ConnectionWatch::HandleEvents() {
  for (int n = 0; n < 100000; ++n) {
    zmq::message_t head;
    if (!monitor_.recv(head, zmq::recv_flags::dontwait)) return;
    std::vector<zmq::message_t> rest;
    bool more = head.more();
    while (more && rest.size() < 4) {
      zmq::message_t part;
      if (!monitor_.recv(part, zmq::recv_flags::none)) break;
      more = part.more();
      rest.push_back(std::move(part));
    }
    if (head.size() < 6) continue;
    uint16_t event = 0;
    uint32_t value = 0;
    std::memcpy(&event, head.data(), 2);
    std::memcpy(&value, static_cast<const char*>(head.data()) + 2, 4);
    const int fd = static_cast<int>(value);
    if (event == ZMQ_EVENT_ACCEPTED) {
      std::string peer = PeerAddressOf(fd);
      if (peer.empty()) continue;  // already gone again
      conns_[fd] = {std::move(peer), deadline_ms_ > 0 ? MonoMs() + deadline_ms_ : 0, next_id_++};
    } else if (event == ZMQ_EVENT_DISCONNECTED) {
      conns_.erase(fd);
    }
  }
}

ConnRef ConnectionWatch::Greeted(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return {fd, 0};
  it->second.deadline_mono = 0;
  return {fd, it->second.id};
}

void ConnectionWatch::Expect(ConnRef conn) {
  if (deadline_ms_ <= 0 || conn.id == 0) return;
  if (auto it = conns_.find(conn.fd); it != conns_.end() && it->second.id == conn.id) {
    it->second.deadline_mono = MonoMs() + deadline_ms_;
  }
}

bool ConnectionWatch::Close(int fd, std::string_view why) {
  HandleEvents();  // a DISCONNECTED already queued for this fd must be seen first
  auto it = conns_.find(fd);
  if (it == conns_.end()) return false;
  const std::string peer = it->second.peer;
  conns_.erase(it);
  if (PeerAddressOf(fd) != peer) return false;  // the fd now belongs to someone else
  if (::shutdown(fd, SHUT_RDWR) != 0) return false;
  Logger("connections")->info("{}: closed the connection from {}: {}", name_, peer, why);
  return true;
}

int ConnectionWatch::CloseOverdue() {
  if (deadline_ms_ <= 0) return 0;
  const int64_t now = MonoMs();
  std::vector<int> overdue;
  for (const auto& [fd, c] : conns_) {
    if (c.deadline_mono != 0 && now >= c.deadline_mono) overdue.push_back(fd);
  }
  int closed = 0;
  for (int fd : overdue) {
    if (Close(fd, fmt::format("no Hello within {} ms", deadline_ms_))) ++closed;
  }
  return closed;
}

}  // namespace bud::wire
