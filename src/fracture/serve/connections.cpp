#include "fracture/serve/connections.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <thread>
#include <vector>

namespace fracture::serve {

namespace {

using Clock = std::chrono::steady_clock;

thread_local bool t_close_after_response = false;

int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

// Waits up to `ms` for `events` on `sock`; true when they came.
bool wait_for(socket_t sock, short events, int64_t ms) {
  pollfd p{sock, events, 0};
  int r;
  do r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, ms)));
  while (r < 0 && errno == EINTR);
  return r > 0;
}

std::string address_of(const sockaddr_storage& a, int& port) {
  char text[INET6_ADDRSTRLEN] = "";
  if (a.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(a);
    ::inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
    port = ntohs(v4.sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a);
    ::inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
    port = ntohs(v6.sin6_port);
  }
  return text;
}

std::string peer_address(socket_t sock, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  port = 0;
  if (::getpeername(sock, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "";
  return address_of(a, port);
}

// Threads started as connections need them, up to a bound; idle ones wait
// for the next connection. (cpp-httplib's pool starts them all at once.)
class GrowingPool : public httplib::TaskQueue {
 public:
  explicit GrowingPool(size_t max_threads) : max_(max_threads) {}
  void enqueue(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(fn));
    if (idle_ > 0 || threads_.size() >= max_) cv_.notify_one();
    else threads_.emplace_back([this] { work(); });
  }
  void shutdown() override {
    { std::lock_guard<std::mutex> lock(mu_); done_ = true; }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [&] { return done_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;  // done
      auto fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  const size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool done_ = false;
};

// After a response to a request that was not read to its end: stop
// sending, then read and drop what the client still sends for up to `ms`,
// so that closing does not reset the connection before the client has read
// the response (Apache's lingering close).
void linger(socket_t sock, int64_t ms) {
  ::shutdown(sock, SHUT_WR);
  const int64_t until = now_ns() + ms * 1'000'000;
  char sink[16384];
  size_t dropped = 0;
  while (dropped < (8u << 20) && wait_for(sock, POLLIN, (until - now_ns()) / 1000000)) {
    const ssize_t n = ::recv(sock, sink, sizeof sink, 0);
    if (n <= 0) break;
    dropped += static_cast<size_t>(n);
  }
}

}  // namespace

// A connection's socket with the request deadline, the byte cap and the stop
// applied to every read. Reads are buffered: cpp-httplib reads headers a
// byte at a time.
class GuardedStream : public httplib::Stream {
 public:
  GuardedStream(socket_t sock, GuardedServer& server) : sock_(sock), server_(server) { begin_request(); }

  void begin_request() {
    start_ns_ = now_ns();
    received_ = 0;
  }

  bool is_readable() const override { return pos_ < end_ || wait_readable(); }
  bool is_writable() const override {
    return wait_for(sock_, POLLOUT, static_cast<int64_t>(server_.write_timeout_sec_ * 1000 + server_.write_timeout_usec_ / 1000));
  }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == end_) {
      const auto& l = server_.limits_;
      if (received_ >= l.max_request_bytes) return -1;  // the request's bytes are capped, chunked or not
      if (!wait_readable()) return -1;
      const size_t want = std::min(sizeof buffer_, l.max_request_bytes - received_);
      ssize_t n;
      do n = ::recv(sock_, buffer_, want, 0);
      while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      received_ += static_cast<size_t>(n);
      pos_ = 0, end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, end_ - pos_);
    std::copy_n(buffer_ + pos_, n, ptr);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { ip = peer_address(sock_, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    port = 0;
    ip = ::getsockname(sock_, reinterpret_cast<sockaddr*>(&a), &len) == 0 ? address_of(a, port) : "";
  }
  socket_t socket() const override { return sock_; }
  bool buffered() const { return pos_ < end_; }

 private:
  // Waits for a byte within the request's deadline, the idle limit and the
  // stop's grace, in short slices so that a stop is seen.
  bool wait_readable() const {
    const auto& l = server_.limits_;
    const int64_t idle_until = now_ns() + static_cast<int64_t>(l.idle_s * 1e9);
    for (;;) {
      int64_t until = start_ns_ + static_cast<int64_t>((l.request_grace_s + received_ / l.min_bytes_per_s) * 1e9);
      until = std::min(until, idle_until);
      if (server_.stopping_) until = std::min(until, server_.stop_deadline_ns_.load());
      const int64_t left_ms = (until - now_ns()) / 1000000;
      if (left_ms <= 0) return false;
      if (wait_for(sock_, POLLIN, std::min<int64_t>(left_ms, 100))) return true;
    }
  }

  socket_t sock_;
  GuardedServer& server_;
  int64_t start_ns_ = 0;
  size_t received_ = 0;
  char buffer_[4096];
  size_t pos_ = 0, end_ = 0;
};

GuardedServer::GuardedServer(ConnectionLimits limits)
    : limits_(limits), per_client_(limits.per_client > 0 ? limits.per_client : std::max(1, limits.threads / 2)) {
  const size_t threads = static_cast<size_t>(std::max(1, limits_.threads));
  new_task_queue = [threads] { return new GrowingPool(threads); };
}

void GuardedServer::stop_bounded() {
  stop_deadline_ns_ = now_ns() + static_cast<int64_t>(limits_.stop_grace_s * 1e9);
  stopping_ = true;
  stop();
}

void GuardedServer::close_after_response() { t_close_after_response = true; }

bool GuardedServer::admit(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  int& open = open_by_address_[address];
  if (open >= per_client_) return false;
  ++open;
  return true;
}

void GuardedServer::leave(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  if (--open_by_address_[address] <= 0) open_by_address_.erase(address);
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  int port = 0;
  const std::string address = peer_address(sock, port);
  if (!admit(address)) {
    if (on_refused) on_refused(address);
    const std::string body = "{\"error\":\"too_many_connections\",\"detail\":\"this address holds " +
                             std::to_string(per_client_) + " connections to the server already: close some, then retry\"}";
    const std::string reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                              "Connection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    if (wait_for(sock, POLLOUT, 1000)) (void)::send(sock, reply.data(), reply.size(), MSG_NOSIGNAL);
    linger(sock, 200);  // the request it sent, unread, would otherwise reset the connection under the 503
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return true;
  }
  GuardedStream stream(sock, *this);
  bool ok = true;
  for (size_t count = keep_alive_max_count_; count > 0; --count) {
    t_close_after_response = false;
    if (count != keep_alive_max_count_) {  // a kept-alive connection: the next request, or close
      if (!stream.buffered() && !wait_for(sock, POLLIN, static_cast<int64_t>(limits_.keep_alive_s * 1000))) break;
      if (stopping_) break;
      stream.begin_request();
    }
    bool closed = false;
    ok = process_request(stream, count == 1 || stopping_, closed, [](httplib::Request&) {});
    if (!ok || closed || t_close_after_response || stopping_) break;
  }
  if (t_close_after_response) linger(sock, 2000);
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  leave(address);
  return ok;
}

}  // namespace fracture::serve
