// Which TCP connections a ROUTER has, and closing one of them (docs/protocol.md, "Connections").
//
// A ROUTER cannot close one peer's connection by itself. A ConnectionWatch reads the socket's
// monitor: ACCEPTED carries a new connection's fd, DISCONNECTED its end. It records each
// connection's peer address and closes a connection by shutdown(2) on its fd; libzmq's I/O thread
// then reads the end of the stream, closes the fd itself and forgets the peer (pipe and routing
// id), and the peer's own monitor sees DISCONNECTED.
//
// Greeting deadline: when deadline_ms > 0, an accepted connection must be marked Greeted (the
// server got the opening message it wants, e.g. Hello) within deadline_ms, or CloseOverdue()
// closes it. Expect() makes a greeted connection wait for a new greeting. Greeted() hands back a
// ConnRef (fd and a number no other connection gets), so a later Expect() never lands on a newer
// connection that was given the same fd.
//
// Reused fds: libzmq reports DISCONNECTED before it closes the fd, so in event order a reused fd
// is always preceded by the end of its old connection. Close() first reads all pending events
// and then compares the fd's peer address (getpeername) with the one recorded at ACCEPTED, so a
// new connection on a reused fd is never shut down in place of the old one.
//
// Limitations: only connections accepted after the watch was made are known (make it before
// bind). A frame's fd (SourceFd) names the connection it came in on; a frame still queued from a
// connection that has gone can name a reused fd: Greeted() may then mark the newer connection.
//
// Operation: owned and polled by the thread that owns the ROUTER (its monitor is a PAIR socket).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "common/status.h"

namespace bud::wire {

// One connection as a ConnectionWatch knows it; id 0 = none.
struct ConnRef {
  int fd = -1;
  uint64_t id = 0;
};

class ConnectionWatch {
 public:
  // Starts monitoring `router`; `name` appears in logs. deadline_ms == 0: no greeting deadline.
  ConnectionWatch(zmq::context_t& ctx, zmq::socket_t& router, std::string name,
                  int64_t deadline_ms);
  ~ConnectionWatch();
  ConnectionWatch(const ConnectionWatch&) = delete;
  ConnectionWatch& operator=(const ConnectionWatch&) = delete;

  // The monitor socket, for the owner's poll.
  zmq::socket_t& socket() { return monitor_; }
  // Reads every pending monitor event without blocking.
  void HandleEvents();
  // The connection on `fd` said its greeting: no deadline for it any more. Its reference, or
  // {fd, 0} when the fd is not a known connection.
  ConnRef Greeted(int fd);
  // The connection `conn` must greet (again) within the deadline, counted from now. Nothing when
  // it has gone (or its fd now belongs to another connection).
  void Expect(ConnRef conn);
  // Shuts the connection on `fd` down. False (and nothing done) when the fd is not a connection
  // this watch knows, or now belongs to another peer.
  bool Close(int fd, std::string_view why);
  // Closes every connection past its greeting deadline; returns how many.
  int CloseOverdue();
  // Connections open now (as far as the monitor has told).
  size_t size() const { return conns_.size(); }

 private:
  struct Conn {
    std::string peer;       // "ip:port" from getpeername at ACCEPTED
    int64_t deadline_mono;  // 0 when greeted (or no deadline)
    uint64_t id;            // unique among this watch's connections
  };
  zmq::socket_t& router_;
  zmq::socket_t monitor_;
  std::string name_;
  int64_t deadline_ms_;
  std::map<int, Conn> conns_;
  uint64_t next_id_ = 1;
};

// The peer address of a connected socket as "ip:port", or "" when it has none (closed, not a
// socket, not connected).
std::string PeerAddressOf(int fd);

}  // namespace bud::wire
