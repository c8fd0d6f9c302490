#pragma once
// The server's connections, hardened against slow and greedy clients
// (issue 38). cpp-httplib serves each connection on a thread and gives up on
// a read only after a whole read timeout with no byte, so a client sending a
// byte a second holds a thread for ever, and a few such clients hold them
// all. As the servers that face the internet do (Apache's mod_reqtimeout,
// nginx's client timeouts and limit_conn), each connection here gets:
//   - a deadline for each request to arrive, headers and body together:
//     `request_grace_s`, plus a second for every `min_bytes_per_s` bytes
//     received, so that a large upload on a slow link still arrives and a
//     trickle does not;
//   - a cap on the bytes one request may send (the body limit plus headers),
//     whatever its framing (chunked bodies included);
//   - a cap on the connections one client address holds at once, so that one
//     client cannot take every thread: the excess is answered 503 at once;
//   - on stop, requests still arriving are cut after `stop_grace_s`, so that
//     a shutdown is bounded; requests already being answered finish.
// Threads are started as connections need them, up to `threads`.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace fracture::serve {

struct ConnectionLimits {
  int threads = 128;          // connections served at once; more wait for a free thread
  int per_client = 0;         // connections one address may hold at once; 0: half of threads
  double request_grace_s = 10;
  double min_bytes_per_s = 1000;
  double idle_s = 30;         // no byte for this long within a request: closed
  double keep_alive_s = 2;    // an idle keep-alive connection is closed after this
  double stop_grace_s = 2;
  size_t max_request_bytes = 64u << 20;
};

class GuardedServer : public httplib::Server {
 public:
  explicit GuardedServer(ConnectionLimits limits);
  // Requests still arriving are cut from now + stop_grace_s; then stops the
  // listening loop (which returns once the connections in flight are done).
  void stop_bounded();
  // Called (on the connection's thread) when a connection is refused for its
  // address's cap; for the metrics and a log line.
  std::function<void(const std::string& address)> on_refused;
  // Makes the connection serving this thread close after the current
  // response (a request whose body was not read to its end).
  static void close_after_response();
  int per_client_limit() const { return per_client_; }

 private:
  bool process_and_close_socket(socket_t sock) override;
  bool admit(const std::string& address);
  void leave(const std::string& address);

  ConnectionLimits limits_;
  int per_client_;
  std::mutex mu_;
  std::map<std::string, int> open_by_address_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> stop_deadline_ns_{0};
  friend class GuardedStream;
};

}  // namespace fracture::serve
